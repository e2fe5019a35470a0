"""The function any executor runs once per cell of a sweep (the task: executors.base.Task).

`execute(task)` trains the cell in the current process, with everything it prints going to the
cell's log file, and returns a small report; it never raises for a failure of the cell itself:
the error is written to `<run_id>/fold<k>.failed.json` beside the cell and reported, so that one
failed cell never stops the others.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback

from rich.console import Console

from msde_bench import results as R
from msde_bench.cellstate import Policy
from msde_bench.data.pairs import ImageCache
from msde_bench.device import compile_setting
from msde_bench.errors import MsdeError, os_problem
from msde_bench.executors.base import Task, failed
from msde_bench.factory import load_dataset
from msde_bench.progress import RunProgress
from msde_bench.runner import Cell, cells_of, run_cell
from msde_bench.spec import RunSpec
from msde_bench.tracking import Tracking


def cell_of(task: Task) -> Cell:
    return Cell(RunSpec.from_dict(task.spec), task.fold, task.dataset)


def execute(task: Task) -> dict:
    """Runs the cell; returns {status: done|failed, error, log, seconds}."""
    t0 = time.perf_counter()
    task.log.parent.mkdir(parents=True, exist_ok=True)
    R.write_json_atomic(task.running_marker, dict(pid=os.getpid(), host=socket.gethostname()))
    try:
        return _execute(task, t0)
    finally:
        task.running_marker.unlink(missing_ok=True)


def _execute(task: Task, t0: float) -> dict:
    # appended: a cell that resumes from its checkpoint keeps the log of its first part
    with open(task.log, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        console = Console(file=log, width=120)
        compile_setting(task.compile)
        try:
            cell = cell_of(task)
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
                               progress=progress, console=console, log_samples=task.log_samples,
                               track=Tracking.of(task.track, task.track_dir),
                               checkpoints=Policy(resume=True, minutes=task.checkpoint_minutes,
                                                  keep=task.keep_checkpoints))
            rec = obj["record"]
            console.print(f"fold {cell.fold}: non-masked {rec['acc_non_masked']:.3f}  masked {rec['acc_masked']:.3f}")
            task.failed_marker.unlink(missing_ok=True)
            return dict(status="done", error=None, log=str(task.log), seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - a failed cell is reported, never stops the sweep
            if isinstance(e, MsdeError):
                error = str(e)
            elif isinstance(e, OSError) and e.filename:  # the disk or a folder (a full disk), not the worker
                error = os_problem(e, task.out)
            else:
                error = f"{type(e).__name__}: {e}".splitlines()[0]
            traceback.print_exc(file=log)
    return failed(task, error, seconds=time.perf_counter() - t0)
