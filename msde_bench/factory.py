"""From names to objects: a run's model, paradigm and dataset looked up in the plugin registry,
and `--opt` values resolved against the options they accept."""

from __future__ import annotations

import functools
from pathlib import Path

from msde_bench import NUM_CLASSES
from msde_bench.data.pairs import PairedDataset
from msde_bench.data.sources import load_folder
from msde_bench.errors import MsdeError
from msde_bench.models.backbones import is_timm_model, load_init
from msde_bench.models.base import BackboneMethod, DoubleSoftmax, Method
from msde_bench.models.plain import PlainClassifier
from msde_bench.options import Option, method_key, method_values, parse_options
from msde_bench.paradigms.base import Paradigm
from msde_bench.plugins import Entry, contested_text, registry
from msde_bench.spec import RunSpec

# ------------------------------------------------------------------------------------------
# lookups


def paradigm_class(name: str) -> type[Paradigm]:
    table = registry().paradigms
    if name not in table:
        raise MsdeError(f"unknown paradigm {name!r}; available: {', '.join(sorted(table))}"
                        f"{_plugin_hint(name, 'paradigm')}")
    return table[name].obj


def executor_class(name: str) -> type:
    """The registered sweep executor of that name (msde_bench.executors.base.Executor)."""
    table = registry().executors
    if name not in table:
        raise MsdeError(f"--executor {name}: choose one of {', '.join(sorted(table))}{_plugin_hint(name, 'executor')}")
    return table[name].obj


def tracker_class(name: str) -> type:
    """The registered experiment tracker of that name (msde_bench.trackers.base.Tracker)."""
    table = registry().trackers
    if name not in table:
        raise MsdeError(f"--track {name}: choose one of {', '.join(sorted(table))}{_plugin_hint(name, 'tracker')}")
    return table[name].obj


def method_entry(model: str) -> Entry | None:
    """The registered method of that name, or None for a plain timm model."""
    return registry().methods.get(model)


def require_model(model: str) -> None:
    """A registered method or a timm model; otherwise one line that says why it is not there."""
    if method_entry(model) is not None or is_timm_model(model):
        return
    raise MsdeError(f"unknown model {model!r} (neither a method plugin nor a timm model){_plugin_hint(model)}")


def _plugin_hint(name: str, kind: str = "method") -> str:
    """Why a name may be missing: two installed plugins register it, or a plugin of that name failed
    to load or is disabled."""
    owners = registry().contested.get((kind, name))
    if owners:
        return "; " + contested_text(kind, name, owners)
    info = registry().plugins.get(name)
    if info is None:
        return ""
    if info.disabled:
        return f"; plugin {name!r} is disabled by MSDE_BENCH_DISABLE_PLUGINS"
    if info.error:
        return f"; plugin {name!r} failed to load: {info.error} (`msde-bench plugins --traceback` shows more)"
    return ""


def method_provider(model: str) -> dict:
    """The plugin that provides `model`: name, version, source (built-in / in-tree / installed),
    distribution; a plain timm model is provided by the harness's built-in PlainClassifier."""
    reg = registry()
    entry = method_entry(model)
    info = reg.plugins[entry.plugin if entry is not None else "msde_bench.builtins"]
    return dict(plugin=info.name, version=info.version, source=info.source, distribution=info.distribution)


def method_options(model: str) -> dict[str, Option]:
    entry = method_entry(model)
    return dict(getattr(entry.obj, "options", None) or {}) if entry is not None else {}


def applies_label_options(model: str) -> bool:
    """Whether the method gives its cross-entropy the run's --label-smoothing, --mixup and --cutmix
    (Method.applies_label_options; a plain timm model: PlainClassifier, which does)."""
    entry = method_entry(model)
    return bool(getattr(entry.obj if entry is not None else PlainClassifier, "applies_label_options", False))


def official_recipe(model: str) -> dict:
    entry = method_entry(model)
    return dict(getattr(entry.obj, "official_recipe", None) or {}) if entry is not None else {}


def official_options(model: str) -> dict:
    """The method's option values under `--recipe official` (e.g. SCAN's 0.01 trunk lr scale), keyed
    as specs store them; an explicit --opt still wins."""
    entry = method_entry(model)
    raw = (getattr(entry.obj, "official_options", None) or {}) if entry is not None else {}
    unknown = set(raw) - set(method_options(model))
    if unknown:
        raise MsdeError(f"model {model!r}: official_options names unknown options {sorted(unknown)}")
    return {method_key(model, k): v for k, v in raw.items()}


# ------------------------------------------------------------------------------------------
# options


# ------------------------------------------------------------------------------------------
# building


def build_method(spec: RunSpec, *, load: bool = True, num_classes: int = NUM_CLASSES) -> tuple[Method, dict | None]:
    """The model of a spec (a registered method, or a plain timm backbone + linear head) with
    `num_classes` outputs (the dataset's classes: ImageCache.classes), with `--init` loaded unless
    `load` is False; returns it and the init report."""
    opts = dict(spec.options)
    entry = method_entry(spec.model)
    if entry is not None:
        method = entry.obj(num_classes=num_classes, pretrained=spec.pretrained, options=method_values(spec.model, opts))
    else:
        method = PlainClassifier(spec.model, num_classes, pretrained=spec.pretrained)
    report = None
    if spec.init and load:
        report = load_init(method.trunk if hasattr(method, "trunk") else method, spec.init)
    if opts.get("quirk_pool_normalised"):
        if (not isinstance(method, BackboneMethod) or type(method).features is not BackboneMethod.features
                or method.trunk_kwargs.get("features_only")):
            raise MsdeError(f"quirk_pool_normalised: model {spec.model!r} builds its own feature path; the quirk "
                            "reproduces the reference ResNet (use resnet18, a timm model or a method on "
                            "BackboneMethod.features)")
        method.l2_feature_map = True
    if opts.get("quirk_double_softmax"):
        method = DoubleSoftmax(method)
    return method, report


def build_paradigm(spec: RunSpec) -> Paradigm:
    cls = paradigm_class(spec.paradigm)
    opts = parse_options([], dict(cls.options))
    opts.update({k: v for k, v in spec.options if k in cls.options})
    return cls(opts)


def load_dataset(data: str, *, progress=None) -> PairedDataset:
    """`NAME[:ARG]` for a registered dataset (`synth:small` is the embedded set, generated once into
    the cache); an existing path, or anything else, is read as an MSD-E-layout folder."""
    datasets = registry().datasets
    prefix = data.split(":", 1)[0]
    if prefix in datasets and not Path(data).exists():
        return datasets[prefix].obj(data, progress=progress)
    return load_folder(data)


@functools.lru_cache(maxsize=8)
def other_dataset(data: str) -> PairedDataset:
    """A set a run reads besides its own (a cross-dataset test set, a pretraining set), loaded once
    per process however many runs, folds and checks of a sweep name it (its fingerprint stats every
    file)."""
    return load_dataset(data)
