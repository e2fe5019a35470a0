"""Atomic file writes: write to a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from msde_bench.errors import MsdeError


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a temporary path in the target's folder; on success it replaces `path` (a reader never
    sees a half-written file, a crash never destroys the previous version), on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # a write that failed (a full disk): name the file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to a temporary file beside `path`, fsyncs it and renames it into place."""
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to a temporary file beside `path`, fsyncs it and renames it into place."""
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Makes `folder` (and its parents) and writes and removes a probe file in it, so that a run
    that could not save its work fails before it starts, with one line naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".msde-bench-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MsdeError(f"{folder}: cannot write to this {what} ({e.strerror or type(e).__name__})") from None
    return folder


#: an atomic write's temporary file older than this was left by a process killed mid-write
STALE_SECONDS = 24 * 3600


def remove_stale_temporaries(folder: str | os.PathLike, older_than: float = STALE_SECONDS) -> list[Path]:
    """Removes the hidden `.NAME.*.tmp` files of atomic writes in `folder` that are older than
    `older_than` seconds (a kill between writing and renaming leaves one; a younger one may belong
    to a write in progress and is kept). Returns what it removed."""
    folder, now, removed = Path(folder), time.time(), []
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than:
                p.unlink()
                removed.append(p)
        except OSError:
            pass  # removed by another process meanwhile
    return removed
