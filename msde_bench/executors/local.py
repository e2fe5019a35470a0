"""The `local` executor: a pool of worker processes on this machine (concurrent.futures).

On CPU the cores are divided between the workers (torch threads), so that N workers on N cores do
not oversubscribe. With GPUs each worker is pinned to one device through CUDA_VISIBLE_DEVICES,
`per_gpu` workers to a device. Workers are spawned, never forked, so no CUDA or OpenMP state is
inherited. A worker ends within a second of the sweep that started it (killed, or stopped by a
signal that Python does not turn into an exception, such as SIGTERM): it never runs on, orphaned,
writing cells nobody waits for and competing with the next sweep for the cores; a cell it had not
finished leaves no file (cells are written atomically when they finish).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from msde_bench.executors.base import CellFunction, Executor, ExecutorOption, OnDone, Task, collect, failed


def default_workers(per_gpu: int = 1) -> int:
    """One worker per GPU (times per_gpu), or 1 on CPU."""
    import torch

    return torch.cuda.device_count() * per_gpu if torch.cuda.is_available() else 1


def _exit_with_parent(parent: int) -> None:
    """Ends this worker as soon as its parent process is gone (it is then re-parented)."""
    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(counter, workers: int, per_gpu: int, gpus: int, threads: int | None = None,
                 parent: int | None = None) -> None:
    if parent is not None:
        _exit_with_parent(parent)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str((index // per_gpu) % gpus)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run(tasks: Iterable[Task], execute: CellFunction, *, workers: int | None = None, per_gpu: int = 1,
        on_done: OnDone | None = None, threads: int | None = None) -> list[tuple[Task, dict]]:
    """Runs `execute` for every task on `workers` processes (default: default_workers), `threads`
    torch threads each (default: the cores divided between them); returns (task, report) in the
    order they finished. A worker that dies (killed, out of memory) fails its own cell only: the pool
    it broke is replaced and the other unfinished cells run again (from their checkpoints)."""
    import torch

    workers = workers or default_workers(per_gpu)
    pending = list(tasks)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ctx = mp.get_context("spawn")
    done: list[tuple[Task, dict]] = []
    strikes: dict[tuple[str, int], int] = {}
    idle = 0  # broken pools in a row that ran no cell
    for task in pending:  # a marker left by a sweep that was stopped names no live worker
        task.running_marker.unlink(missing_ok=True)
    while pending:
        counter = ctx.Value("i", 0)
        n = max(1, min(workers, len(pending)))
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                                   initargs=(counter, n, per_gpu, gpus, threads, os.getpid()))
        try:
            futures = {pool.submit(execute, t): t for t in pending}
            procs = dict(getattr(pool, "_processes", None) or {})  # pid -> process, to find the one that died
            broken = False
            reported = set()
            for fut in as_completed(futures):
                procs.update(getattr(pool, "_processes", None) or {})
                if isinstance(fut.exception(), BrokenProcessPool):
                    broken = True
                    break
                collect(futures[fut], fut.result, "worker died", done, on_done)
                reported.add(fut)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): never wait for the running cells
            _end(pool)
            raise
        pool.shutdown()
        if not broken:
            break
        # the pool broke: a cell that finished before it did is reported, the dead worker's cell fails, and
        # the others (whose workers the pool ended) run again in a new pool
        procs.update(getattr(pool, "_processes", None) or {})
        dead = {pid for pid, proc in procs.items() if proc.exitcode not in (None, 0, -signal.SIGTERM)}
        before, pending, struck = len(done), [], False
        for fut, task in futures.items():
            if fut in reported:
                continue
            pid = _running_pid(task)
            if fut.done() and fut.exception() is None:
                collect(task, fut.result, "worker died", done, on_done)
            elif pid is not None and (pid in dead or strikes.get(_key(task), 0) >= 1):
                code = procs[pid].exitcode if pid in dead else None
                how = ("twice while it ran this cell" if code is None else f"killed by signal {-code}" if code < 0
                       else f"exit code {code}")
                _fail(task, f"worker died ({how}; out of memory, or killed)", done, on_done)
            else:
                if pid is not None:  # running when a worker the pool cannot name died: once more
                    strikes[_key(task)] = strikes.get(_key(task), 0) + 1
                    struck = True
                task.running_marker.unlink(missing_ok=True)
                pending.append(task)
        idle = idle + 1 if len(done) == before and not struck else 0
        if idle >= 2:  # workers that die before they start any cell (their start-up fails): never loop
            for task in pending:
                _fail(task, "worker died before it started the cell (twice)", done, on_done)
            pending = []
    return done


def _fail(task: Task, error: str, done: list, on_done: OnDone | None) -> None:
    done.append((task, failed(task, error)))
    if on_done is not None:
        on_done(task, done[-1][1])


def _key(task: Task) -> tuple[str, int]:
    return task.run_id, task.fold


def _running_pid(task: Task) -> int | None:
    """The pid of the worker that started the task's cell (its running marker), or None."""
    try:
        return int(json.loads(task.running_marker.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _end(pool: ProcessPoolExecutor) -> None:
    """Ends the pool now, its running cells too. shutdown(wait=False) alone is not enough: at interpreter
    exit concurrent.futures joins its manager thread, which waits for the running cells to finish (and
    write their files). So the workers are ended here (Python 3.14 has pool.terminate_workers(); 3.11
    keeps them in the private _processes)."""
    workers_ = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers_:
        proc.terminate()


class LocalExecutor(Executor):
    name = "local"
    description = "worker processes on this machine (concurrent.futures), the cores divided between them"
    options = (
        ExecutorOption("per_gpu", int, 1, "local: cells that share one GPU.", minimum=1, flag="--per-gpu"),
        ExecutorOption("threads", int, None, "local: torch threads per worker [default: the cores divided between "
                       "the workers].", minimum=1, flag="--threads"),
    )

    def run(self, tasks, execute, *, workers=None, on_done=None, per_gpu=1, threads=None):
        return run(tasks, execute, workers=workers, per_gpu=per_gpu, on_done=on_done, threads=threads)
