"""Where a training step's time goes on this machine, and what the default run costs.

Times one training step of the harness's ResNet-18 (the model `msde-bench run --model resnet18`
trains: timm trunk + linear head, cross-entropy, Adam) in every combination of precision (fp32,
bf16 autocast), memory layout (contiguous, channels_last) and optimiser implementation (for-loop,
foreach, fused) that matters, interleaved in rounds (each round runs every configuration once, in
alternating order, so that drifts of the machine hit them alike), and prints the median per-step
time, its ratio to the path msde-bench 0.3 used on this device (OLD_PATH), and the achieved GFLOP/s against
the device's nominal peak. FLOPs per step are counted by PyTorch's FlopCounterMode (forward and
backward of the convolutions and matrix products).

    python benchmarks/speed.py [--device cpu|cuda] [--image-size 48] [--batch-size 32] [--rounds 5]
                               [--compile] [--default-run N]

`--compile` adds torch.compile'd configurations, their compile time counted apart (first model)
and for a second model of the same architecture in the same process (a later fold of a run).
`--default-run N` then times the README's default run N times from an empty cache (a fresh
MSDE_BENCH_HOME each time, in its default precision) and prints each wall time and its accuracies;
arguments the script does not know are passed on to that `msde-bench run` (e.g. `--precision fp32`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from msde_bench.device import autocast, channels_last, cpu_bf16, default_precision, optimizer_impl
from msde_bench.factory import build_method
from msde_bench.spec import RunSpec

#: (precision, layout, optimiser implementation)
CONFIGS = [
    ("fp32", "channels_last", "for-loop"),
    ("fp32", "contiguous", "for-loop"),
    ("fp32", "contiguous", "fused"),
    ("fp32", "channels_last", "fused"),
    ("bf16", "channels_last", "for-loop"),
    ("bf16", "channels_last", "fused"),
    ("bf16", "contiguous", "fused"),
]


#: the path msde-bench 0.3 took per device: the base of the ratios
OLD_PATH = {"cpu": ("fp32", "channels_last", "for-loop"), "cuda": ("bf16", "channels_last", "fused")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: dense peak TFLOP/s (fp32 without TF32, bf16 tensor cores) from the vendors' data sheets, by a
#: fragment of torch.cuda.get_device_name
GPU_PEAKS = {"H200": (67.0, 989.0), "H100": (67.0, 989.0), "A100": (19.5, 312.0), "L40S": (91.6, 362.0),
             "L4": (30.3, 121.0), "A10": (31.2, 125.0)}


def nominal_peak(device: torch.device) -> dict[str, float] | None:
    """Nominal peak GFLOP/s per precision: for a CPU, cores x MHz (/proc/cpuinfo) x FLOP per cycle
    and core from its vector units (AVX-512 with two FMA units: 64 fp32; AMD Zen 4 runs AVX-512 on
    two 256-bit units: 32; AVX2: 32; avx512_bf16 doubles the fp32 rate; AMX: 2,048 bf16 FLOP per
    cycle); for a GPU the data sheet's (GPU_PEAKS, SXM parts); None where it is not known."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAKS.items() if k in name), None)
        return None if peak is None else {"fp32": peak[0] * 1000, "bf16": peak[1] * 1000}
    if device.type != "cpu":
        return None
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    if not mhz:
        return None
    amd = "AuthenticAMD" in info
    fp32 = 32 if (amd or "avx512f" not in flags) else 64
    bf16_kind = cpu_bf16()
    bf16 = 2048 if bf16_kind == "amx_bf16" else 2 * fp32 if bf16_kind == "avx512_bf16" else fp32
    cores = torch.get_num_threads()
    ghz = statistics.median(mhz) / 1000
    return {"fp32": cores * ghz * fp32, "bf16": cores * ghz * bf16}


class Config:
    def __init__(self, key: tuple[str, str, str], device: torch.device, x: torch.Tensor, y: torch.Tensor,
                 compiled: bool = False):
        self.key, self.device, self.compiled = key, device, compiled
        precision, layout, impl = key
        torch.manual_seed(0)
        self.model = build_method(RunSpec(model="resnet18"))[0].to(device)
        self.x = x
        if layout == "channels_last":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = x.contiguous(memory_format=torch.channels_last)
        self.y = y
        kw = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=2e-3, weight_decay=1e-4, **kw)
        self.model.train()
        self.compile_s = None
        if compiled:
            self.model.compile()
            t = time.perf_counter()
            self.step()
            _sync(device)
            self.compile_s = time.perf_counter() - t

    @property
    def name(self) -> str:
        return " ".join(self.key) + (" compiled" if self.compiled else "")

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.key[0]):
            loss = F.cross_entropy(self.model(self.x).logits, self.y)
        loss.backward()
        self.opt.step()


