"""Reading and writing PyTorch checkpoints: clear one-line errors, atomic writes."""

from __future__ import annotations

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


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save to a temporary file beside `path`, then rename: never a half-written checkpoint."""
    path = Path(path)
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)
    return path
