"""MA-Net (global Multi-scale and local Attention network, Zhao et al., TIP 2021) as an msde-bench plugin."""

from msde_bench.api import hookimpl

from .model import MANet

__version__ = "1.0.0"


@hookimpl
def msde_bench_register_methods(register):
    register("manet", MANet)
