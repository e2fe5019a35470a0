"""The plugin manager: built-ins, then the in-tree plugins, then every other installed entry point
of the group "msde_bench".

Precedence is that load order: a name already registered by a built-in or an in-tree plugin can
never be taken over by an installed one (its registration is refused and recorded as that
plugin's error), and no plugin may register a method under a timm model's name. A name that two
installed plugins register is used by neither (`Registry.contested`; a warning says so, and asking
for it is an error naming both), since which one ran would otherwise depend on their names' order. A plugin that
fails to import or to register is recorded with its error and traceback and skipped; everything
else keeps working. `MSDE_BENCH_DISABLE_PLUGINS` (comma list of plugin names, or `*` for every
plugin outside msde_bench) turns plugins off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from msde_bench import __version__, builtins, hookspecs
from msde_bench.errors import MsdeError
from msde_bench.executors.base import check_executor_class
from msde_bench.models.backbones import is_timm_model
from msde_bench.trackers.base import check_tracker_class

GROUP = "msde_bench"
DISABLE_ENV = "MSDE_BENCH_DISABLE_PLUGINS"
BUILTIN = "msde_bench.builtins"
#: load order, which is precedence: the first to register a name keeps it
SOURCES = ("built-in", "in-tree", "installed")


@dataclass
class Entry:
    name: str
    obj: Any
    plugin: str
    paper: str = ""
    description: str = ""


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # built-in | in-tree (shipped in plugins/ with msde-bench) | installed
    distribution: str = ""
    registers: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    disabled: bool = False


class Registry:
    def __init__(self) -> None:
        self.methods: dict[str, Entry] = {}
        self.paradigms: dict[str, Entry] = {}
        self.datasets: dict[str, Entry] = {}
        self.executors: dict[str, Entry] = {}
        self.trackers: dict[str, Entry] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.warnings: list[str] = []
        #: (kind, name) -> the installed plugins that all registered it: none of them is used for it
        self.contested: dict[tuple[str, str], list[str]] = {}

    def _registrar(self, table: dict[str, Entry], kind: str, plugin: str) -> Callable:
        def register(name: str, obj: Any, *, paper: str | None = None, description: str | None = None) -> None:
            if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
                raise MsdeError(f"plugin {plugin!r}: invalid {kind} name {name!r}")
            if (kind, name) in self.contested:  # a third installed plugin for a contested name
                self.contested[kind, name].append(plugin)
                return
            if name in table:
                owner = self.plugins[table[name].plugin]
                if owner.source == "installed" and self.plugins[plugin].source == "installed":
                    # two installed plugins, one name: which one runs must never depend on their names'
                    # order, so neither does (their other registrations stay)
                    del table[name]
                    owner.registers.remove(f"{kind}:{name}")
                    self.contested[kind, name] = [owner.name, plugin]
                    return
                raise MsdeError(f"{kind} {name!r} is already registered by {owner.source} plugin {owner.name!r}; "
                                f"plugin {plugin!r} may not replace it")
            if kind == "executor":
                check_executor_class(name, obj, builtin=self.plugins[plugin].source == "built-in")
            if kind == "tracker":
                check_tracker_class(name, obj)
            if kind == "method" and is_timm_model(name):
                raise MsdeError(f"method name {name!r} of plugin {plugin!r} is a timm model name; "
                                "choose another (--model {name} means the plain timm model)")
            paper = getattr(obj, "paper", "") if paper is None else paper
            description = getattr(obj, "description", "") if description is None else description
            table[name] = Entry(name, obj, plugin, paper, description)
            self.plugins[plugin].registers.append(f"{kind}:{name}")

        return register

    def load_plugin(self, pm: pluggy.PluginManager, name: str, module: Any) -> None:
        """Registers one plugin's contributions, all or nothing."""
        saved = (dict(self.methods), dict(self.paradigms), dict(self.datasets), dict(self.executors),
                 dict(self.trackers))
        pm.register(module, name=name)
        try:
            pm.check_pending()  # a misspelled hook name is an error of this plugin
            for hook, table, kind in (
                (pm.hook.msde_bench_register_methods, self.methods, "method"),
                (pm.hook.msde_bench_register_paradigms, self.paradigms, "paradigm"),
                (pm.hook.msde_bench_register_datasets, self.datasets, "dataset"),
                (pm.hook.msde_bench_register_executors, self.executors, "executor"),
                (pm.hook.msde_bench_register_trackers, self.trackers, "tracker"),
            ):
                for impl in [i for i in hook.get_hookimpls() if i.plugin_name == name]:
                    impl.function(register=self._registrar(table, kind, name))
        except Exception:
            self.methods, self.paradigms, self.datasets, self.executors, self.trackers = saved
            self.plugins[name].registers.clear()
            pm.unregister(name=name)
            raise


def _disabled() -> tuple[set[str], bool]:
    raw = os.environ.get(DISABLE_ENV, "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    return names, "*" in names


def _entry_points() -> list[tuple[str, Any, PluginInfo]]:
    """(name, entry point, info) of every plugin, in load order: in-tree first, then installed,
    each by name."""
    found = []
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = (dist.metadata["Name"] or "") if dist is not None else ""
        source = "in-tree" if dist_name.lower().replace("_", "-") == "msde-bench" else "installed"
        found.append((ep.name, ep, PluginInfo(ep.name, dist.version if dist else "?", source, dist_name)))
    return sorted(found, key=lambda t: (SOURCES.index(t[2].source), t[0], t[2].distribution))


def contested_text(kind: str, name: str, owners: list[str]) -> str:
    return (f"{kind} {name!r} is registered by {len(owners)} installed plugins ({', '.join(map(repr, owners))}), so "
            f"none of them provides it; uninstall all but one, or turn the others off with {DISABLE_ENV}")


_REGISTRY: Registry | None = None


def registry(reload: bool = False) -> Registry:
    global _REGISTRY
    if _REGISTRY is not None and not reload:
        return _REGISTRY
    reg = Registry()
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg.plugins[BUILTIN] = PluginInfo(BUILTIN, __version__, "built-in", "msde-bench")
    reg.load_plugin(pm, BUILTIN, builtins)
    disabled, all_external = _disabled()
    for name, ep, info in _entry_points():
        if name in reg.plugins:
            other = reg.plugins[name]
            info.error = f"entry point name {name!r} is used twice (also by {other.source} plugin from {other.distribution!r})"
            reg.plugins[f"{name} ({info.distribution})"] = info
            continue
        reg.plugins[name] = info
        if all_external or name in disabled:
            info.disabled = True
            continue
        try:
            # what a plugin prints while it loads goes to stderr: stdout may be a document (`leaderboard --output -`)
            with contextlib.redirect_stdout(sys.stderr):
                module = ep.load()
                info.version = str(getattr(module, "__version__", info.version))
                reg.load_plugin(pm, name, module)
        except Exception as e:  # noqa: BLE001 - a broken plugin never breaks the harness
            info.error = f"{type(e).__name__}: {e}".splitlines()[0]
            info.traceback = traceback.format_exc()
    for (kind, name), owners in sorted(reg.contested.items()):
        reg.warnings.append(contested_text(kind, name, owners))
    unknown = sorted(disabled - set(reg.plugins) - {"*"})
    if unknown:
        reg.warnings.append(f"{DISABLE_ENV} names no plugin called {', '.join(map(repr, unknown))} "
                            f"(plugins: {', '.join(n for n in reg.plugins if n != BUILTIN)})")
    _REGISTRY = reg
    return reg
