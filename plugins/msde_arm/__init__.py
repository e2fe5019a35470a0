"""ARM (Amending Representation Module, Shi & Zhu, 2021) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import ARM

__version__ = "1.0.0"


@hookimpl
def msde_bench_register_methods(register):
    register("arm", ARM)
