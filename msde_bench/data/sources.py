"""The built-in dataset loaders: `synth:VARIANT` (the embedded set) and a folder in the MSD-E layout.

A loader is called as `loader(data, progress=callback)`; `msde_bench.factory.load_dataset` picks it."""

from __future__ import annotations

from pathlib import Path

from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import PairedDataset
from msde_bench.data.synth import ensure_cached, variant_config


def load_synth(data: str, *, seed: int = 0, progress=None) -> PairedDataset:
    """`synth:VARIANT` (full, small, tiny), generated once into the cache."""
    variant = data.split(":", 1)[1] if ":" in data else "small"
    cfg = variant_config(variant, seed=seed)
    path = ensure_cached(cfg, progress=progress)
    ds = read_msde(path, name=f"synth-{variant}")
    ds.source = f"synth:{variant}"
    return ds


def load_folder(data: str, **_) -> PairedDataset:
    """A folder in the MSD-E layout (MSD-E/, MSD-ME/, Paired_files.txt)."""
    return read_msde(Path(data))
