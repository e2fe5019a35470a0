"""SCAN + CCI (Gera & Balasubramanian, Pattern Recognition Letters 2021) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import SCAN

__version__ = "1.1.0"


@hookimpl
def msde_bench_register_methods(register):
    register("scan", SCAN)
