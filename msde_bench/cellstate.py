"""Checkpoints inside a cell: a training's whole state, saved under the cell folder at the end of every
epoch and every few minutes within one, so that a killed cell resumes where it stopped instead of at
epoch 0.

A cell trains up to three kinds of model, each a *phase* with its own file beside the cell file
(`<out>/<run_id>/fold<k>.json`):

- `fold<k>.ckpt`: the fold's model (the one the cell scores);
- `fold<k>.teacher.ckpt`: a distill teacher the cell trains itself (not found in the teacher cache);
- `fold<k>.select-<digest>.ckpt`: one candidate of a nested weight selection; once scored, the file
  keeps only its validation score, so a resumed cell never trains a finished candidate again.

A file holds the model, the optimiser, the schedule, the gradient scaler, every random generator
(the data order's, torch's, numpy's and Python's, the paradigm's own: Paradigm.resume_state), the
method's state outside its state dict (Method.resume_state), the epoch and step, and the epoch's
running sums, so that a resumed cell's record equals, number for number, the record of the same cell
trained without a stop (on the CPU, with the same threads; its seconds excepted).

The file is the SHA-256 of its payload (64 hex digits and a newline), then the payload (torch.save
of a dict of tensors and plain values, read with weights_only): a truncated or edited file is
refused with one line naming it, and its cell trains from its start. So is a file written for
another spec, dataset, fold or phase. Writes are atomic (a temporary file renamed into place), so
a kill while saving leaves the previous checkpoint whole; a write that fails (a full disk) stops the
run with one line naming the file, keeping the previous one. The files go when the cell is
written, unless `keep`.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msde_bench.atomic import write_bytes_atomic
from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.errors import MsdeError

CHECKPOINT_FORMAT = "msde-bench/cell-checkpoint/1"

_NUMPY = "__numpy__"


@dataclass(frozen=True)
class Policy:
    """How a run checkpoints its cells: `resume` continues from a checkpoint found (else a cell
    trains from its start, overwriting it); `minutes` between two checkpoints within an epoch (0:
    after every step); `keep` leaves the files after the cell is written."""

    resume: bool = False
    minutes: float = CHECKPOINT_MINUTES
    keep: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, (int, float)) or not (
                self.minutes >= 0 and np.isfinite(self.minutes)):
            raise MsdeError(f"--checkpoint-minutes {self.minutes!r}: expected a number of minutes >= 0")


def checkpoint_files(cell_json: Path) -> list[Path]:
    """Every checkpoint file of the cell whose file is `cell_json` (`<run_id>/fold<k>.json`)."""
    stem = cell_json.stem
    return sorted(p for p in cell_json.parent.glob(f"{stem}.*ckpt") if p.name.endswith(".ckpt"))


def phase_path(cell_json: Path, phase: str) -> Path:
    return cell_json.with_name(f"{cell_json.stem}.ckpt" if phase == "fold" else f"{cell_json.stem}.{phase}.ckpt")


def selection_phase(values: dict) -> str:
    """The phase name of a nested selection's candidate (the digest of its option values)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return "select-" + hashlib.sha256(text.encode()).hexdigest()[:10]


# -- packing: numpy arrays (a faithful run's best-epoch predictions) travel as tensors

def pack(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {_NUMPY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(pack(v) for v in obj)
    return obj


def unpack(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_NUMPY}:
            return obj[_NUMPY].numpy()
        return {k: unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unpack(v) for v in obj)
    return obj


def random_states() -> dict:
    """The process-wide generators a training may draw from: torch's (CPU and every CUDA device),
    numpy's and Python's."""
    np_state = np.random.get_state()
    return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=[np_state[0], torch.from_numpy(np_state[1].copy()), *map(_plain, np_state[2:])],
                python=_listify(random.getstate()))


def set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuplify(states["python"]))


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _listify(v):
    return [_listify(x) for x in v] if isinstance(v, tuple) else v


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


# -- one phase's file

