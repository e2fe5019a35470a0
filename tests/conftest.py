import os
import shutil
from pathlib import Path

import pytest
import torch

from msde_bench.data.synth import SynthConfig, write_dataset

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own cache home and no model hub."""
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MSDE_BENCH_DISABLE_PLUGINS", raising=False)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A tiny synthetic set (8 subjects x 7 expressions, 32 px), written once per session."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    write_dataset(SynthConfig(subjects=8, image_size=32, seed=0, variant="tiny"), out)
    return out


@pytest.fixture
def tiny_copy(tiny_root, tmp_path) -> Path:
    """A private copy of the tiny set that a test may break."""
    dst = tmp_path / "ds"
    shutil.copytree(tiny_root, dst)
    return dst
