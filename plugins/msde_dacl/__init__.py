"""DACL (Deep Attentive Center Loss, Farzaneh & Qi, WACV 2021) as an msde-bench method plugin."""

from msde_bench.api import hookimpl

from .model import DACL

__version__ = "1.2.0"


@hookimpl
def msde_bench_register_methods(register):
    register("dacl", DACL)
