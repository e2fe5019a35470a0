"""`msde-bench bench`: the harness's overhead over a bare PyTorch loop, and data pipeline speed.

Both loops train the same model on the same batch tensors with the same optimiser; the harness
loop goes through Trainer.train_step (paradigm, the method's loss, autocast), the bare loop calls
the model, cross-entropy, backward and step directly, on the same images the paradigm puts through
the network with the paper's loss: one view and cross-entropy (baseline), both views in two passes
with cross-entropy on each and the normalised feature-map MSE (contrastive, and any paradigm with
images_per_item == 2), or a frozen teacher's pass on the non-masked view, the student's pass,
cross-entropy and 100 x the normalised feature-map MSE (distill; the teacher is untrained, prepared
in a temporary cache home). The two are timed
alternately, in rounds, and the median per-step time of each is compared, so that drifts of the
machine hit both alike.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from msde_bench import NUM_CLASSES
from msde_bench.data.pairs import ImageCache
from msde_bench.data.transforms import PairedAugment
from msde_bench.device import autocast, channels_last, check_precision, default_precision, optimizer_impl
from msde_bench.factory import build_method, build_paradigm
from msde_bench.paradigms.base import Batch, FoldContext
from msde_bench.spec import RunSpec
from msde_bench.spec_build import default_recipe
from msde_bench.training import Trainer, make_optimizer


@contextlib.contextmanager
def _temporary_home():
    """A throw-away MSDE_BENCH_HOME, so that a bench never writes into the user's cache."""
    old = os.environ.get("MSDE_BENCH_HOME")
    with tempfile.TemporaryDirectory(prefix="msde-bench-bench-") as home:
        os.environ["MSDE_BENCH_HOME"] = home
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("MSDE_BENCH_HOME", None)
            else:
                os.environ["MSDE_BENCH_HOME"] = old


