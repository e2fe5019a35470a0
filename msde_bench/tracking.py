"""`--track NAME [--track-dir DIR]`: the experiment trackers a run, compare or sweep reports to.

`Tracking` names the registered trackers (msde_bench.trackers.base: the contract) and their
folder; `Tracking.of` checks them (once, before anything runs: the runner and the sweep take a
checked one), and a sweep's task carries the names and folder to any worker, which checks again. It makes one tracker
instance per cell (`cell`) and per written result (`result`), and calls them so that a tracker's
failure never touches the benchmark: the first exception of a tracker is one warning line, and that
tracker is left out for the rest of the cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from msde_bench.errors import MsdeError
from msde_bench.factory import tracker_class
from msde_bench.trackers.base import TrackedCell, Tracker

DEFAULT_FOLDER = "tracking"
#: the test accuracies a faithful-protocol epoch reports (msde_bench.runner: best-on-test selection)
TEST_KEYS = ("acc_non_masked", "acc_masked", "acc_overall")


@dataclass(frozen=True)
class Tracking:
    names: tuple[str, ...] = ()
    folder: str = DEFAULT_FOLDER

    @classmethod
    def of(cls, names: Iterable[str] | None, folder: str | Path | None = None) -> Tracking | None:
        """The tracking of `--track` names (duplicates dropped) and `--track-dir`; None for no names.
        An unknown name or a tracker whose package is missing is one error line, before anything runs."""
        names = tuple(dict.fromkeys(names or ()))
        if not names:
            return None
        for name in names:
            try:
                tracker_class(name).check()
            except MsdeError:
                raise
            except (Exception, SystemExit) as e:  # noqa: BLE001 - a plugin's check that breaks is one line too
                raise MsdeError(f"--track {name}: the tracker's check failed ({_why(e)}); fix or uninstall the "
                                "plugin that registers it, or run without --track") from None
        return cls(names, str(folder or DEFAULT_FOLDER))

    def absolute(self) -> Tracking:
        """The same with an absolute folder (a sweep's worker may start in another folder)."""
        return Tracking(self.names, str(Path(self.folder).resolve()))

    def _trackers(self, console: Console) -> list[Tracker]:
        """An instance of each tracker; one whose construction raises is a warning line and left out."""
        made = []
        for name in self.names:
            try:
                made.append(tracker_class(name)(Path(self.folder)))
            except (Exception, SystemExit) as e:  # noqa: BLE001 - a tracker never changes a result
                console.print(f"[yellow]warning[/]: tracker {name}: it could not start ({_why(e)}); it is left out "
                              "for this cell", highlight=False)
        return made

    def cell(self, cell: TrackedCell, console: Console | None = None) -> CellTracking:
        """The trackers of one cell, started."""
        console = console or Console(stderr=True)
        session = CellTracking(self._trackers(console), console)
        session.call("start_cell", cell)
        return session

    def result(self, result: dict, path: Path, console: Console | None = None) -> None:
        """Reports a written result file to every tracker."""
        console = console or Console(stderr=True)
        CellTracking(self._trackers(console), console).call("log_result", result, path)


def _why(e: BaseException) -> str:
    """An exception as `Type: its first line` (200 characters at most)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


class CellTracking:
    """Live tracker instances: each call goes to every tracker that has not failed yet."""

    def __init__(self, trackers: list[Tracker], console: Console) -> None:
        self.live = trackers
        self.console = console

    def call(self, method: str, *args) -> None:
        for tracker in list(self.live):
            try:
                getattr(tracker, method)(*args)
            except (Exception, SystemExit) as e:  # noqa: BLE001 - a tracker never changes a result (nor ends it)
                self.live.remove(tracker)
                self.console.print(f"[yellow]warning[/]: tracker {tracker.name}: {method} failed "
                                   f"({_why(e)}); it is left out for the rest of this cell", highlight=False)

    def train_epoch(self, epoch: int, record: dict) -> None:
        """A training epoch's record (msde_bench.training: loss terms, train_acc, lr) as
        `train/<term>`, `train/acc` and `lr` at step `epoch` (1-based)."""
        values = {("train/acc" if k == "train_acc" else "lr" if k == "lr" else f"train/{k}"): float(v)
                  for k, v in record.items() if k != "epoch"}
        self.call("log_epoch", epoch, values)

    def test_epoch(self, epoch: int, metrics: dict) -> None:
        """A faithful-protocol epoch's test accuracies as `test/<key>`."""
        self.call("log_epoch", epoch, {f"test/{k}": float(metrics[k]) for k in TEST_KEYS})

    def end(self, record: dict, cell_file: Path) -> None:
        self.call("end_cell", record, cell_file)

    def fail(self, error: str) -> None:
        self.call("fail_cell", error)
