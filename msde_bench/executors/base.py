"""The executor contract: what a sweep's cell is, and what an executor must do with it.

A sweep (msde_bench.sweep) plans a grid into cells, one `Task` per (run, fold), and hands the
tasks that still have to run to one executor, chosen by name (`msde-bench sweep --executor NAME`,
`api.run_sweep(executor=NAME)`). Executors are registered like methods: the built-in `local`,
`slurm` and `ray` by msde_bench.builtins, any other by an installed plugin's
`msde_bench_register_executors` hook. An executor is a subclass of `Executor` with

- `name`, `description` (class attributes) and `options`: the `ExecutorOption`s it takes, each a
  keyword of its `run` and a flag of `msde-bench sweep` (`--<executor>-<option>`, e.g.
  `--slurm-mem`; only built-ins choose other flags);
- `check()`: raises MsdeError (one line naming the pip command or the missing program) when the
  executor cannot work here; called before anything is submitted;
- `run(tasks, execute, *, workers, on_done, **options)`, which must
  1. call `execute(task)` exactly once per task, in any process or on any machine (`execute` and
     every task pickle; `execute` writes the cell's files atomically and never raises for the
     cell's own failure: it returns a report `{status, error, log, seconds}`);
  2. report every task, also one whose worker, job or node died: `collect(task, get, ...)` turns
     an exception of `get()` into that cell's failure (and writes its failed marker, which
     `sweep --retry-failed` retries), so one lost cell never stops the others; `execute` writes
     `task.running_marker` ({pid, host}) while the cell runs, which tells which cell a dead worker ran;
  3. divide the machine's threads when it runs several cells on one machine (one cell's torch
     threads times the cells at once must not exceed the cores: oversubscribed OpenMP threads run
     many times slower), and leave no process running after it returns or its caller is killed;
  4. return `[(task, report)]` for every task, and call `on_done(task, report)` as each finishes.
- optionally `states(out)`: {"<run_id>/fold<k>": state} of cells it submitted to `out`, shown by
  `sweep --status`.

Executors import what they need (torch, submitit, ray) inside their functions, so that the
registry and the command line can list them and their options cheaply. tests/test_sweep.py
checks the contract with a toy executor registered by a plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.errors import MsdeError, os_problem
from msde_bench.results import write_json_atomic
from msde_bench.spec import RunSpec


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one cell (plain data, so it pickles to any machine)."""

    spec: dict  # the whole spec, RunSpec.to_dict()
    fold: int
    dataset: dict  # PairedDataset.describe() the sweep planned with (its fingerprint is checked)
    out: str
    keep_model: bool = True
    #: --compile (device.compile_setting)
    compile: bool = False
    #: --log-samples: the cell's per-image predictions beside it (msde_bench.samples)
    log_samples: bool = False
    #: --track: the experiment trackers the cell reports to (msde_bench.tracking), and --track-dir
    track: tuple[str, ...] = ()
    track_dir: str | None = None
    #: --checkpoint-minutes and --keep-checkpoints (msde_bench.cellstate): a cell always resumes from
    #: its checkpoint when one is there
    checkpoint_minutes: float = CHECKPOINT_MINUTES
    keep_checkpoints: bool = False

    @property
    def run_id(self) -> str:
        return RunSpec.from_dict(self.spec).run_id(self.dataset["name"])

    @property
    def path(self) -> Path:
        """The cell file the task writes when it finishes."""
        return Path(self.out) / self.run_id / f"fold{self.fold}.json"

    @property
    def log(self) -> Path:
        return Path(self.out) / self.run_id / f"fold{self.fold}.log"

    @property
    def failed_marker(self) -> Path:
        return Path(self.out) / self.run_id / f"fold{self.fold}.failed.json"

    @property
    def running_marker(self) -> Path:
        """Written by the worker when it starts the cell ({pid, host}), removed when the cell ends: which
        process ran a cell whose worker died (the local executor reads it)."""
        return Path(self.out) / self.run_id / f"fold{self.fold}.running"


#: the function an executor runs once per task: `execute(task) -> report`
CellFunction = Callable[[Task], dict]
OnDone = Callable[[Task, dict], None]

