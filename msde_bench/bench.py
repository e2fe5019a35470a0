"""`msde-bench bench`: the harness's overhead over a bare PyTorch loop, and data pipeline speed.

Both loops train the same model on the same batch tensors with the same optimiser; the harness
loop goes through Trainer.train_step (paradigm, the method's loss, autocast), the bare loop calls
the model, cross-entropy, backward and step directly. The two are timed alternately, in rounds,
and the median per-step time of each is compared, so that drifts of the machine hit both alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from msde_bench import NUM_CLASSES
from msde_bench.data.pairs import ImageCache
from msde_bench.data.transforms import PairedAugment
from msde_bench.engine import Trainer, build_method, build_paradigm, channels_last
from msde_bench.paradigms.base import Batch
from msde_bench.spec import RunSpec


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
              device: torch.device, rounds: int = 7) -> dict:
    spec = RunSpec(model=model, paradigm=paradigm, batch_size=batch_size, image_size=image_size,
                   device=str(device), options=(("train_on", "non-masked"),) if paradigm == "baseline" else ())
    torch.manual_seed(0)
    cache = _FakeCache(batch_size * 8, image_size)
    aug = PairedAugment("paper")
    gen = torch.Generator().manual_seed(0)
    nm, m = aug(cache.non_masked[:batch_size], cache.masked[:batch_size], gen, device)
    y = cache.labels[:batch_size].to(device)

    method, _ = build_method(spec)
    trainer = Trainer(spec, method, build_paradigm(spec), device)
    bare_model, _ = build_method(spec)
    bare_model = bare_model.to(device)
    if channels_last(device):
        bare_model = bare_model.to(memory_format=torch.channels_last)
        nm = nm.contiguous(memory_format=torch.channels_last)
        m = m.contiguous(memory_format=torch.channels_last)
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    bare_model.train()
    trainer.method.train()
    batch = Batch(nm, m, y, None)

    def bare_step():
        bare_opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(bare_model(nm).logits, y)
        else:
            loss = F.cross_entropy(bare_model(nm).logits, y)
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
    lines = [
        f"device {device} · model {model} · paradigm {paradigm} · batch {batch_size} · {image_size} px · "
        f"{rounds} rounds x {steps} steps",
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
