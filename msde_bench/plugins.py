"""The plugin manager: built-ins, then every installed entry point of the group "msde_bench".

A plugin that fails to import or to register is recorded with its error and skipped; everything
else keeps working. `MSDE_BENCH_DISABLE_PLUGINS` (comma list, or `*` for every external plugin)
turns plugins off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from msde_bench import hookspecs
from msde_bench.errors import MsdeError

GROUP = "msde_bench"


@dataclass
class Entry:
    name: str
    obj: Any
    plugin: str
    paper: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # built-in | in-tree (shipped in plugins/ with msde-bench) | installed
    registers: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False


class Registry:
    def __init__(self) -> None:
        self.methods: dict[str, Entry] = {}
        self.paradigms: dict[str, Entry] = {}
        self.datasets: dict[str, Entry] = {}
        self.plugins: dict[str, PluginInfo] = {}

    def _registrar(self, table: dict[str, Entry], kind: str, plugin: str) -> Callable:
        def register(name: str, obj: Any, *, paper: str = "", description: str = "", **extra) -> None:
            if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
                raise MsdeError(f"plugin {plugin!r}: invalid {kind} name {name!r}")
            if name in table:
                raise MsdeError(f"{kind} {name!r} is registered twice: by {table[name].plugin!r} and by {plugin!r}")
            table[name] = Entry(name, obj, plugin, paper, description, extra)
            self.plugins[plugin].registers.append(f"{kind}:{name}")

        return register

    def load_plugin(self, pm: pluggy.PluginManager, name: str, module: Any) -> None:
        """Registers one plugin's contributions, all or nothing."""
        saved = (dict(self.methods), dict(self.paradigms), dict(self.datasets))
        pm.register(module, name=name)
        try:
            pm.check_pending()  # a misspelled hook name is an error of this plugin
            for hook, table, kind in (
                (pm.hook.msde_bench_register_methods, self.methods, "method"),
                (pm.hook.msde_bench_register_paradigms, self.paradigms, "paradigm"),
                (pm.hook.msde_bench_register_datasets, self.datasets, "dataset"),
            ):
                impls = [i for i in hook.get_hookimpls() if i.plugin_name == name]
                for impl in impls:
                    impl.function(register=self._registrar(table, kind, name))
        except Exception:
            self.methods, self.paradigms, self.datasets = saved
            self.plugins[name].registers.clear()
            pm.unregister(name=name)
            raise


def _disabled() -> tuple[set[str], bool]:
    raw = os.environ.get("MSDE_BENCH_DISABLE_PLUGINS", "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    return names, "*" in names


_REGISTRY: Registry | None = None


def registry(reload: bool = False) -> Registry:
    global _REGISTRY
    if _REGISTRY is not None and not reload:
        return _REGISTRY
    from msde_bench import __version__, builtins

    reg = Registry()
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg.plugins["msde_bench.builtins"] = PluginInfo("msde_bench.builtins", __version__, "built-in")
    reg.load_plugin(pm, "msde_bench.builtins", builtins)
    disabled, all_external = _disabled()
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = (dist.metadata["Name"] or "") if dist is not None else ""
        source = "in-tree" if dist_name.lower().replace("_", "-") == "msde-bench" else "installed"
        info = PluginInfo(ep.name, dist.version if dist else "?", source)
        if ep.name in reg.plugins:
            info.error = f"entry point name {ep.name!r} is used twice (also by {reg.plugins[ep.name].source} plugin)"
            reg.plugins[f"{ep.name} ({dist_name})"] = info
            continue
        reg.plugins[ep.name] = info
        if all_external or ep.name in disabled:
            info.disabled = True
            continue
        try:
            module = ep.load()
            info.version = str(getattr(module, "__version__", info.version))
            reg.load_plugin(pm, ep.name, module)
        except Exception as e:  # noqa: BLE001 - a broken plugin never breaks the harness
            info.error = f"{type(e).__name__}: {e}".splitlines()[0]
    _REGISTRY = reg
    return reg
