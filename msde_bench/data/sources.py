"""Resolving `--data` to a PairedDataset: `synth:VARIANT` or a folder in the MSD-E layout."""

from __future__ import annotations

from pathlib import Path

from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import PairedDataset
from msde_bench.data.synth import ensure_cached, variant_config


def load_synth(data: str, *, seed: int = 0, progress=None) -> PairedDataset:
    variant = data.split(":", 1)[1] if ":" in data else "small"
    cfg = variant_config(variant, seed=seed)
    path = ensure_cached(cfg, progress=progress)
    ds = read_msde(path, name=f"synth-{variant}")
    ds.source = f"synth:{variant}"
    return ds


def load_folder(data: str, **_) -> PairedDataset:
    return read_msde(Path(data))


def resolve(data: str, *, progress=None) -> PairedDataset:
    """`NAME[:ARG]` for a registered dataset (`synth:small` is the embedded set, generated once into
    the cache); an existing path, or anything else, is read as an MSD-E-layout folder."""
    from msde_bench.plugins import registry

    datasets = registry().datasets
    prefix = data.split(":", 1)[0]
    if prefix in datasets and prefix != "msde" and not Path(data).exists():
        return datasets[prefix].obj(data, progress=progress)
    return load_folder(data)
