"""The built-in paradigms and datasets, registered through the same hooks as any plugin."""

from __future__ import annotations

from msde_bench.hookspecs import hookimpl


@hookimpl
def msde_bench_register_paradigms(register):
    from msde_bench.paradigms.baseline import Baseline
    from msde_bench.paradigms.contrastive import Contrastive
    from msde_bench.paradigms.distill import Distill

    for cls in (Baseline, Contrastive, Distill):
        register(cls.name, cls, paper=cls.paper, description=cls.description)


@hookimpl
def msde_bench_register_datasets(register):
    from msde_bench.data import sources

    register("synth", sources.load_synth, description="the embedded synthetic paired set (synth:VARIANT)")
    register("msde", sources.load_folder, description="a folder in the MSD-E layout (MSD-E/, MSD-ME/)")