class Checkpoint:
    """The checkpoint of one phase of one cell. `key`: what the file must have been written for
    (the whole spec as a dict, the dataset fingerprint, the fold, the phase); `say`: where its
    one-line messages go."""

    def __init__(self, path: Path, key: dict, policy: Policy, say: Callable[[str], None] = lambda text: None,
                 on_resume: Callable[[dict], None] = lambda where: None):
        self.path = Path(path)
        self.key = key
        self.policy = policy
        self.say = say
        self.on_resume = on_resume
        self.interval = policy.minutes * 60
        self.last_save = time.monotonic()

    def resumed(self, epoch: int, step: int, seconds: float) -> None:
        """The training continues from this checkpoint: said, and recorded for the cell file."""
        where = f"epoch {epoch + 1}, step {step}" if step else f"the start of epoch {epoch + 1}"
        phase = self.key.get("phase")
        label = (phase if self.key.get("fold") is None else
                 f"fold {self.key.get('fold')}" + ("" if phase == "fold" else f" ({phase})"))
        self.say(f"resumed {label} at {where} "
                 f"(from {self.path.name}; {seconds / 60:.1f} min of training kept)")
        self.on_resume(dict(epoch=epoch, step=step, seconds_kept=round(seconds, 1)))

    def due(self) -> bool:
        """Whether a checkpoint within the epoch is due now (`minutes` since the last one)."""
        return time.monotonic() - self.last_save >= self.interval

    def save(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(dict(format=CHECKPOINT_FORMAT, key=self.key, state=pack(state)), buf)
        payload = buf.getvalue()
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        try:
            write_bytes_atomic(self.path, data)
        except OSError as e:
            raise MsdeError(f"{self.path}: cannot save the training checkpoint ({e.strerror or type(e).__name__}); "
                            "the run stops here, the previous checkpoint and every finished cell are kept") from None
        self.last_save = time.monotonic()

    def load(self) -> dict | None:
        """The saved state when `resume` and the file is whole and written for this key; else None,
        saying in one line why a file that is there is not used (the phase then trains from its start).
        Read once: a second call returns the same."""
        if not hasattr(self, "_loaded"):
            self._loaded = self._load()
        return self._loaded

    def _load(self) -> dict | None:
        if not self.path.is_file():
            return None
        if not self.policy.resume:
            self.say(f"{self.path}: a checkpoint from an earlier run is there; training from the start (--resume "
                     "continues from it)")
            return None
        problem, state = self._read()
        if problem:
            self.say(f"[yellow]warning[/]: {self.path}: {problem}; training this fold from its start")
            return None
        return state

    def _read(self) -> tuple[str | None, dict | None]:
        try:
            data = self.path.read_bytes()
        except OSError as e:
            return f"unreadable ({e.strerror or type(e).__name__})", None
        digest, sep, payload = data.partition(b"\n")
        if not sep or len(digest) != 64:
            return "not an msde-bench cell checkpoint (truncated or another file)", None
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            return "its contents do not match their SHA-256 (truncated or edited)", None
        try:
            obj = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure becomes one line
            return f"not a readable checkpoint ({type(e).__name__})", None
        if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
            return "not an msde-bench cell checkpoint", None
        key = obj.get("key") or {}
        for field, what in (("spec", "another run spec"), ("fingerprint", "another dataset (or a changed one)"),
                            ("fold", "another fold"), ("phase", "another phase of the cell")):
            if key.get(field) != self.key.get(field):
                return f"written for {what}", None
        return None, unpack(obj["state"])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def remove_cell_checkpoints(cell_json: Path) -> None:
    """Removes every checkpoint of a cell (after its cell file is written)."""
    for p in checkpoint_files(cell_json):
        try:
            p.unlink()
        except OSError:
            pass


class CellCheckpoints:
    """The checkpoints of one cell: `phase(name)` gives each phase's Checkpoint."""

    def __init__(self, cell_json: Path, spec: dict, fingerprint: str, fold: int, policy: Policy,
                 say: Callable[[str], None] = lambda text: None):
        self.cell_json = Path(cell_json)
        self.spec, self.fingerprint, self.fold = spec, fingerprint, fold
        self.policy = policy
        self.say = say
        self.resumed: list[dict] = []

    def phase(self, name: str) -> Checkpoint:
        key = dict(spec=self.spec, fingerprint=self.fingerprint, fold=self.fold, phase=name)
        return Checkpoint(phase_path(self.cell_json, name), key, self.policy, self.say,
                          on_resume=lambda where: self.resumed.append(dict(phase=name, **where)))

    def finish(self) -> None:
        """The cell is written: its checkpoints go, unless the policy keeps them."""
        if not self.policy.keep:
            remove_cell_checkpoints(self.cell_json)

