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
from msde_bench.options import QUIRK_SETS, QUIRKS, Option, alias_keys, method_key, method_values, parse_options
from msde_bench.paradigms.base import Paradigm
from msde_bench.plugins import Entry, contested_text, registry
from msde_bench.spec import RunSpec
from msde_bench.training import budget_plan

# ------------------------------------------------------------------------------------------
# lookups


def paradigm_class(name: str) -> type[Paradigm]:
    table = registry().paradigms
    if name not in table:
        raise MsdeError(f"unknown paradigm {name!r}; available: {', '.join(sorted(table))}{_plugin_hint(name)}")
    return table[name].obj


def method_entry(model: str) -> Entry | None:
    """The registered method of that name, or None for a plain timm model."""
    return registry().methods.get(model)


def require_model(model: str) -> None:
    """A registered method or a timm model; otherwise one line that says why it is not there."""
    if method_entry(model) is not None or is_timm_model(model):
        return
    raise MsdeError(f"unknown model {model!r} (neither a method plugin nor a timm model){_plugin_hint(model)}")


def _plugin_hint(name: str) -> str:
    """Why a name may be missing: two installed plugins register it, or a plugin of that name failed
    to load or is disabled."""
    owners = registry().contested.get(("method", name))
    if owners:
        return "; " + contested_text("method", name, owners)
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


def valid_options(model: str, paradigm: str) -> dict[str, Option]:
    """The --opt keys a run accepts, in their canonical (stored) form: the reference-code quirks
    and the paradigm's options by their names, the method's by `method_key`."""
    opts = dict(QUIRKS)
    for k, o in paradigm_class(paradigm).options.items():
        if k in opts:
            raise MsdeError(f"option {k!r} of paradigm {paradigm!r} clashes with a quirk option")
        opts[k] = o
    for k, o in method_options(model).items():
        opts[method_key(model, k)] = o
    return opts


def option_aliases(model: str, valid: dict[str, Option]) -> dict[str, str]:
    """Bare method option names (and their aliases) that are unambiguous: `--opt margin_1=...` for
    `scn.margin_1`, `--opt lam=...` for `eac.flip_consistency_weight`."""
    bare = {name: method_key(model, name) for name in method_values(model, valid)}
    bare.update({alias: method_key(model, name) for name, o in method_values(model, valid).items() for alias in o.aliases})
    taken = set(valid) | set(alias_keys(valid))
    return {k: v for k, v in bare.items() if k not in taken}


def qualify(pairs, aliases: dict[str, str]) -> list[str]:
    out = []
    for item in pairs:
        key, sep, value = item.partition("=")
        out.append(f"{aliases.get(key.strip(), key.strip())}{sep}{value}")
    return out


def reference_quirks(paradigm: str) -> list[str]:
    """The MSD-E reference code's quirks that apply to a paradigm: the harness-wide QUIRKS and the
    paradigm's own `quirk_*` options (a method's `<model>.quirk_*` options reproduce that method's
    official code, not the reference, and are not among them)."""
    own = [k for k in paradigm_class(paradigm).options if k.startswith("quirk_")]
    return sorted({*QUIRKS, *own})


def check_options(model: str, paradigm: str, pairs, recipe: str | None = None, quirks: str = "none") -> dict:
    """Every valid option with its value (defaults filled in): the canonical form a spec stores.
    Under `recipe="official"` the method's official option values replace the defaults; under
    `quirks="reference"` every reference quirk (reference_quirks) is on unless given with --opt."""
    require_model(model)
    if quirks not in QUIRK_SETS:
        raise MsdeError(f"--quirks {quirks}: choose one of {', '.join(QUIRK_SETS)}")
    valid = valid_options(model, paradigm)
    pairs = qualify(pairs, option_aliases(model, valid))
    values = parse_options(pairs, valid)
    given = {p.split("=", 1)[0].strip() for p in pairs}
    if recipe == "official":
        values.update({k: v for k, v in official_options(model).items() if k not in given})
    if quirks == "reference":
        values.update({k: True for k in reference_quirks(paradigm) if k not in given})
    return values


def complete_options(spec: dict) -> dict:
    """A recorded spec's options with every option its model and paradigm accept today, the ones it
    does not name (introduced after it ran) at their defaults."""
    valid = valid_options(spec["model"], spec["paradigm"])
    return {**parse_options([], valid), **dict(spec.get("options") or {})}


def resolve_options(model: str, options: dict, image_size: int) -> dict:
    """A spec's options with the method's run-dependent values resolved at this image size
    (Method.resolve_options: e.g. DACL's attention_grid=0 becomes the trunk's map size)."""
    entry = method_entry(model)
    if entry is None:
        return options
    mine = method_values(model, options)
    resolved = entry.obj.resolve_options(dict(mine), image_size)
    return {**options, **{method_key(model, k): v for k, v in resolved.items() if mine.get(k) != v}}


def canonical_spec(spec: RunSpec) -> RunSpec:
    """The spec a run records: run-dependent options resolved (resolve_options) and one budget
    label per computation (canonical_budget)."""
    options = resolve_options(spec.model, dict(spec.options), spec.image_size)
    return canonical_budget(spec.with_(options=tuple(sorted(options.items()))))


def canonical_budget(spec: RunSpec) -> RunSpec:
    """A spec whose paradigm trains identically under both budget rules (it shows each image once
    per pass, one image per batch item: the mixed baseline) records `steps`, so that one computation
    has one run id whatever rule was asked for."""
    paradigm = build_paradigm(spec)
    try:
        same = budget_plan(spec.with_(budget="epochs"), paradigm) == budget_plan(spec.with_(budget="steps"), paradigm)
    except MsdeError:
        return spec
    return spec.with_(budget="steps") if same else spec


def complete_spec(spec: dict) -> dict:
    """A recorded spec in today's form: options completed (complete_options) and resolved
    (resolve_options), a spec from before
    the budget rule (spec.BUDGETS) given the rule it ran under, `epochs` (canonical_budget: `steps`
    where both rules train identically), and one from before --precision the precision it ran in."""
    spec = dict(spec, options=complete_options(spec))
    if "image_size" in spec:
        spec["options"] = resolve_options(spec["model"], spec["options"], spec["image_size"])
    if "budget" not in spec:
        spec["budget"] = canonical_budget(RunSpec.from_dict(dict(spec, budget="epochs"))).budget
    if "precision" not in spec:  # before --precision: bf16 autocast on CUDA, none elsewhere
        spec["precision"] = "bf16" if str(spec.get("device", "")).startswith("cuda") else "fp32"
    return spec


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
