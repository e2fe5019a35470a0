"""`msde-bench sweep GRID.toml`: a grid of runs, as cells, on an executor; results merged.

Planning resolves every run of the grid to its spec (an unknown model, paradigm, option or
dataset fails here, naming the grid entry, before anything runs), loads each dataset once (so a
synthetic set is generated once, never by several workers at a time), and lists the cells. A
cell is done when its cell file matches the spec and the dataset fingerprint, or when the complete
result file of its spec is there; done cells are skipped. A cell that failed before is left alone
unless `retry_failed`, which runs only those. Runs of non-masked baselines come first, since their
fold models are the distill teachers of the same settings (msde_bench.teachers). After the
executor, every spec whose cells are all done gets its result file (the merge), and the sweep
reports done / skipped / failed cells.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from msde_bench import atomic
from msde_bench import pretrain as PT
from msde_bench import results as R
from msde_bench.api import build_spec
from msde_bench.errors import MsdeError, ResultError
from msde_bench.executors.task import Task
from msde_bench.factory import load_dataset
from msde_bench.grid import MAX_RUNS, GridError, Run, load_grid
from msde_bench.runner import cells_of, check_memory, check_test_data, merge, read_cell, with_protocol
from msde_bench.spec import RunSpec
from msde_bench.teachers import is_teacher_spec

EXECUTORS = ("local", "slurm", "ray")


@dataclass
class Planned:
    """One run of the grid and its cells."""

    run: Run
    spec: RunSpec  # the whole spec (every fold)
    dataset: dict
    tasks: list[Task]
    state: dict = field(default_factory=dict)  # fold -> done | todo | failed

    @property
    def run_id(self) -> str:
        return self.spec.run_id(self.dataset["name"])


def plan(grid: str | Path, out: str | Path | None = None, *, keep_models: bool = False,
         compile: bool = False, log_samples: bool = False, max_runs: int = MAX_RUNS) -> tuple[list[Planned], Path]:
    """Every run of the grid file with its cells and their state under `out` (default: the grid's
    `out`, else ./results); returns them and the folder. `compile`: the cells run with --compile;
    `log_samples`: they write their per-image predictions (a finished cell stays as it is)."""
    grid = Path(grid)
    runs, settings = load_grid(grid, max_runs)
    out = Path(out or settings.get("out") or "results")
    datasets: dict = {}
    planned, seen = [], set()
    for run in runs:
        args = dict(run.args)
        protocol = args.pop("protocol", None)
        try:
            spec = build_spec(**args)
            if spec.data not in datasets:
                datasets[spec.data] = load_dataset(spec.data)
            dataset = datasets[spec.data]
            spec = with_protocol(spec, dataset, protocol, args.get("folds"))
            cells, _ = cells_of(spec, dataset)
            check_test_data(spec, dataset)
            PT.check(spec, dataset)
            check_memory(spec, dataset)
        except (MsdeError, TypeError, ValueError) as e:
            raise GridError(grid, f"{run.origin} ({run.label()}): {e}") from None
        whole = spec.whole()
        if (whole, tuple(c.fold for c in cells)) in seen:
            continue  # the same run twice in the grid
        seen.add((whole, tuple(c.fold for c in cells)))
        # absolute: a worker of Ray or SLURM may start in another folder
        p = Planned(run, whole, dataset.describe(), [Task(whole.to_dict(), c.fold, c.dataset, str(out.resolve()),
                                                          keep_models, compile, log_samples) for c in cells])
        complete = _complete_result(Path(out), p)
        for task in p.tasks:
            if complete or read_cell(task.cell, out, strict=False) is not None:
                p.state[task.fold] = "done"
            elif task.failed_marker.is_file():
                p.state[task.fold] = "failed"
            else:
                p.state[task.fold] = "todo"
        planned.append(p)
    # non-masked baselines first: their fold models are the distill teachers of the same settings
    # (msde_bench.teachers), so a distill cell that comes later loads its teacher instead of training it
    planned.sort(key=lambda p: not is_teacher_spec(p.spec))
    return planned, out


def _complete_result(out: Path, p: Planned) -> bool:
    path = out / f"{p.run_id}.json"
    if not path.is_file():
        return False
    try:
        res = R.load(path)
    except ResultError:
        return False
    return bool(res["protocol"].get("complete")) and res["dataset"]["fingerprint"] == p.dataset["fingerprint"]


def check_writable(out: Path) -> None:
    """The results folder exists (made if needed) and is writable, before anything runs."""
    atomic.check_writable(out, "results folder")


def executor_module(name: str):
    """The executor module, imported only now; its `check()` (extra installed, commands on PATH)
    runs before anything is submitted."""
    if name not in EXECUTORS:
        raise MsdeError(f"--executor {name}: choose one of {', '.join(EXECUTORS)}")
    module = importlib.import_module(f"msde_bench.executors.{name}")
    if hasattr(module, "check"):
        module.check()
    return module


def execute(planned: list[Planned], *, executor: str = "local", workers: int | None = None, per_gpu: int = 1,
            retry_failed: bool = False, on_done=None, **options) -> list[dict]:
    """Runs the cells to run; returns one report row per cell: run, fold, status, error, log.
    `options` go to the executor (slurm: `slurm`, submitit's parameters)."""
    module = executor_module(executor)
    want = "failed" if retry_failed else "todo"
    tasks = [t for p in planned for t in p.tasks if p.state[t.fold] == want]
    reports: dict[tuple, dict] = {}
    if tasks:
        n = workers or module.default_workers(per_gpu)
        for task, report in module.run(tasks, workers=n, per_gpu=per_gpu, on_done=on_done, **options):
            reports[(task.cell.run_id, task.fold)] = report
    out_rows = []
    for p in planned:
        for t in p.tasks:
            rep = reports.get((p.run_id, t.fold))
            if rep is None:
                status = {"done": "skipped", "failed": "failed earlier", "todo": "not run"}[p.state[t.fold]]
                if retry_failed and p.state[t.fold] == "todo":
                    status = "not run (not failed)"
                out_rows.append(dict(run=p.run.label(), run_id=p.run_id, fold=t.fold, status=status, error=None,
                                     log=str(t.log) if p.state[t.fold] == "failed" else None))
                if p.state[t.fold] == "failed":
                    out_rows[-1]["error"] = _failed_error(t)
            else:
                p.state[t.fold] = "done" if rep["status"] == "done" else "failed"
                out_rows.append(dict(run=p.run.label(), run_id=p.run_id, fold=t.fold, status=rep["status"],
                                     error=rep["error"], log=rep["log"]))
    return out_rows


def _failed_error(task: Task) -> str | None:
    import json

    try:
        return json.loads(task.failed_marker.read_text(encoding="utf-8")).get("error")
    except (OSError, ValueError):
        return None


def merge_results(planned: list[Planned], out: Path) -> list[Path]:
    """The result file of every planned spec whose cells are all done (skipping current ones)."""
    written = []
    for p in planned:
        if all(s == "done" for s in p.state.values()) and not _complete_result(out, p):
            merged = merge(p.spec, p.dataset, out)
            if merged is not None:
                written.append(merged[1])
    return written
