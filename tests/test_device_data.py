"""The training loop's data path: images are gathered where the training device can index them, only
the views a paradigm uses are augmented, and training reads nothing back from the device per step.

Device-agnostic: the tests run on the CPU here and on every accelerator a machine has."""

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from msde_bench.api import build_spec
from msde_bench.data.pairs import ImageCache
from msde_bench.data.transforms import PairedAugment
from msde_bench.errors import MsdeError
from msde_bench.factory import build_method, build_paradigm
from msde_bench.training import Trainer, place_cache

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])
#: the calls that read a device tensor back to the host (a synchronisation on an accelerator)
SYNCS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "cpu", "numpy"}


class Calls(TorchFunctionMode):
    """Records every torch call made inside it: (name, args)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        caller = sys._getframe(1)
        while caller is not None and caller.f_code.co_filename.endswith(("torch/overrides.py", "torch/_tensor.py")):
            caller = caller.f_back
        where = caller.f_code.co_filename if caller is not None else ""
        self.calls.append((getattr(func, "__name__", str(func)), args, where))
        return func(*args, **(kwargs or {}))

    def count(self, names) -> Counter:
        """The calls of these names, by name and calling file; torch.optim's own are left out: it keeps
        its step counters on the host (unless capturable), so reading them does not synchronise."""
        return Counter((name, Path(where).name) for name, _, where in self.calls
                       if name in names and f"torch{os.sep}optim" not in where)


class _Cache(ImageCache):
    def __init__(self, n, size=8):  # noqa: D401 - random pixels, no files
        g = torch.Generator().manual_seed(0)
        self.non_masked = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.masked = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.arange(n) % 7


def _trainer(model, paradigm, device, opts=(), size=8, **kw):
    spec = build_spec(model, paradigm, data="synth:small", device="cpu", options=list(opts), image_size=size,
                      batch_size=8, epochs=1, augment="paper", **kw)
    torch.manual_seed(0)
    method, _ = build_method(spec)
    return Trainer(spec, method, build_paradigm(spec), torch.device(device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("paradigm,opts", [("contrastive", ()), ("baseline", ()), ("baseline", ("train_on=masked",))])
def test_batches_index_the_cache_on_the_training_device_without_copying_images(device, paradigm, opts):
    dev = torch.device(device)
    cache = _Cache(12)
    placed = place_cache(cache, dev)
    assert placed.non_masked.device.type == placed.masked.device.type == placed.labels.device.type == dev.type
    assert place_cache(cache, dev) is placed  # one copy a run, shared by its folds and the evaluation
    trainer = _trainer("resnet18", paradigm, device, opts)
    with Calls() as rec:
        batches = list(trainer.batches(placed, np.arange(10), torch.Generator().manual_seed(1)))
    images = [(n, a) for n, a, _ in rec.calls if a and isinstance(a[0], torch.Tensor) and a[0].dtype == torch.uint8
              and a[0].ndim == 4]
    gathers = [a[0] for n, a in images if n == "__getitem__"]
    assert gathers and all(t.device.type == dev.type for t in gathers)
    assert not [n for n, _ in images if n in ("to", "copy_", "cuda", "pin_memory", "contiguous")]  # no image copy
    for b in batches:
        for t in (b.non_masked, b.masked, b.images, b.y, b.index):
            assert t is None or t.device.type == dev.type


def test_a_cache_that_does_not_fit_stays_on_the_host(monkeypatch):
    cache = _Cache(12)
    # a quarter of the free memory is the limit: twice the cache free is not enough
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * cache.nbytes, 10 ** 12))
    assert place_cache(cache, torch.device("cuda")) is cache
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * cache.nbytes, 10 ** 12))
        assert place_cache(cache, torch.device("cuda")).non_masked.is_cuda


@pytest.mark.parametrize("paradigm,opts,carried", [
    ("contrastive", (), {"non_masked", "masked"}),
    ("baseline", ("train_on=non-masked",), {"non_masked"}),
    ("baseline", ("train_on=masked",), {"masked"}),
    ("baseline", (), {"images", "view"}),
])
def test_a_batch_carries_only_the_views_its_paradigm_uses(paradigm, opts, carried):
    trainer = _trainer("resnet18", paradigm, "cpu", opts)
    batch = next(iter(trainer.batches(_Cache(12), np.arange(10), torch.Generator().manual_seed(1))))
    present = {k for k in ("non_masked", "masked", "images", "view") if getattr(batch, k) is not None}
    assert present == carried


@pytest.mark.parametrize("kind", ["paper", "flip", "none"])
def test_one_view_gets_the_augmentation_it_would_get_as_part_of_its_pair(kind):
    cache, aug = _Cache(16, size=16), PairedAugment(kind)
    view = torch.tensor([0, 1] * 8)
    nm, m = aug(cache.non_masked, cache.masked, torch.Generator().manual_seed(3), torch.device("cpu"))
    own = torch.where(view.view(-1, 1, 1, 1).bool(), cache.masked, cache.non_masked)
    one = aug.one(own, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(one, torch.where(view.view(-1, 1, 1, 1).bool(), m, nm))
    assert torch.equal(aug.one(cache.masked, torch.Generator().manual_seed(3), torch.device("cpu")), m)


@pytest.mark.parametrize("model,paradigm,opts", [
    ("resnet18", "baseline", ()), ("resnet18", "contrastive", ()), ("resnet18", "baseline", ("train_on=masked",)),
    ("scn", "baseline", ("relabel_epoch=1", "margin_2=0.0")), ("eac", "contrastive", ()), ("dan", "baseline", ()),
    ("dacl", "baseline", ()), ("ran", "baseline", ()), ("scan", "baseline", ()), ("arm", "baseline", ()),
    ("manet", "baseline", ()),
])
def test_training_reads_the_device_back_once_an_epoch_not_once_a_step(model, paradigm, opts):
    """fit over 2 and over 6 optimiser steps makes the same host reads (Tensor.item, float(), tolist, ...):
    none of them is per step, so an accelerator is never made to wait for the host within an epoch."""
    cache, reads = _Cache(24, size=32), []
    for pairs in (8, 24):
        trainer = _trainer(model, paradigm, "cpu", opts, size=32)
        assert trainer.steps_per_epoch(pairs) == pairs // 4  # 8 images a step
        with Calls() as rec:
            trainer.fit(cache, np.arange(pairs), torch.Generator().manual_seed(1))
        reads.append(rec.count(SYNCS))
    assert reads[0] == reads[1]
    if model == "scn":
        assert trainer.method.relabelled  # the relabelling ran, on the device


METHODS = ["resnet18", "scn", "eac", "dan", "dacl", "ran", "scan", "arm", "manet"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("model", METHODS)
def test_every_method_trains_in_either_cpu_layout_and_precision(model, precision):
    """On the CPU fp32 trains in the plain layout and bf16 in channels_last (issue 23); whichever the
    machine's default is, every in-tree method trains and evaluates in both, with finite losses."""
    from msde_bench.device import memory_layout
    from msde_bench.training import evaluate

    trainer = _trainer(model, "contrastive", "cpu", size=32, precision=precision)
    assert trainer.spec.precision == precision
    conv = next(m for m in trainer.method.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    last = memory_layout(torch.device("cpu"), precision) == "channels_last"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last if last else torch.contiguous_format)
    assert last == (precision == "bf16")
    cache = _Cache(16, size=32)
    out = trainer.fit(cache, np.arange(16), torch.Generator().manual_seed(1))
    assert all(np.isfinite(v) for rec in out["train_history"] for k, v in rec.items() if k != "epoch")
    metrics = evaluate(trainer.method, cache, np.arange(16), torch.device("cpu"), trainer.spec)
    assert 0 <= metrics["acc_masked"] <= 1


def test_a_paradigm_that_visits_views_separately_may_still_take_both_views():
    """An out-of-tree paradigm written before batch_views (views_per_pair 2, the default "pair") keeps
    getting both views and `view`; "own" without views_per_pair 2 is refused with one line."""
    trainer = _trainer("resnet18", "baseline", "cpu")
    trainer.paradigm = type("OldStyle", (type(trainer.paradigm),), {"batch_views": "pair"})(trainer.paradigm.opts)
    batch = next(iter(trainer.batches(_Cache(12), np.arange(10), torch.Generator().manual_seed(1))))
    assert batch.non_masked is not None and batch.masked is not None and batch.view is not None
    assert batch.images is None
    one_view = _trainer("resnet18", "contrastive", "cpu")
    one_view.paradigm = type("Odd", (type(one_view.paradigm),), {"batch_views": "own"})(one_view.paradigm.opts)
    with pytest.raises(MsdeError, match="batch_views 'own'.*needs views_per_pair 2"):
        next(iter(one_view.batches(_Cache(12), np.arange(10), torch.Generator().manual_seed(1))))
