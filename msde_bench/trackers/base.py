"""The tracker contract: what an experiment tracker (`--track NAME`) gets from a run, and when.

A tracker sends what msde-bench measures to an experiment tracker as it is measured: each epoch's
training loss terms, accuracy and learning rate (and, under the `faithful` protocol, the epoch's
test accuracies), each fold's final numbers with its cell file, and each run's result file. The
built-in `tensorboard` and `mlflow` are registered by msde_bench.builtins, any other by a plugin's
`msde_bench_register_trackers` hook. A tracker is a subclass of `Tracker` with

- `name` and `description` as class attributes;
- `check()` (a classmethod): raise MsdeError (one line naming the pip command) when its package is
  missing; called before anything trains;
- `__init__(folder)`: `folder` is `--track-dir` (default ./tracking); the tracker writes under it
  (e.g. `folder / "tensorboard"`), or where its own settings say (MLflow: MLFLOW_TRACKING_URI);
- one instance per cell (a fold of a run, in the process that trains it, on any executor):
  `start_cell(cell)`, then `log_epoch(epoch, values)` after each epoch (epoch counts from 1), then
  `end_cell(record, cell_file)` when the cell file is written, or `fail_cell(error)` when the
  cell failed (the instance is then dropped);
- one instance per result (in the process that writes it: `run`, `compare`, a sweep's merge):
  `log_result(result, result_file)` once the result file is written.

A tracker never changes a result: an exception it raises is one warning line, and that tracker is
left out for the rest of the cell (or result). msde-bench never reads what a tracker wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from msde_bench.errors import MsdeError


@dataclass(frozen=True)
class TrackedCell:
    """The cell a tracker instance follows: one fold of one run."""

    run_id: str
    fold: int
    #: RunSpec.to_dict() of the whole run
    spec: dict
    #: PairedDataset.describe() (name, fingerprint, counts)
    dataset: dict


class Tracker:
    """Base class of experiment trackers (module docstring: the contract)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def check(cls) -> None:
        """Raise MsdeError when this tracker cannot work here (its package missing)."""

    def start_cell(self, cell: TrackedCell) -> None:
        """A cell starts training."""

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Values of one epoch (1-based): `train/<term>` (each loss term the paradigm returned,
        `train/loss` their total), `train/acc`, `lr`; under the faithful protocol also
        `test/acc_non_masked`, `test/acc_masked`, `test/acc_overall`."""

    def end_cell(self, record: dict, cell_file: Path) -> None:
        """The cell finished: `record` is its fold record (the result's `folds[k]`), `cell_file`
        the JSON file written."""

    def fail_cell(self, error: str) -> None:
        """The cell failed with this error (nothing was written for it)."""

    def log_result(self, result: dict, result_file: Path) -> None:
        """A run's result file was written (on a fresh instance)."""


def check_tracker_class(name: str, cls: Any) -> None:
    """What the registry checks when a tracker is registered."""
    if not (isinstance(cls, type) and issubclass(cls, Tracker)):
        raise MsdeError(f"tracker {name!r}: {cls!r} is not a subclass of msde_bench.api.Tracker")


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a fold record (or a dict in it) as flat `prefix + key` scalars: ints and
    floats at the top level and one level down (`val/acc_masked`); lists, strings and booleans
    are left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[prefix + key] = float(value)
        elif isinstance(value, dict) and not prefix:
            out.update(scalars(value, f"{key}/"))
    return out


def summary_scalars(result: dict) -> dict[str, float]:
    """A result's summary as scalars: each metric's mean under its key and its std as `<key>_std`."""
    out: dict[str, float] = {}
    for key, stats in result.get("summary", {}).items():
        out[key] = float(stats["mean"])
        if stats.get("std") is not None:
            out[f"{key}_std"] = float(stats["std"])
    return out


def parameters(spec: dict) -> dict[str, str]:
    """A spec as flat string parameters: `opts` as `opt.<key>`, None as "none"."""
    out: dict[str, str] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            prefix = "opt" if key == "options" else key
            out.update({f"{prefix}.{k}": _text(v) for k, v in value.items()})
        else:
            out[key] = _text(value)
    return out


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
