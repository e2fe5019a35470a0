import importlib
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from msde_bench.data.synth import SynthConfig, write_dataset
from msde_bench.plugins import registry

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


@pytest.fixture
def install(tmp_path):
    """Makes a package visible the way pip would: its modules on sys.path and a .dist-info folder
    with an entry_points.txt declaring the group msde_bench."""
    added, modules = [], []

    def _install(dist: str, entry_points: dict[str, str], sources: dict[str, str] | None = None,
                 path: Path | None = None, version: str = "1.2.3"):
        site = tmp_path / f"site-{dist}"
        site.mkdir()
        for name, src in (sources or {}).items():
            (site / f"{name}.py").write_text(textwrap.dedent(src))
            modules.append(name)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(
            "[msde_bench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
        for p in (site, path):
            if p is not None:
                sys.path.insert(0, str(p))
                added.append(str(p))
        modules.extend(entry_points.values())
        importlib.invalidate_caches()
        return registry(reload=True)

    yield _install
    for p in added:
        sys.path.remove(p)
    for m in modules:
        sys.modules.pop(m, None)
    importlib.invalidate_caches()
    registry(reload=True)
