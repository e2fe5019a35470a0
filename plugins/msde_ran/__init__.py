"""RAN (Region Attention Network, Wang et al., TIP 2020) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import RAN

__version__ = "1.2.1"


@hookimpl
def msde_bench_register_methods(register):
    register("ran", RAN)
