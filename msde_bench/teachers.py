"""The distill teacher, in one place: each fold's non-masked baseline model, cached under
$MSDE_BENCH_HOME/teachers, locked, loaded and saved behind `TeacherCache`.

A distill fold's teacher is the baseline of the same model trained on the non-masked views of the
fold's training pairs from the fold's seed: exactly the model that the baseline run with
`train_on=non-masked` of the same settings trains on that fold. Both write it here: the distill
run when it trains a teacher (`TeacherCache.get`), and such a baseline run after training its fold
(`claim` / `publish` / `release`), so `compare`, whose non-masked baseline row runs before its
distill row, and a sweep that holds both train it once. A file is keyed by the teacher's spec,
fold, seed, data fingerprint and training subjects. A file lock lets one process train a teacher
while another that needs it waits and loads it. `load` reads a teacher file (or any checkpoint of
the model, for `--opt teacher=PATH`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from msde_bench.checkpoints import cpu_state, load_torch, save_torch_atomic
from msde_bench.errors import MsdeError
from msde_bench.home import cache_home
from msde_bench.spec import RunSpec

TEACHER_FORMAT = "msde-bench/teacher/1"


def is_teacher_spec(spec: RunSpec) -> bool:
    """Whether a run of `spec` trains models that are distill teachers (a non-masked baseline)."""
    return spec.paradigm == "baseline" and spec.option("train_on") == "non-masked"


def load(path: Path, build: Callable[[], torch.nn.Module], model: str) -> tuple[torch.nn.Module, dict]:
    """A teacher from `path`: a teacher file (with its metadata: training subjects and seconds), a
    checkpoint holding a `state_dict`, or a bare state dict (DataParallel's `module.` prefix
    dropped), loaded strictly into `build()`. Returns (model, metadata)."""
    obj = load_torch(path, missing="teacher checkpoint not found")
    meta = {}
    if isinstance(obj, dict) and obj.get("format") == TEACHER_FORMAT:
        meta, state = obj.get("meta", {}), obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
    else:
        state = obj
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    net = build()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise MsdeError(f"{path}: does not fit model {model!r} ({str(e).splitlines()[0]})") from None
    return net, meta


class TeacherCache:
    """The cached teacher of one fold: `spec` is the teacher's (a non-masked baseline spec)."""

    def __init__(self, spec: RunSpec, fold: int, seed: int, fingerprint: str, train_subjects: list):
        self.spec, self.fold, self.seed, self.train_subjects = spec, fold, seed, train_subjects
        key = hashlib.sha256(json.dumps(dict(spec=spec.whole().to_dict(), fold=fold, seed=seed, data=fingerprint,
                                             train_subjects=train_subjects), sort_keys=True).encode()).hexdigest()
        self.path = cache_home() / "teachers" / f"{key[:16]}.pt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._claimed: FileLock | None = None

    def lock(self) -> FileLock:
        """The lock a process holds while it trains this teacher."""
        return FileLock(str(self.path) + ".lock")

    def save(self, model: torch.nn.Module, train_seconds: float) -> dict:
        """Writes the teacher file (atomically); returns its metadata."""
        meta = dict(format=TEACHER_FORMAT, spec=self.spec.whole().to_dict(), fold=self.fold, seed=self.seed,
                    train_subjects=self.train_subjects, train_seconds=train_seconds)
        save_torch_atomic(self.path, dict(format=TEACHER_FORMAT, meta=meta, state_dict=cpu_state(model)))
        return meta

    def get(self, build: Callable[[], torch.nn.Module], train: Callable[[], tuple[torch.nn.Module, dict]],
            say: Callable[[str], None]) -> tuple[torch.nn.Module, dict, str]:
        """The teacher: loaded from the cache, or trained by `train()` (-> model, timing) and cached,
        under the lock (another process that needs it waits, then loads it). Returns (model,
        metadata, where it came from)."""
        with self.lock():
            if self.path.is_file():
                model, meta = load(self.path, build, self.spec.model)
                return model, meta, f"cache {self.path}"
            say(f"fold {self.fold}: training the non-masked teacher ({self.spec.epochs} epochs)")
            model, timing = train()
            return model, self.save(model, timing["train_seconds"]), f"trained ({self.path})"

    # a non-masked baseline fold offering its model to the cache

    def claim(self) -> bool:
        """Before a baseline fold trains: take the teacher's lock unless the teacher is cached
        already or another process is training it (then the fold trains on and publishes nothing)."""
        if self.path.is_file():
            return False
        lk = self.lock()
        try:
            lk.acquire(timeout=0)
        except Timeout:  # a distill run trains this teacher now
            return False
        if self.path.is_file():  # written between the check and the lock
            lk.release()
            return False
        self._claimed = lk
        return True

    def publish(self, model: torch.nn.Module, train_seconds: float) -> None:
        """After the fold trained: write its model as the teacher, if claimed."""
        if self._claimed is not None:
            self.save(model, train_seconds)

    def release(self) -> None:
        if self._claimed is not None:
            self._claimed.release()
            self._claimed = None
