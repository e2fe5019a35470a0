"""DAN (Distract your Attention, Wen et al.) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import DAN

__version__ = "1.1.0"


@hookimpl
def msde_bench_register_methods(register):
    register("dan", DAN)
