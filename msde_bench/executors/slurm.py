"""The `slurm` executor: one submitit job array per sweep, one array task per cell.

Needs the `slurm` extra (`pip install 'msde-bench[slurm]'`) and the SLURM commands (`sbatch`,
`sacct`, `scancel`, `srun`) on PATH; both are checked before anything is submitted. A cell that
hits its time limit or is preempted is requeued by submitit (the task is Checkpointable) and
continues from the last checkpoint its training saved (msde_bench.cellstate: every epoch's end and
every --checkpoint-minutes), to the same numbers as a cell that never stopped. Each task writes its
cell file like any other executor; submitit's own logs and pickles go to `<out>/.submitit/`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from msde_bench.errors import MsdeError, import_extra
from msde_bench.executors.base import CellFunction, Executor, ExecutorOption, OnDone, Task, collect

COMMANDS = ("sbatch", "sacct", "scancel", "srun")


def _submitit():
    return import_extra("submitit", "--executor slurm", "slurm")


def check() -> None:
    """The extra and the SLURM commands are there; one line naming what is missing otherwise."""
    _submitit()
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        raise MsdeError(f"--executor slurm: {', '.join(missing)} not found on PATH (is this a SLURM login node?)")


class CellJob:
    """A Checkpointable callable: on timeout or preemption submitit resubmits it with the same task."""

    def __init__(self, execute: CellFunction) -> None:
        self.execute = execute

    def __call__(self, task: Task) -> dict:
        return self.execute(task)

    def checkpoint(self, task: Task):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CellJob(self.execute), task)


def _arrays_file(folder: Path) -> Path:
    return Path(folder) / "arrays.json"


def record_array(folder: Path, cells: list[tuple[str, int, str]]) -> None:
    """Remembers which SLURM job runs which cell (for `sweep --status`), newest last."""
    import json

    from msde_bench.atomic import write_text_atomic

    path = _arrays_file(folder)
    known = json.loads(path.read_text()) if path.is_file() else {}
    known.update({f"{run_id}/fold{fold}": job_id for run_id, fold, job_id in cells})
    write_text_atomic(path, json.dumps(known, indent=1, sort_keys=True) + "\n")


def states(out: str | Path) -> dict[str, str]:
    """{"<run_id>/fold<k>": SLURM state} of the cells a sweep submitted to `out` (sacct)."""
    import json

    path = _arrays_file(Path(out) / ".submitit")
    if not path.is_file():
        return {}
    submitit = _submitit()
    known = json.loads(path.read_text())
    return {cell: submitit.SlurmJob(Path(out) / ".submitit" / "%j", job_id).state for cell, job_id in known.items()}


def parameters(partition: str | None = None, gpus_per_task: int | None = None, cpus_per_task: int | None = None,
               mem: str | None = None, time: int | None = None, array_parallelism: int | None = None,
               opts: dict | None = None) -> dict:
    """submitit's SlurmExecutor parameters from the sweep's --slurm-* options (None: submitit's default)."""
    params = dict(partition=partition, gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, mem=mem, time=time,
                  array_parallelism=array_parallelism)
    params = {k: v for k, v in params.items() if v is not None}
    if opts:
        params["additional_parameters"] = dict(opts)
    return params


def run(tasks: Iterable[Task], execute: CellFunction, *, on_done: OnDone | None = None, slurm: dict | None = None,
        folder: str | Path | None = None, cluster: str = "slurm") -> list[tuple[Task, dict]]:
    """Submits one job array of the tasks (`execute` in each array task) and waits for them;
    returns (task, report) per task. `cluster="local"` runs the same jobs through submitit's
    LocalExecutor (no SLURM needed). Every cell is its own array task; `array_parallelism` in
    `slurm` bounds how many run at once."""
    submitit = _submitit()
    tasks = list(tasks)
    if not tasks:
        return []
    folder = Path(folder or Path(tasks[0].out) / ".submitit")
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=folder / "%j")
    else:
        check()
        executor = submitit.SlurmExecutor(folder=folder / "%j")
        executor.update_parameters(job_name="msde-bench", **(slurm or {}))
    jobs = executor.map_array(CellJob(execute), tasks)
    record_array(folder, [(t.run_id, t.fold, j.job_id) for t, j in zip(tasks, jobs)])
    done = []
    for job, task in zip(jobs, tasks):  # a job that failed outside the cell (node failure, cancelled) fails it only
        collect(task, job.result, f"slurm job {job.job_id}", done, on_done)
    return done


class SlurmExecutor(Executor):
    name = "slurm"
    description = "one submitit job array per sweep, a task per cell (pip install 'msde-bench[slurm]')"
    options = (
        ExecutorOption("partition", str, None, "slurm: the partition."),
        ExecutorOption("gpus_per_task", int, None, "slurm: GPUs per cell.", minimum=0),
        ExecutorOption("cpus_per_task", int, None, "slurm: CPU cores per cell.", minimum=1),
        ExecutorOption("mem", str, None, "slurm: memory per cell, e.g. 16G."),
        ExecutorOption("time", int, None, "slurm: time limit per cell in minutes (requeued on timeout).", minimum=1),
        ExecutorOption("array_parallelism", int, None, "slurm: cells running at once.", minimum=1),
        ExecutorOption("opt", str, None, "slurm: any other sbatch option (repeatable), e.g. account=myproj, "
                       "qos=high.", multiple=True),
    )

    def check(self) -> None:
        check()

    def run(self, tasks, execute, *, workers=None, on_done=None, partition=None, gpus_per_task=None,
            cpus_per_task=None, mem=None, time=None, array_parallelism=None, opt=None):
        return run(tasks, execute, on_done=on_done,
                   slurm=parameters(partition, gpus_per_task, cpus_per_task, mem, time, array_parallelism, opt))

    def states(self, out):
        return states(out)
