"""The distill teacher cache: each fold's non-masked baseline model, under $MSDE_BENCH_HOME/teachers.

A distill fold's teacher is the baseline of the same model trained on the non-masked views of the
fold's training pairs from the fold's seed: exactly the model that the baseline run with
`train_on=non-masked` of the same settings trains on that fold. Both write it here: the distill
run when it trains a teacher, and such a baseline run after training its fold (so `compare`, whose
non-masked baseline row runs before its distill row, and a sweep that holds both train it once).
A file is keyed by the teacher's spec, fold, seed, data fingerprint and training subjects. A
file lock lets one process train a teacher while another that needs it waits and loads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from msde_bench.checkpoints import cpu_state, save_torch_atomic
from msde_bench.home import cache_home
from msde_bench.spec import RunSpec

TEACHER_FORMAT = "msde-bench/teacher/1"


def is_teacher_spec(spec: RunSpec) -> bool:
    """Whether a run of `spec` trains models that are distill teachers (a non-masked baseline)."""
    return spec.paradigm == "baseline" and spec.option("train_on") == "non-masked"


def cache_path(spec: RunSpec, fold: int, seed: int, fingerprint: str, train_subjects: list) -> Path:
    """Where the teacher of `spec` (a baseline spec) for this fold, seed and data is cached."""
    key = hashlib.sha256(json.dumps(dict(spec=spec.whole().to_dict(), fold=fold, seed=seed, data=fingerprint,
                                         train_subjects=train_subjects), sort_keys=True).encode()).hexdigest()[:16]
    path = cache_home() / "teachers" / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def lock(path: Path) -> FileLock:
    """The lock a process holds while it trains the teacher cached at `path`."""
    return FileLock(str(path) + ".lock")


def save(path: Path, model: torch.nn.Module, spec: RunSpec, fold: int, seed: int, train_subjects: list,
         train_seconds: float) -> dict:
    """Writes the teacher file (atomically); returns its metadata."""
    meta = dict(format=TEACHER_FORMAT, spec=spec.whole().to_dict(), fold=fold, seed=seed,
                train_subjects=train_subjects, train_seconds=train_seconds)
    save_torch_atomic(path, dict(format=TEACHER_FORMAT, meta=meta, state_dict=cpu_state(model)))
    return meta


class Publisher:
    """A baseline fold that trains a teacher offers its model to the cache: `claim()` before
    training takes the teacher's lock unless the teacher is cached already or another process is
    training it (then this fold trains on, and publishes nothing); `publish(model)` after training
    writes the file; `release()` in any case."""

    def __init__(self, spec: RunSpec, fold: int, seed: int, fingerprint: str, train_subjects: list):
        self.spec, self.fold, self.seed, self.train_subjects = spec, fold, seed, train_subjects
        self.path = cache_path(spec, fold, seed, fingerprint, train_subjects)
        self.lock: FileLock | None = None

    def claim(self) -> bool:
        if self.path.is_file():
            return False
        lk = lock(self.path)
        try:
            lk.acquire(timeout=0)
        except Timeout:  # a distill run trains this teacher now
            return False
        if self.path.is_file():  # written between the check and the lock
            lk.release()
            return False
        self.lock = lk
        return True

    def publish(self, model: torch.nn.Module, train_seconds: float) -> None:
        if self.lock is not None:
            save(self.path, model, self.spec, self.fold, self.seed, self.train_subjects, train_seconds)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
