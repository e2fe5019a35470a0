"""EAC (Erasing Attention Consistency, Zhang et al., ECCV 2022) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import EAC

__version__ = "1.0.0"


@hookimpl
def msde_bench_register_methods(register):
    register("eac", EAC)
