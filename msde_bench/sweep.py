"""`msde-bench sweep GRID.toml`: a grid of runs, as cells, on an executor; results merged.

Planning resolves every run of the grid to its spec (an unknown model, paradigm, option or
dataset fails here, naming the grid entry, before anything runs), loads each dataset once (so a
synthetic set is generated once, never by several workers at a time), and lists the cells. A
cell is done when its cell file matches the spec and the dataset fingerprint, or when the complete
result file of its spec is there; done cells are skipped. A cell that failed before is left alone
unless `retry_failed`, which runs only those. Runs of non-masked baselines come first, since their
fold models are the distill teachers of the same settings (msde_bench.teachers). A spec gets its
result file (the merge) as soon as its last cell finishes (and, if its cells were all done before,
after the executor), and the sweep reports done / skipped / failed cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from msde_bench import atomic
from msde_bench import results as R
from msde_bench.cellstate import checkpoint_files
from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.errors import MsdeError, ResultError, os_problem
from msde_bench.executors.base import Executor, Task, check_options
from msde_bench.executors.task import execute as task_execute
from msde_bench.factory import executor_class, load_dataset
from msde_bench.grid import MAX_RUNS, GridError, Run, load_grid
from msde_bench.leaderboard import DEFAULT_NOTES, write_or_check
from msde_bench.plugins import registry
from msde_bench.runner import cells_of, merge, preflight, read_cell
from msde_bench.spec import RunSpec
from msde_bench.spec_build import build_spec, with_protocol
from msde_bench.teachers import is_teacher_spec
from msde_bench.tracking import Tracking


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
         compile: bool = False, log_samples: bool = False, max_runs: int = MAX_RUNS,
         track: Tracking | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
         keep_checkpoints: bool = False) -> tuple[list[Planned], Path]:
    """Every run of the grid file with its cells and their state under `out` (default: the grid's
    `out`, else ./results); returns them and the folder. `compile`: the cells run with --compile;
    `log_samples`: they write their per-image predictions (a finished cell stays as it is); `track`:
    they report to these experiment trackers; `checkpoint_minutes`, `keep_checkpoints`: how they
    checkpoint their training (a cell that was stopped continues from its checkpoint)."""
    track = track.absolute() if track is not None else None
    grid = Path(grid)
    runs, settings = load_grid(grid, max_runs)
    out = Path(out or settings.get("out") or "results")
    log_samples = log_samples or settings.get("log_samples", False)
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
            cells, folds = cells_of(spec, dataset)
            preflight(spec, dataset, folds)
        except (MsdeError, TypeError, ValueError) as e:
            raise GridError(grid, f"{run.origin} ({run.label()}): {e}") from None
        whole = spec.whole()
        if (whole, tuple(c.fold for c in cells)) in seen:
            continue  # the same run twice in the grid
        seen.add((whole, tuple(c.fold for c in cells)))
        # absolute: a worker of Ray or SLURM may start in another folder
        p = Planned(run, whole, dataset.describe(), [Task(whole.to_dict(), c.fold, c.dataset, str(out.resolve()),
                                                          keep_models, compile, log_samples,
                                                          track.names if track else (),
                                                          track.folder if track else None, checkpoint_minutes,
                                                          keep_checkpoints) for c in cells])
        complete = _complete_result(Path(out), p)
        for cell, task in zip(cells, p.tasks):
            if complete or read_cell(cell, out, strict=False) is not None:
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


def plan_sweep(grid: str | Path, out: str | Path | None = None, **kw) -> SweepPlan:
    """`plan` as a SweepPlan (keywords: plan's)."""
    planned, out = plan(grid, out, **kw)
    return SweepPlan(Path(grid), out, planned, kw.get("track"))


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


@dataclass
class SweepPlan:
    """A grid planned under a results folder: its runs, their cells and each cell's state."""

    grid: Path
    out: Path
    planned: list[Planned]
    #: the experiment trackers its cells and merged results report to
    track: Tracking | None = None

    def counts(self) -> dict[str, int]:
        """How many cells are done, to run (todo) and failed before."""
        states = [p.state[t.fold] for p in self.planned for t in p.tasks]
        return {k: states.count(k) for k in ("done", "todo", "failed")}

    def cells(self, with_states: bool = False) -> list[dict]:
        """One row per cell: run, run id, fold, state; with_states: and the state each executor that
        submitted it to `out` knows (a column per such executor, e.g. slurm from sacct)."""
        word = {"todo": "would run", "done": "done", "failed": "failed before"}

        def state(p: Planned, t: Task) -> str:  # a stopped cell continues from its checkpoints
            text = word[p.state[t.fold]]
            return text + " (from a checkpoint)" if p.state[t.fold] != "done" and checkpoint_files(t.path) else text

        rows = [dict(run=p.run.label(), run_id=p.run_id, fold=t.fold, state=state(p, t))
                for p in self.planned for t in p.tasks]
        if with_states:
            for name, entry in sorted(registry().executors.items()):
                known = entry.obj().states(self.out)
                if known:
                    for r in rows:
                        r[name] = known.get(f"{r['run_id']}/fold{r['fold']}", "")
        return rows


@dataclass
class SweepReport:
    """What a sweep did: a row per cell (run, run_id, fold, status, error, log), the result files
    it merged and, with `leaderboard`, (ok, message) of the leaderboard's regeneration."""

    plan: SweepPlan
    rows: list[dict]
    merged: list[Path]
    leaderboard: tuple[bool, str] | None = None
    #: (run id, why) of each run whose cells are all done but whose merge was refused (an edited or corrupt
    #: cell, a complete result with other numbers, folds from two starts)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many cells ended with each status (done, failed, skipped, failed earlier, not run)."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] in ("failed", "failed earlier")]


def check_executor(executor: str, workers: int | None, options: dict) -> tuple[type[Executor], dict]:
    """The registered executor and its options with defaults filled in; an unknown executor, an
    option it does not take, a value under its minimum or `workers` < 1 is one error line (the
    command line asks before planning, run_planned again for the API)."""
    if workers is not None and workers < 1:
        raise MsdeError(f"--workers {workers}: must be at least 1")
    cls = executor_class(executor)
    return cls, check_options(cls, options)


def run_planned(plan_: SweepPlan, *, executor: str = "local", workers: int | None = None, retry_failed: bool = False,
                on_done=None, leaderboard: Path | None = None, **options) -> SweepReport:
    """Runs the plan's cells to run (or, with `retry_failed`, those that failed before) on the
    executor registered as `executor` with its `options` (defaults filled in; an unknown option
    or a bad value is an error before anything runs), merges every run whose cells are all done,
    and with `leaderboard` (a markdown path) regenerates that leaderboard from `out`."""
    cls, options = check_executor(executor, workers, options)
    runner_ = cls()
    runner_.check()
    check_writable(plan_.out)
    merged: list[Path] = []
    by_id = {p.run_id: p for p in plan_.planned}

    def finished(task: Task, report: dict) -> None:
        # a run's result is written as soon as its last cell is done, not when the sweep ends: a
        # sweep of hours gives the results of its finished runs as they come (and keeps them if it
        # is stopped); report["result"] names the file a cell completed
        report["result"] = None
        if report["status"] == "done":
            p = by_id[task.run_id]  # (every task is a planned run's)
            p.state[task.fold] = "done"
            try:
                written = merge_results([p], plan_.out, plan_.track)
            except (MsdeError, OSError, ValueError):  # the sweep goes on; the merge after it says why
                written = []
            merged.extend(written)
            report["result"] = written[0] if written else None
        if on_done is not None:
            on_done(task, report)

    rows = execute(plan_.planned, runner_, workers=workers, retry_failed=retry_failed, on_done=finished, **options)
    refused: list[tuple[str, str]] = []
    merged += merge_results(plan_.planned, plan_.out, plan_.track, refused)
    lb = None
    if leaderboard is not None:
        lb = write_or_check([plan_.out], Path(leaderboard), False, False, DEFAULT_NOTES)
    return SweepReport(plan_, rows, merged, lb, refused)


def execute(planned: list[Planned], executor: Executor, *, workers: int | None = None, retry_failed: bool = False,
            on_done=None, **options) -> list[dict]:
    """Runs the cells to run on `executor`; returns one report row per cell: run, run_id, fold,
    status, error, log. `options`: the executor's (check_options)."""
    want = "failed" if retry_failed else "todo"
    tasks = [t for p in planned for t in p.tasks if p.state[t.fold] == want]
    reports: dict[tuple, dict] = {}
    if tasks:
        for task, report in executor.run(tasks, task_execute, workers=workers, on_done=on_done, **options):
            reports[(task.run_id, task.fold)] = report
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


def merge_results(planned: list[Planned], out: Path, track: Tracking | None = None,
                  refused: list[tuple[str, str]] | None = None) -> list[Path]:
    """The result file of every planned spec whose cells are all done (skipping current ones),
    each reported to `track`'s trackers. With `refused`, a merge that fails (an edited or corrupt cell,
    a complete result with other numbers, folds from two starts) is appended there as (run id, why)
    and the others go on; without it, it raises."""
    written = []
    for p in planned:
        if all(s == "done" for s in p.state.values()) and not _complete_result(out, p):
            try:
                merged = merge(p.spec, p.dataset, out, strict=refused is not None)
            except (MsdeError, OSError) as e:
                if refused is None:
                    raise
                refused.append((p.run_id, str(e) if isinstance(e, MsdeError) else os_problem(e)))
                continue
            if merged is not None:
                written.append(merged[1])
                if track is not None:
                    track.result(*merged)
    return written
