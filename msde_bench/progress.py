"""The progress display of a run: rich bars for fold, epoch and batch, with the running loss,
training accuracy and, at the end of each epoch, every loss term (`bar`, on a terminal); or one
plain line per epoch (`lines`, for logs, CI and SLURM jobs); or nothing (`none`)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def epoch_line(record: dict) -> str:
    """`loss 1.234 acc 0.567 · ce 1.2 align 0.03`: an epoch's train_history record in one line."""
    terms = [f"{k} {v:.3g}" for k, v in record.items() if k not in ("epoch", "loss", "train_acc", "lr")]
    head = f"loss {record['loss']:.3f} acc {record['train_acc']:.3f}"
    return head + (" · " + " ".join(terms) if terms else "")


#: --progress values; auto is bar on a terminal, lines otherwise
PROGRESS_MODES = ("auto", "bar", "lines", "none")


def progress_mode(setting: str | bool | None, console: Console) -> str:
    """bar, lines or none from a --progress value (True/False/None: bar/none/auto, for the API)."""
    mode = {None: "auto", True: "bar", False: "none"}.get(setting, setting)  # type: ignore[arg-type]
    if mode not in PROGRESS_MODES:
        raise ValueError(f"unknown progress mode {setting!r}; choose one of {', '.join(PROGRESS_MODES)}")
    return ("bar" if console.is_terminal else "lines") if mode == "auto" else mode


#: in `lines` mode a long epoch prints a line at least this often (seconds): steps done, images/s, ETA
HEARTBEAT_SECONDS = 30.0


class RunProgress:
    """rich progress bars for fold, epoch and batch with running loss and accuracy (mode `bar`),
    one plain line per epoch and, within a long epoch, one at least every HEARTBEAT_SECONDS
    (`lines`), or nothing (`none`)."""

    def __init__(self, console: Console, n_folds: int, epochs: int, mode: str | bool):
        self.console = console
        self.mode = mode if isinstance(mode, str) else ("bar" if mode else "none")
        self.n_epochs = epochs
        self.fold = 0
        self.t_epoch = self.t_said = time.perf_counter()
        self.epoch = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
            disable=self.mode != "bar",
        )
        self.folds = self.progress.add_task("folds", total=n_folds, info="")
        self.epochs = self.progress.add_task("epochs", total=epochs, info="")
        self.steps = self.progress.add_task("batches", total=1, info="")
        #: called once, with the seconds a step took, after the first timed steps of the run
        self.on_step_time = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_fold(self, fold: int) -> None:
        self.fold = fold
        self.progress.update(self.folds, description=f"fold {fold}")
        self.progress.reset(self.epochs)

    def end_fold(self) -> None:
        self.progress.advance(self.folds)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.t_epoch = self.t_said = time.perf_counter()
        self.epoch = epoch
        self.progress.reset(self.steps, total=steps)
        self.progress.update(self.epochs, description=f"epoch {epoch + 1}")

    def wants_batches(self) -> bool:
        """Whether per-batch updates are shown (bars); the trainer reads the running loss only then."""
        return self.mode == "bar"

    def wants_step_time(self) -> bool:
        """Whether the trainer should time its first steps (once per run: the time estimate)."""
        return self.on_step_time is not None

    def step_time(self, seconds: float) -> None:
        callback, self.on_step_time = self.on_step_time, None
        callback(seconds)

    def tick(self, done: int, steps: int, images: int) -> None:
        """After each step (cheap: a clock read): in `lines` mode, a line when the last one is
        HEARTBEAT_SECONDS old, with the steps done, the images per second and the epoch's ETA."""
        if self.mode != "lines":
            return
        now = time.perf_counter()
        if now - self.t_said < HEARTBEAT_SECONDS or done >= steps:
            return
        self.t_said = now
        spent = now - self.t_epoch
        eta = spent / done * (steps - done)
        self.console.print(f"fold {self.fold} epoch {self.epoch + 1}/{self.n_epochs} · step {done}/{steps} · "
                           f"{images / spent:.0f} images/s · {eta:.0f} s left in the epoch", highlight=False,
                           markup=False)

    def batch(self, done: int, loss: float, acc: float) -> None:
        self.progress.update(self.steps, completed=done, info=f"loss {loss:.3f} acc {acc:.3f}")

    def end_epoch(self, epoch: int, record: dict) -> None:
        self.progress.update(self.epochs, advance=1, info=epoch_line(record))
        if self.mode == "lines":
            self.console.print(f"fold {self.fold} epoch {epoch + 1}/{self.n_epochs} · {epoch_line(record)} · "
                               f"lr {record['lr']:.3g} · {time.perf_counter() - self.t_epoch:.1f} s",
                               highlight=False, markup=False)
