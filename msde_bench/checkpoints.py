"""Reading and writing PyTorch checkpoints: clear one-line errors, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from msde_bench.atomic import atomic_target
from msde_bench.errors import MsdeError


def load_torch(path: str | os.PathLike, *, missing: str = "checkpoint not found",
               unreadable: str = "not a readable PyTorch checkpoint") -> Any:
    """torch.load on the CPU, tensors only (weights_only); a missing or unreadable file is an
    MsdeError naming it."""
    path = Path(path)
    if not path.is_file():
        raise MsdeError(f"{path}: {missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure becomes one line
        raise MsdeError(f"{path}: {unreadable} ({type(e).__name__})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (a checkpoint's provenance), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save to a temporary file beside `path`, then rename: never a half-written checkpoint.
    Serialised in memory first: torch.save names its archive after the file it writes, so saving
    to the temporary name directly would make the bytes (and the SHA-256 a fold record keeps)
    differ between two saves of the same weights."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return path


# -- fold models: what `msde-bench run --save-models` writes and `msde-bench explain` reads

MODEL_FORMAT = "msde-bench/model/1"


def model_path(result_path: Path, run_id: str, fold: int) -> Path:
    """Where a run's fold model lives: `<results folder>/<run_id>/fold<k>.pt`."""
    return result_path.parent / run_id / f"fold{fold}.pt"


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors, whatever its device and memory format."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_model(path: Path, method: torch.nn.Module, spec: dict, fold: int, test_subjects) -> None:
    """The fold's final weights with the spec (as a dict) that rebuilds the model."""
    save_torch_atomic(path, dict(format=MODEL_FORMAT, spec=spec, fold=fold, test_subjects=list(test_subjects),
                                 state_dict=cpu_state(method)))


def read_model(path: Path) -> dict:
    """A fold model file: {format, spec, fold, test_subjects, state_dict}."""
    obj = load_torch(path, missing="model file not found; run again with --save-models to explain this run",
                     unreadable="not a readable model file")
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise MsdeError(f"{path}: not an msde-bench model file")
    return obj


def check_init_subjects(init: str | None, data: str, fold: int, test_subjects) -> None:
    """An msde-bench fold model given as --init for a run on the same data must have been trained
    without this fold's test subjects, i.e. be the model of the same fold (its test subjects equal
    this fold's); any other fold's model trained on them. Other checkpoints are not checked."""
    if not init:
        return
    try:
        obj = load_torch(Path(init))
    except MsdeError:
        return  # build_method reports an unreadable --init
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT or (obj.get("spec") or {}).get("data") != data:
        return
    trained_on_test = sorted(set(test_subjects) - set(obj.get("test_subjects") or []))
    if trained_on_test:
        raise MsdeError(f"--init {init}: this fold model (fold {obj.get('fold')}) was trained on subjects "
                        f"{trained_on_test[:10]} that fold {fold} tests; initialise fold {fold} only from the model "
                        f"of the same fold (--fold {obj.get('fold')})")
