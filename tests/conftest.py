import os

import pytest
import torch

from msde_bench.data.synth import SynthConfig, write_dataset

# the fixtures every plugin's tests get too: tiny_root, tiny_copy, an isolated cache home
pytest_plugins = ["msde_bench.testing"]

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def other_set(tmp_path_factory):
    """A second tiny synthetic set (another seed: other faces), for tests that need a set besides
    tiny_root (cross-dataset runs, evaluation, pretraining)."""
    out = tmp_path_factory.mktemp("other") / "other"
    write_dataset(SynthConfig(subjects=8, image_size=32, seed=1, variant="tiny"), out)
    return out
