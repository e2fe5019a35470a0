"""The `local` executor: a pool of worker processes on this machine (concurrent.futures).

On CPU the cores are divided between the workers (torch threads), so that N workers on N cores do
not oversubscribe. With GPUs each worker is pinned to one device through CUDA_VISIBLE_DEVICES,
`per_gpu` workers to a device. Workers are spawned, never forked, so no CUDA or OpenMP state is
inherited.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed

from msde_bench.executors.task import Task, collect, execute


def default_workers(per_gpu: int = 1) -> int:
    """One worker per GPU (times per_gpu), or 1 on CPU."""
    import torch

    return torch.cuda.device_count() * per_gpu if torch.cuda.is_available() else 1


def _init_worker(counter, workers: int, per_gpu: int, gpus: int, threads: int | None = None) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str((index // per_gpu) % gpus)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run(tasks: Iterable[Task], *, workers: int, per_gpu: int = 1,
        on_done: Callable[[Task, dict], None] | None = None, threads: int | None = None) -> list[tuple[Task, dict]]:
    """Runs every task on `workers` processes (`threads` torch threads each; default: the cores
    divided between them); returns (task, report) in the order they finished."""
    import torch

    tasks = list(tasks)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    done = []
    n = max(1, min(workers, len(tasks) or 1))
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                             initargs=(counter, n, per_gpu, gpus, threads)) as pool:
        futures = {pool.submit(execute, t): t for t in tasks}
        for fut in as_completed(futures):  # a worker killed or out of memory fails its cell only
            collect(futures[fut], fut.result, "worker died", done, on_done)
    return done