def step_flops(device: torch.device, x: torch.Tensor, y: torch.Tensor) -> int:
    model = build_method(RunSpec(model="resnet18"))[0].to(device).train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x).logits, y).backward()
    return counter.get_total_flops()


def bench_steps(device: torch.device, image_size: int, batch_size: int, rounds: int, steps: int,
                compile_: bool) -> list[str]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device)
    y = torch.randint(0, 7, (batch_size,), generator=g).to(device)
    keys = [k for k in CONFIGS if k[0] == "fp32" or device.type == "cuda" or cpu_bf16() is not None]
    if device.type == "cuda":  # the fused kernels are the default path there; for-loop is the slow reference
        keys = [k for k in keys if k[2] != "for-loop"] + [("fp32", "channels_last", "for-loop")]
    configs = [Config(k, device, x, y) for k in keys]
    lines = []
    if compile_:
        for key in (("fp32", "contiguous", "fused"), ("bf16", "channels_last", "fused")):
            if key in keys:
                first = Config(key, device, x, y, compiled=True)
                second = Config(key, device, x, y, compiled=True)  # a later fold: a new model, same graph
                lines.append(f"compile {first.name}: first model {first.compile_s:.1f} s, "
                             f"a second model in the same process {second.compile_s:.1f} s")
                configs.append(second)
    for c in configs:  # warm-up
        for _ in range(3):
            c.step()
    times: dict[str, list[float]] = {c.name: [] for c in configs}
    for r in range(rounds):
        for c in configs if r % 2 == 0 else configs[::-1]:
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                c.step()
            _sync(device)
            times[c.name].append((time.perf_counter() - t) / steps)
    flops = step_flops(device, x, y)
    peak = nominal_peak(device)
    old_path = " ".join(OLD_PATH[device.type])
    base = statistics.median(times[old_path]) if old_path in times else statistics.median(times[configs[0].name])
    lines.insert(0, f"device {device} ({torch.get_num_threads()} threads; bf16 hardware: {cpu_bf16() or 'none'}) · "
                    f"ResNet-18 · {image_size} px · batch {batch_size} · {rounds} interleaved rounds x {steps} steps · "
                    f"{flops / 1e9:.1f} GFLOP per step")
    if peak:
        lines.insert(1, f"nominal peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s "
                        "(see nominal_peak: a CPU's at the clock /proc/cpuinfo reports, a GPU's data sheet)")
    lines.append(f"{'configuration':40s} {'ms/step':>8s} {'range':>13s} {'vs 0.3':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for c in configs:
        med = statistics.median(times[c.name])
        rate = flops / med / 1e9
        share = f"{100 * rate / peak[c.key[0]]:7.1f}%" if peak else "       -"
        lines.append(f"{c.name:40s} {med * 1000:8.1f} {min(times[c.name]) * 1000:6.1f}-{max(times[c.name]) * 1000:<6.1f} "
                     f"{base / med:8.2f}x {rate:8.0f} {share}")
    precision = default_precision(device, recipe="quick" if device.type == "cpu" else "paper")
    lines.append(f"msde-bench's path here: {precision}, {'channels_last' if channels_last(device, precision) else 'contiguous'}, "
                 f"{optimizer_impl(device)} optimiser")
    return lines


def default_run(times: int, extra: list[str]) -> list[str]:
    lines = []
    for i in range(times):
        with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "msde_bench", "run", "--model", "resnet18", "--paradigm",
                                   "baseline", "--out", out, "--no-progress", *extra],
                                  env=dict(os.environ, MSDE_BENCH_HOME=home), capture_output=True, text=True)
            wall = time.perf_counter() - t
            summary = [" ".join(c.strip() for c in ln.split("|")[1:3]) for ln in proc.stdout.splitlines()
                       if ln.startswith(("| non-masked", "| masked", "| overall"))]
            lines.append(f"default run {i + 1}: {wall:.0f} s wall (rc {proc.returncode}) {' · '.join(summary)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--default-run", type=int, default=0, metavar="N")
    ap.add_argument("--threads", type=int, default=None)
    args, extra = ap.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for line in bench_steps(torch.device(args.device), args.image_size, args.batch_size, args.rounds, args.steps,
                            args.compile):
        print(line, flush=True)
    for line in default_run(args.default_run, extra):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
