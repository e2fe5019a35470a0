"""What a method plugin needs, in one import:

    from msde_bench.api import BackboneMethod, Method, Option, Output, hookimpl
"""

from msde_bench import CLASS_NAMES, NUM_CLASSES
from msde_bench.hookspecs import hookimpl
from msde_bench.models.backbones import create_trunk
from msde_bench.models.base import BackboneMethod, Method, Output
from msde_bench.spec import Option

__all__ = ["BackboneMethod", "CLASS_NAMES", "Method", "NUM_CLASSES", "Option", "Output", "create_trunk", "hookimpl"]
