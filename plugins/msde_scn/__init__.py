"""SCN (Self-Cure Network, Wang et al., CVPR 2020) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import SCN

__version__ = "1.1.0"


@hookimpl
def msde_bench_register_methods(register):
    register("scn", SCN)
