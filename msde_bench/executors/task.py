"""One cell of a sweep, as a picklable task, and the function any executor runs for it.

`execute(task)` trains the cell in the current process, with everything it prints going to the
cell's log file, and returns a small report; it never raises for a failure of the cell itself:
the error is written to `<run_id>/fold<k>.failed.json` beside the cell and reported, so that one
failed cell never stops the others.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from msde_bench import results as R
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import MsdeError
from msde_bench.factory import load_dataset
from msde_bench.progress import RunProgress
from msde_bench.runner import Cell, cells_of, run_cell
from msde_bench.spec import RunSpec
from msde_bench.training import compile_setting


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one cell (plain data, so it pickles to any machine)."""

    spec: dict  # the whole spec, RunSpec.to_dict()
    fold: int
    dataset: dict  # PairedDataset.describe() the sweep planned with (its fingerprint is checked)
    out: str
    keep_model: bool = True
    #: --compile (training.compile_setting)
    compile: bool = False
    #: --log-samples: the cell's per-image predictions beside it (msde_bench.samples)
    log_samples: bool = False

    @property
    def cell(self) -> Cell:
        return Cell(RunSpec.from_dict(self.spec), self.fold, self.dataset)

    @property
    def log(self) -> Path:
        return Path(self.out) / self.cell.run_id / f"fold{self.fold}.log"

    @property
    def failed_marker(self) -> Path:
        return Path(self.out) / self.cell.run_id / f"fold{self.fold}.failed.json"


def import_extra(module: str, executor: str, extra: str):
    """The module an executor needs, or one error line naming the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MsdeError(f"--executor {executor} needs {module}: pip install 'msde-bench[{extra}]'") from None


def collect(task: Task, get, failed_as: str, done: list, on_done=None) -> dict:
    """The report of a task from `get()` (a future's or a job's result); an exception there (the
    worker, job or node died outside the cell) fails that cell only. Appends (task, report) to
    `done` and tells `on_done`."""
    try:
        report = get()
    except Exception as e:  # noqa: BLE001 - one lost worker never stops the sweep
        report = dict(status="failed", error=f"{failed_as}: {type(e).__name__}: {e}".splitlines()[0],
                      log=str(task.log), seconds=0.0)
    done.append((task, report))
    if on_done is not None:
        on_done(task, report)
    return report


def execute(task: Task) -> dict:
    """Runs the cell; returns {status: done|failed, error, log, seconds}."""
    t0 = time.perf_counter()
    task.log.parent.mkdir(parents=True, exist_ok=True)
    with open(task.log, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        console = Console(file=log, width=120)
        compile_setting(task.compile)
        try:
            cell = task.cell
            console.print(f"cell {cell.run_id} fold {cell.fold}")
            dataset = load_dataset(cell.spec.data)
            if dataset.fingerprint() != cell.dataset["fingerprint"]:
                raise MsdeError(f"{cell.spec.data}: the dataset changed since the sweep was planned (fingerprint "
                                f"{dataset.fingerprint()} vs {cell.dataset['fingerprint']})")
            _, folds = cells_of(cell.spec, dataset)
            cache = ImageCache(dataset, cell.spec.image_size)
            with RunProgress(console, 1, cell.spec.epochs, "lines") as progress:  # a line per epoch in the log
                progress.start_fold(cell.fold)
                obj = run_cell(cell, folds[cell.fold], dataset, cache, task.out, keep_model=task.keep_model,
                               progress=progress, console=console, log_samples=task.log_samples)
            rec = obj["record"]
            console.print(f"fold {cell.fold}: non-masked {rec['acc_non_masked']:.3f}  masked {rec['acc_masked']:.3f}")
            task.failed_marker.unlink(missing_ok=True)
            return dict(status="done", error=None, log=str(task.log), seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - a failed cell is reported, never stops the sweep
            error = f"{type(e).__name__}: {e}".splitlines()[0] if not isinstance(e, MsdeError) else str(e)
            traceback.print_exc(file=log)
    R.write_json_atomic(task.failed_marker, dict(task=asdict(task), error=error, log=str(task.log)))
    return dict(status="failed", error=error, log=str(task.log), seconds=time.perf_counter() - t0)
