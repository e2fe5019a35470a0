"""The built-in paradigms, datasets, sweep executors and experiment trackers, registered through the same
hooks as any plugin."""

from __future__ import annotations

from msde_bench.data import sources
from msde_bench.data.formats import FORMATS
from msde_bench.executors.local import LocalExecutor
from msde_bench.executors.ray import RayExecutor
from msde_bench.executors.slurm import SlurmExecutor
from msde_bench.hookspecs import hookimpl
from msde_bench.paradigms.baseline import Baseline
from msde_bench.paradigms.contrastive import Contrastive
from msde_bench.paradigms.distill import Distill
from msde_bench.trackers.mlflow_store import MlflowTracker
from msde_bench.trackers.tensorboard import TensorBoardTracker


@hookimpl
def msde_bench_register_paradigms(register):
    for cls in (Baseline, Contrastive, Distill):
        register(cls.name, cls)


@hookimpl
def msde_bench_register_datasets(register):
    register("synth", sources.load_synth, description="the embedded synthetic paired set (synth:VARIANT)")
    # `data convert`'s formats (the table: data.formats): FORMAT:SRC converted once into the cache
    for fmt in FORMATS.values():
        register(fmt.name, sources.load_converted,
                 description=f"{fmt.name}: {fmt.short or fmt.src}, converted with masks once into the cache "
                             f"({fmt.name}:SRC[?KEY=VALUE&...])")


@hookimpl
def msde_bench_register_executors(register):
    for cls in (LocalExecutor, SlurmExecutor, RayExecutor):
        register(cls.name, cls)


@hookimpl
def msde_bench_register_trackers(register):
    for cls in (TensorBoardTracker, MlflowTracker):
        register(cls.name, cls)
