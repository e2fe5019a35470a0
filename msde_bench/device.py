"""The device helpers every layer uses, with no import of the training loop: choosing the device,
threads and precision, the memory layout and autocast, the optimiser implementation, --compile.

The paradigms, the models and the training loop all import these from here; nothing here imports
a msde_bench module above the spec.
"""

from __future__ import annotations

import contextlib
import os

import torch

from msde_bench.errors import MsdeError
from msde_bench.home import cache_home
from msde_bench.spec import CPU_RECIPES, PRECISIONS


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MsdeError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MsdeError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MsdeError(f"--device {name}: MPS is not available on this machine")
    return dev


def threads_default(threads: int | None = None) -> str | None:
    """`threads` torch threads (--threads); without it every core, unless OMP_NUM_THREADS is set.
    On CPU the numbers of a run depend on the thread count (the result's env.threads records it),
    so the default does not follow the machine's load; returns a warning when other processes keep
    cores busy (OpenMP threads then wait for them: a run beside one busy process took 2.2x longer
    per step at 2 threads than at 1 on a 2-core machine), else None."""
    if threads is not None:
        if threads < 1:
            raise MsdeError(f"--threads {threads}: must be at least 1")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        return None
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return busy_warning(torch.get_num_threads())


#: set to 1 by --compile for this process and the workers it starts
COMPILE_ENV = "MSDE_BENCH_COMPILE"


def compile_setting(enabled: bool | None = None) -> bool:
    """--compile: whether each trained model's forward runs through torch.compile (the result's
    env.compile records it; the numbers may differ from eager ones in float round-off). Given a
    value, sets it for this process and the worker processes it starts. The compiled graphs are
    cached: within a process a later fold's model (the same architecture) reuses the first fold's,
    and on disk under `$MSDE_BENCH_HOME/torch-compile` (TorchInductor's cache, unless
    TORCHINDUCTOR_CACHE_DIR is set) for later runs and sweep workers."""
    if enabled is not None:
        os.environ[COMPILE_ENV] = "1" if enabled else "0"
    on = os.environ.get(COMPILE_ENV, "0") == "1"
    if on:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_home() / "torch-compile"))
    return on


def busy_warning(threads: int, load: float | None = None, cores: int | None = None) -> str | None:
    """A one-line warning when the 1-minute load average leaves fewer idle cores than `threads`."""
    cores = cores or os.cpu_count() or 1
    try:
        load = os.getloadavg()[0] if load is None else load
    except OSError:  # not available on this platform
        return None
    free = max(1, cores - round(load))
    if threads <= free:
        return None
    return (f"other processes keep about {round(load)} of {cores} cores busy; {threads} threads would wait for them "
            f"(steps can take several times longer): consider --threads {free} (CPU numbers depend on --threads, "
            "which the result records)")


def channels_last(device: torch.device, precision: str = "fp32") -> bool:
    """Whether models and batches use the channels_last memory layout: where it is the faster one.
    On CUDA always; on the CPU for bf16/fp16 autocast (oneDNN's bf16 convolutions, AMX or
    avx512_bf16, are reached through it) but not for fp32, where the plain layout was faster
    (timm ResNet-18 at 48 px, batch 32, 2 threads: 1.20-1.28x on an Intel Xeon with AMX, on par on
    an AMD EPYC Zen 4; `benchmarks/speed.py` measures it); not on MPS."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and precision != "fp32"


def memory_layout(device: torch.device, precision: str = "fp32") -> str:
    """The layout `channels_last` chooses, as the result's env.memory_format records it."""
    return "channels_last" if channels_last(device, precision) else "contiguous"


def cpu_bf16() -> str | None:
    """The CPU's bf16 matrix hardware that oneDNN uses under bf16 autocast: "amx_bf16",
    "avx512_bf16", or None (bf16 is then emulated and slower than fp32)."""
    cpu = getattr(torch, "cpu", None)
    try:
        if cpu._is_amx_tile_supported():
            return "amx_bf16"
        if cpu._is_avx512_bf16_supported():
            return "avx512_bf16"
    except (AttributeError, RuntimeError):  # an older torch or another architecture: no fast bf16 known
        return None
    return None


def default_precision(device: torch.device, quirks: str = "none", recipe: str | None = None) -> str:
    """bf16 autocast on CUDA, and under the CPU-sized recipes (quick, real48) on a CPU with bf16 hardware (cpu_bf16:
    AMX or avx512_bf16; measured in benchmarks/precision/: no significant accuracy difference from
    fp32 on the default run's 5 folds x 3 seeds); fp32 elsewhere, and under the reference quirks
    (the reference trains in fp32)."""
    if quirks == "reference":
        return "fp32"
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu" and recipe in CPU_RECIPES and cpu_bf16() is not None:
        return "bf16"
    return "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise MsdeError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise MsdeError(f"--precision fp16: needs a CUDA device (this run is on {device.type}); use bf16 or fp32")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise MsdeError(f"--precision bf16: autocast on {device.type} is not supported here; use fp32")


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast to the spec's precision (spec.PRECISIONS); fp32 runs without it."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def optimizer_impl(device: torch.device) -> str:
    """The optimiser implementation (the result's env.optimizer_impl records it): PyTorch's fused
    Adam / SGD (one kernel over every parameter) on CUDA and on the CPU, where a ResNet-18 step at
    48 px took about 1.1x less time with it than with the for-loop one (the same update, in another
    order of float operations); PyTorch's default for-loop one elsewhere."""
    return "fused" if device.type in ("cuda", "cpu") else "for-loop"
