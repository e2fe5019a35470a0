"""What measuring the gradient shares costs (issue 36): a training step with and without measurement.

ResNet-18 at 48 px, the real48 recipe's batch (32 images: 16 pairs under contrastive, 32 under
distill), on the CPU with one thread. The two kinds of step are interleaved (measured, plain,
measured, ...) so that a loaded machine slows both alike; prints the median seconds of each and
their ratio, and what it makes of an epoch where GRAD_SHARE_BATCHES of its steps are measured.

    python benchmarks/balance_overhead.py [--steps 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from msde_bench.factory import build_method
from msde_bench.options import parse_options
from msde_bench.paradigms.base import Batch
from msde_bench.paradigms.contrastive import Contrastive
from msde_bench.spec import RunSpec
from msde_bench.training import GRAD_SHARE_BATCHES, Trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epoch-steps", type=int, default=52, help="steps of an epoch (a CK+ fold under real48: 52)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = RunSpec(paradigm="contrastive", recipe="real48", image_size=48, batch_size=32, device="cpu")
    torch.manual_seed(0)
    method, _ = build_method(spec)
    trainer = Trainer(spec, method, Contrastive(parse_options([], Contrastive.options)), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(16, 3, 48, 48, generator=g), torch.randn(16, 3, 48, 48, generator=g),
                  torch.randint(0, 7, (16,), generator=g))
    for _ in range(2):  # warm-up
        trainer.train_step(batch, measure=True)
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(2 * args.steps):
        measure = i % 2 == 0
        t = time.perf_counter()
        trainer.train_step(batch, measure=measure)
        times[measure].append(time.perf_counter() - t)
    plain, measured = statistics.median(times[False]), statistics.median(times[True])
    ratio = measured / plain
    epoch = (ratio - 1) * GRAD_SHARE_BATCHES / args.epoch_steps
    print(f"contrastive step, ResNet-18 48 px, batch 32 images, {args.threads} thread(s), {args.steps} steps each, "
          "interleaved")
    print(f"plain {plain:.3f} s, measured {measured:.3f} s: a measured step costs {ratio:.2f}x; with "
          f"{GRAD_SHARE_BATCHES} of {args.epoch_steps} steps measured an epoch takes {100 * epoch:.1f} % longer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
