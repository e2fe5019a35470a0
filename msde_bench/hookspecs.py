"""The plugin contract (pluggy, registrar style).

The core calls each hook with a `register` function; a plugin calls it once per thing it adds.
The core validates names and duplicates in one place (msde_bench.plugins).
"""

import pluggy

hookspec = pluggy.HookspecMarker("msde_bench")
hookimpl = pluggy.HookimplMarker("msde_bench")


@hookspec
def msde_bench_register_methods(register):
    """register(name, factory, *, paper="", description="", options=None)

    `factory(backbone=..., num_classes=..., pretrained=..., options=...)` returns a Method."""


@hookspec
def msde_bench_register_paradigms(register):
    """register(name, cls, *, paper="", description="") with cls a Paradigm subclass."""


@hookspec
def msde_bench_register_datasets(register):
    """register(name, loader, *, description="") with loader(spec_data: str) -> PairedDataset."""
