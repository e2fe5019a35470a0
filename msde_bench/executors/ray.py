"""The `ray` executor: one Ray task per cell, on a local Ray instance or an existing cluster.

Needs the `ray` extra (`pip install 'msde-bench[ray]'`). Without `--ray-address` Ray starts on this
machine with `--workers` CPUs (one cell per CPU, or per GPU with --ray-gpus-per-cell); with an
address the cells go to that cluster. Each task asks for `cpus` CPUs and `gpus` GPUs and runs torch
with that many threads. An address that does not answer is one error line before anything is
submitted.
"""

from __future__ import annotations

from collections.abc import Iterable

from msde_bench.errors import MsdeError, import_extra
from msde_bench.executors.base import CellFunction, Executor, ExecutorOption, OnDone, Task, collect


def _ray():
    return import_extra("ray", "--executor ray", "ray")


def check() -> None:
    _ray()


def _answers(address: str, timeout: float = 5.0) -> str | None:
    """None when host:port of a Ray address accepts a TCP connection, else why not (Ray itself
    retries a silent address for minutes); `auto` and addresses without a port are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


def default_workers() -> int:
    import os

    return max(1, os.cpu_count() or 1)


def _cell(task: Task, threads: int, execute: CellFunction) -> dict:
    import torch

    torch.set_num_threads(max(1, threads))
    return execute(task)


def run(tasks: Iterable[Task], execute: CellFunction, *, workers: int | None = None,
        on_done: OnDone | None = None, address: str | None = None, cpus: int = 1,
        gpus: float = 0) -> list[tuple[Task, dict]]:
    """Runs `execute` for every task as a Ray task; returns (task, report) in the order they finished."""
    ray = _ray()
    workers = workers or default_workers()
    tasks = list(tasks)
    if not tasks:
        return []
    if address and (why := _answers(address)):
        raise MsdeError(f"--ray-address {address}: cannot connect ({why})")
    started = not ray.is_initialized()
    try:
        if started:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(workers, cpus), log_to_driver=False, include_dashboard=False)
    except Exception as e:  # noqa: BLE001 - any connection failure is one line
        raise MsdeError(f"--ray-address {address}: cannot connect ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no answer'})") from None
    try:
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_cell)
        pending = {remote.remote(t, cpus, execute): t for t in tasks}
        done = []
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            collect(pending.pop(ref), lambda ref=ref: ray.get(ref), "ray task", done, on_done)
        return done
    finally:
        if started:
            ray.shutdown()


class RayExecutor(Executor):
    name = "ray"
    description = "a Ray task per cell, on this machine or a running cluster (pip install 'msde-bench[ray]')"
    options = (
        ExecutorOption("address", str, None, "ray: the address of a running Ray cluster [default: start Ray on "
                       "this machine]."),
        ExecutorOption("cpus_per_cell", int, 1, "ray: CPUs (and torch threads) per cell.", minimum=1),
        ExecutorOption("gpus_per_cell", float, 0, "ray: GPUs per cell (0.25 packs 4 cells on a GPU).", minimum=0),
    )

    def check(self) -> None:
        check()

    def run(self, tasks, execute, *, workers=None, on_done=None, address=None, cpus_per_cell=1, gpus_per_cell=0):
        return run(tasks, execute, workers=workers, on_done=on_done, address=address, cpus=cpus_per_cell,
                   gpus=gpus_per_cell)
