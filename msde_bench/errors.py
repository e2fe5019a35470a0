"""Errors that the CLI reports as one line (no traceback) with exit code 2."""

from __future__ import annotations

import errno
import os


class MsdeError(Exception):
    """A user-facing error: bad input, bad option, unusable environment."""

    exit_code = 2


def import_extra(module: str, option: str, extra: str):
    """The module an option needs (`option`: e.g. "--executor slurm", "--track mlflow"), or one error
    line naming the pip command of the msde-bench extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MsdeError(f"{option} needs {module}: pip install 'msde-bench[{extra}]'") from None


class FileError(MsdeError):
    """A problem with one file; the message is `path: problem`."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataError(FileError):
    """A problem with one file of a dataset."""


class ResultError(FileError):
    """A malformed or foreign result file."""


class SpecError(MsdeError, ValueError):
    """A run setting out of range (`--epochs 0`, `--lr nan`); the message names the option. A
    ValueError too, so that a result file whose spec holds such a value is reported as malformed."""


class FoldFailed(MsdeError):
    """A fold's training or evaluation raised (a method plugin's forward, say): one line naming the
    plugin, the method, the fold and the exception (exit code 1, the cells already written kept);
    the original exception is its __cause__, which `--traceback` prints."""

    exit_code = 1


#: the errors of a full disk (or quota)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_problem(e: OSError, folder: str | os.PathLike | None = None) -> str:
    """One line for an OSError of the filesystem, naming its path (or `folder`, where it was writing):
    a full disk says so and that nothing half-written is kept (every write is atomic)."""
    where = e.filename or folder or "?"
    if e.errno in DISK_FULL:
        return (f"{where}: no space left on the device" + (f" (writing under {folder})" if folder and e.filename
                                                             else "") +
                "; nothing half-written is kept: free space and run the same command again (finished work is kept)")
    return f"{where}: {e.strerror or type(e).__name__}"