class _FakeCache(ImageCache):
    def __init__(self, n: int, size: int, seed: int = 0):  # noqa: D401 - no files: random pixels
        g = torch.Generator().manual_seed(seed)
        self.size = size
        self.fingerprint = "random"
        self.non_masked = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.masked = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bench(model: str, paradigm: str, batch_size: int, image_size: int, steps: int,
              device: torch.device, rounds: int = 7, precision: str | None = None) -> dict:
    precision = precision or default_precision(device, recipe=default_recipe(None, device))
    check_precision(precision, device)
    spec = RunSpec(model=model, paradigm=paradigm, batch_size=batch_size, image_size=image_size,
                   device=str(device), precision=precision,
                   options=(("train_on", "non-masked"),) if paradigm == "baseline" else ())
    torch.manual_seed(0)
    cache = _FakeCache(batch_size * 8, image_size)
    aug = PairedAugment("paper")
    gen = torch.Generator().manual_seed(0)
    nm, m = aug(cache.non_masked[:batch_size], cache.masked[:batch_size], gen, device)
    y = cache.labels[:batch_size].to(device)

    par = build_paradigm(spec)
    with _temporary_home():
        idx = np.arange(len(cache))
        par.prepare(FoldContext(spec=spec, cache=cache, train_idx=idx[: len(idx) // 2], test_idx=idx[len(idx) // 2:],
                                     subjects=idx, device=device, seed=0, fold=0,
                                     fit=lambda s, seed: (build_method(s)[0], dict(train_seconds=0.0)),
                                     build=lambda s: build_method(s, load=False)[0]))
    method, _ = build_method(spec)
    trainer = Trainer(spec, method, par, device)
    bare_model, _ = build_method(spec)
    teacher = getattr(par, "teacher", None) if par.name == "distill" else None
    bare_model = bare_model.to(device)
    if channels_last(device, precision):  # the harness's layout and optimiser for this device and precision
        bare_model = bare_model.to(memory_format=torch.channels_last)
        nm = nm.contiguous(memory_format=torch.channels_last)
        m = m.contiguous(memory_format=torch.channels_last)
    bare_opt = make_optimizer(spec, [{"params": list(bare_model.parameters())}], device)
    bare_model.train()
    trainer.method.train()
    batch = Batch(nm, m, y, None, torch.arange(batch_size, device=device))

    two_views = par.images_per_item == 2

    def feature_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # the paradigms' feature-map term
        return F.mse_loss(F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1))

    def bare_step():
        bare_opt.zero_grad(set_to_none=True)
        with autocast(device, spec.precision):
            out = bare_model(nm)
            loss = F.cross_entropy(out.logits, y)
            if teacher is not None:
                with torch.no_grad():
                    f_t = teacher(nm).feature_map
                loss = loss + 100.0 * feature_mse(out.feature_map, f_t)
            elif two_views:
                out_m = bare_model(m)
                loss = loss + F.cross_entropy(out_m.logits, y) + feature_mse(out.feature_map, out_m.feature_map)
        loss.backward()
        bare_opt.step()

    def harness_step():
        trainer.train_step(batch)

    def timed(fn, n):
        _sync(device)
        t = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        return (time.perf_counter() - t) / n

    for _ in range(3):
        bare_step()
        harness_step()
    bare, harness = [], []
    for r in range(rounds):  # alternate which goes first, so neither always runs on a warmer machine
        if r % 2:
            harness.append(timed(harness_step, steps))
            bare.append(timed(bare_step, steps))
        else:
            bare.append(timed(bare_step, steps))
            harness.append(timed(harness_step, steps))
    t_bare, t_harness = statistics.median(bare), statistics.median(harness)

    # data pipeline alone: index the uint8 cache, augment both views, normalise; with the
    # reference augmentation list (the heaviest) and with flips only (the quick recipe)
    train_idx = np.arange(len(cache))
    rates = {}
    for kind in ("paper", "flip"):
        trainer.augment = PairedAugment(kind)

        def pipeline_epoch():
            n = 0
            for b in trainer.batches(cache, train_idx, gen):
                n += b.y.shape[0]
            return n

        pipeline_epoch()
        _sync(device)
        t = time.perf_counter()
        n_img = sum(pipeline_epoch() for _ in range(3))
        _sync(device)
        rates[kind] = n_img / (time.perf_counter() - t)
    pipe_rate = min(rates.values())
    model_rate = batch_size / t_harness
    overhead = t_harness / t_bare
    data_ratio = pipe_rate / model_rate
    paradigm_desc = ("teacher + student pass" if teacher is not None else
                     "two passes" if two_views else "one pass") + " in both loops"
    lines = [
        f"device {device} · model {model} · paradigm {paradigm} ({paradigm_desc}) · batch {batch_size} · "
        f"{image_size} px · {precision} · {'channels_last' if channels_last(device, precision) else 'contiguous'} · "
        f"{optimizer_impl(device)} Adam · {rounds} rounds x {steps} steps",
        f"bare PyTorch step    {t_bare * 1000:8.2f} ms   (median; rounds {min(bare) * 1000:.1f}-{max(bare) * 1000:.1f})",
        f"harness step         {t_harness * 1000:8.2f} ms   (median; rounds {min(harness) * 1000:.1f}-{max(harness) * 1000:.1f})",
        f"harness overhead     {overhead:8.3f}x   (target <= 1.05x)",
        f"data pipeline        {rates['paper']:8.0f} pairs/s (reference augmentation), "
        f"{rates['flip']:.0f} pairs/s (flips only)",
        f"model training       {model_rate:8.0f} pairs/s",
        f"pipeline / model     {data_ratio:8.1f}x   (slower pipeline; target >= 5x)",
    ]
    return dict(bare_s=t_bare, harness_s=t_harness, overhead=overhead, pipeline_rate=pipe_rate,
                model_rate=model_rate, data_ratio=data_ratio, lines=lines)