_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class ExecutorOption:
    """One option of an executor: a keyword of its `run` and a flag of `msde-bench sweep`."""

    name: str  # the keyword `run` takes
    type: type = str  # str, int, float or bool (a bool is an on/off flag)
    default: Any = None
    help: str = ""
    #: repeatable KEY=VALUE flag, passed to `run` as a dict
    multiple: bool = False
    #: the smallest value a number may take (checked before anything runs)
    minimum: float | None = None
    #: the flag [default: --<executor>-<name with - for _>]; only built-in executors choose another
    flag: str | None = None

    def cli_flag(self, executor: str) -> str:
        return self.flag or f"--{executor}-{self.name.replace('_', '-')}"


class Executor:
    """Base class of executors (module docstring: the contract)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[ExecutorOption, ...]] = ()

    def check(self) -> None:
        """Raise MsdeError when this executor cannot work here (an extra or a program missing)."""

    def run(self, tasks: list[Task], execute: CellFunction, *, workers: int | None = None,
            on_done: OnDone | None = None, **options) -> list[tuple[Task, dict]]:
        raise NotImplementedError

    def states(self, out: str | Path) -> dict[str, str]:
        """{"<run_id>/fold<k>": state} of the cells this executor submitted to `out` (none by default)."""
        return {}


def check_executor_class(name: str, cls: Any, builtin: bool) -> None:
    """What the registry checks when an executor is registered: an Executor subclass whose options
    are well formed; a plugin's flags are `--<name>-<option>` (they cannot take another flag)."""
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise MsdeError(f"executor {name!r}: {cls!r} is not a subclass of msde_bench.api.Executor")
    seen = set()
    for opt in cls.options:
        if not isinstance(opt, ExecutorOption) or opt.type not in _TYPES:
            raise MsdeError(f"executor {name!r}: option {opt!r} must be an ExecutorOption of type "
                            "str, int, float or bool")
        if opt.flag is not None and not builtin:
            raise MsdeError(f"executor {name!r}: option {opt.name!r} may not choose its flag ({opt.flag}); "
                            f"a plugin executor's flags are --{name}-OPTION")
        if opt.name in seen or opt.name in ("workers", "on_done", "execute", "tasks"):
            raise MsdeError(f"executor {name!r}: option name {opt.name!r} is used twice or reserved")
        seen.add(opt.name)


def check_options(cls: type[Executor], options: dict) -> dict:
    """The executor's options with defaults filled in; an unknown option or a number under its
    minimum is one error line naming the flag."""
    known = {o.name: o for o in cls.options}
    for key in options:
        if key not in known:
            raise MsdeError(f"executor {cls.name!r} has no option {key!r} "
                            f"({', '.join(sorted(known)) or 'it takes none'})")
    out = {}
    for opt in cls.options:
        value = options.get(opt.name, opt.default)
        if opt.multiple:
            value = _pairs(opt.cli_flag(cls.name), value)
        if opt.minimum is not None and value is not None and value < opt.minimum:
            raise MsdeError(f"{opt.cli_flag(cls.name)} {value}: must be at least {opt.minimum:g}")
        out[opt.name] = value
    return out


def _pairs(flag: str, value) -> dict:
    """A repeatable KEY=VALUE option as a dict (given as a dict, or as the flag's strings)."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    bad = [v for v in value if "=" not in str(v)]
    if bad:
        raise MsdeError(f"{flag} {bad[0]!r}: expected KEY=VALUE")
    return dict(str(v).split("=", 1) for v in value)


def collect(task: Task, get: Callable[[], dict], failed_as: str, done: list, on_done: OnDone | None = None) -> dict:
    """The report of a task from `get()` (a future's or a job's result); an exception there (the
    worker, job or node died outside the cell) fails that cell only. Appends (task, report) to
    `done` and tells `on_done`."""
    try:
        report = get()
    except Exception as e:  # noqa: BLE001 - one lost worker never stops the sweep
        report = failed(task, f"{failed_as}: {type(e).__name__}: {e}".splitlines()[0])
    done.append((task, report))
    if on_done is not None:
        on_done(task, report)
    return report



def failed(task: Task, error: str, seconds: float = 0.0) -> dict:
    """The report of a failed cell (one that raised in its worker, or whose worker, job or node died),
    with its failed marker written, so that `sweep --retry-failed` retries exactly it; where the marker
    cannot be written (a full disk), the report's error says so."""
    try:
        write_json_atomic(task.failed_marker, dict(task=asdict(task), error=error, log=str(task.log)))
    except OSError as e:
        error += f" (its failed marker could not be written either: {os_problem(e)})"
    task.running_marker.unlink(missing_ok=True)
    return dict(status="failed", error=error, log=str(task.log), seconds=seconds)
