"""Spec building in one place: from the arguments of `run`, `compare`, a grid entry or a recorded
result to the RunSpec a run records.

The order is one direction: api (and the CLI, sweep, compare) -> spec_build -> factory (what the
plugins registered) -> spec (the RunSpec itself, torch-free). The defaults that depend on the
machine or the dataset (the recipe, the protocol, the precision) are chosen here; the options are
checked against the model's and paradigm's declared ones and stored in their canonical form
(every option, defaults filled in, method options as `<model>.<name>`), so that one computation
has one spec and one run id whichever way it was asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from msde_bench.data.pairs import PairedDataset
from msde_bench.device import check_precision, default_precision, resolve_device
from msde_bench.errors import MsdeError
from msde_bench.factory import (
    applies_label_options,
    build_paradigm,
    method_entry,
    method_options,
    official_options,
    official_recipe,
    paradigm_class,
    require_model,
)
from msde_bench.options import QUIRK_SETS, QUIRKS, Option, alias_keys, method_key, method_values, parse_options
from msde_bench.spec import RunSpec, is_pretrain, make_spec
from msde_bench.training import budget_plan

# ------------------------------------------------------------------------------------------
# a run's spec


def build_spec(model: str = "resnet18", paradigm: str = "baseline", *, data: str | None = None,
               recipe: str | None = None, options=(), device: str = "auto", init: str | None = None,
               quirks: str = "none", **overrides: Any) -> RunSpec:
    """The spec of these arguments before its protocol is chosen (that needs the dataset: see
    prepare_spec); checks the model, paradigm and options."""
    options, dev, recipe, overrides = settings(options, device, data, recipe, init, overrides, quirks)
    options, lists = split_candidates(options)
    opts = check_options(model, paradigm, options, recipe, quirks)
    if lists:
        overrides["candidates"] = check_candidates(model, paradigm, lists)
    spec = make_spec(model=model, paradigm=paradigm, recipe=recipe, paper_lr=paradigm_class(paradigm).paper_lr,
                     data=data, options=opts, official=official_recipe(model), **overrides)
    for flag in ("label_smoothing", "mixup", "cutmix"):
        value = getattr(spec, flag)
        if value and not applies_label_options(model):
            raise MsdeError(f"--{flag.replace('_', '-')} {value:g}: model {model!r} computes its own losses and does not "
                            "declare applies_label_options, so it would train without it; leave it out for this model")
    return canonical_spec(spec)


def settings(options, device: str, data: str | None, recipe: str | None, init: str | None,
              overrides: dict, quirks: str = "none") -> tuple[list[str], torch.device, str, dict]:
    """What run and compare resolve alike: `--opt` strings, the device, the recipe (its default
    depends on both), and the RunSpec overrides (None dropped, seed 0, device, precision, absolute
    --init)."""
    if isinstance(options, dict):
        options = [f"{k}={v}" for k, v in options.items()]
    dev = resolve_device(device)
    recipe = recipe or default_recipe(data, dev)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides.setdefault("seed", 0)
    overrides.setdefault("precision", default_precision(dev, quirks, recipe))
    check_precision(overrides["precision"], dev)
    if "run_folds" in overrides:
        overrides["run_folds"] = tuple(overrides["run_folds"])
    # a local checkpoint is named by its absolute path; `pretrain:DATA` (msde_bench.pretrain) stays as written
    overrides.update(device=str(dev), init=(init if is_pretrain(init) else str(Path(init).resolve()))
                     if init else None)
    return list(options), dev, recipe, overrides


def default_recipe(data: str | None, device: torch.device) -> str:
    """`paper` with a GPU or with a dataset folder (--data DIR), `quick` otherwise: on a CPU the
    embedded synthetic set (no --data, or --data synth:VARIANT) keeps the CPU preset."""
    on_folder = data is not None and not data.startswith("synth:")
    return "paper" if (on_folder or device.type != "cpu") else "quick"


def default_protocol(dataset: PairedDataset) -> str:
    """`holdout` for a dataset with an official train/test split (both sides non-empty), `clean`
    otherwise (a class-folder set without train/ and test/ marks every pair "train")."""
    official = dataset.official_splits()
    return "holdout" if official is not None and {"train", "test"} <= set(official) else "clean"


def with_protocol(spec: RunSpec, dataset: PairedDataset, protocol: str | None = None,
                  folds: int | None = None) -> RunSpec:
    """The spec under `protocol` (default: `default_protocol`); holdout has one fold, and an
    explicit `folds` (--folds) other than 1 under it is an error, never silently dropped."""
    protocol = protocol or default_protocol(dataset)
    if protocol == "holdout" and folds not in (None, 1):
        raise MsdeError(f"--folds {folds}: the holdout protocol has one fold (the dataset's official train/test "
                        f"split); use --protocol clean for {folds} subject-disjoint folds")
    return spec.with_(protocol=protocol, folds=1 if protocol == "holdout" else spec.folds)


# ------------------------------------------------------------------------------------------
# options


def check_options(model: str, paradigm: str, pairs, recipe: str | None = None, quirks: str = "none") -> dict:
    """Every valid option with its value (defaults filled in): the canonical form a spec stores.
    Under `recipe="official"` the method's official option values replace the defaults; under
    `quirks="reference"` every reference quirk (reference_quirks) is on and the paradigm's
    reference_options set, unless given with --opt."""
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
        values.update({k: v for k, v in reference_values(paradigm).items() if k not in given})
    return values


def split_candidates(pairs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """`--opt` strings split into single values and candidate lists (`KEY=V1,V2,...`: a comma in
    the value), the latter as (key, text)."""
    single, lists = [], []
    for item in pairs:
        key, eq, text = item.partition("=")
        (lists.append((key.strip(), text)) if eq and "," in text else single.append(item))
    return single, lists


def check_candidates(model: str, paradigm: str, lists: list[tuple[str, str]]) -> tuple[tuple[str, tuple], ...]:
    """The candidate values of each listed option, parsed and checked by the option itself, in the
    order given (repeats dropped): only a number option (a weight, a temperature) takes a list."""
    valid = valid_options(model, paradigm)
    aliases = {**alias_keys(valid), **option_aliases(model, valid)}  # as check_options and parse_options resolve
    out = {}
    for key, text in lists:
        key = aliases.get(key, key)
        if key not in valid:
            names = ", ".join(sorted(valid)) or "(none)"
            raise MsdeError(f"--opt {key}: unknown option; valid options here: {names}")
        kind = type(valid[key].default)
        if kind not in (int, float):
            raise MsdeError(f"--opt {key}={text}: {key} takes no list of candidates (only a number option, such "
                            "as a loss weight, does)")
        items = [t.strip() for t in text.split(",")]
        if not any(items):
            raise MsdeError(f"--opt {key}={text}: an empty list of candidates")
        if "" in items:
            raise MsdeError(f"--opt {key}={text}: an empty value in the list of candidates")
        values = list(dict.fromkeys(valid[key].parse(key, t) for t in items))
        if key in out:
            raise MsdeError(f"--opt {key}: given two lists of candidates")
        out[key] = tuple(values)
    return tuple(sorted(out.items()))


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


def reference_values(paradigm: str) -> dict:
    """What `--quirks reference` sets for a paradigm: every reference quirk on, and the reference
    code's own values of the options whose defaults differ from them (Paradigm.reference_options)."""
    return {**{k: True for k in reference_quirks(paradigm)}, **paradigm_class(paradigm).reference_options}


def reference_quirks(paradigm: str) -> list[str]:
    """The MSD-E reference code's quirks that apply to a paradigm: the harness-wide QUIRKS and the
    paradigm's own `quirk_*` options (a method's `<model>.quirk_*` options reproduce that method's
    official code, not the reference, and are not among them)."""
    own = [k for k in paradigm_class(paradigm).options if k.startswith("quirk_")]
    return sorted({*QUIRKS, *own})


def canonical_spec(spec: RunSpec) -> RunSpec:
    """The spec a run records: run-dependent options resolved (resolve_options) and one budget
    label per computation (canonical_budget)."""
    options = resolve_options(spec.model, dict(spec.options), spec.image_size)
    return canonical_budget(spec.with_(options=tuple(sorted(options.items()))))


def canonical_budget(spec: RunSpec) -> RunSpec:
    """A spec whose paradigm trains identically under both budget rules (it shows each image once
    per pass, one image per batch item: the mixed baseline) records `steps`, so that one computation
    has one run id whatever rule was asked for."""
    return spec if budget_rules_differ(spec) else spec.with_(budget="steps")


def budget_rules_differ(spec: RunSpec) -> bool:
    """Whether the spec's paradigm would train differently under the other budget rule (a result
    records it: the leaderboard's budget note then needs no plugin); True where a rule does not
    apply to it at all."""
    paradigm = build_paradigm(spec)
    try:
        return budget_plan(spec.with_(budget="epochs"), paradigm) != budget_plan(spec.with_(budget="steps"), paradigm)
    except MsdeError:
        return True


def resolve_options(model: str, options: dict, image_size: int) -> dict:
    """A spec's options with the method's run-dependent values resolved at this image size
    (Method.resolve_options: e.g. DACL's attention_grid=0 becomes the trunk's map size)."""
    entry = method_entry(model)
    if entry is None:
        return options
    mine = method_values(model, options)
    resolved = entry.obj.resolve_options(dict(mine), image_size)
    return {**options, **{method_key(model, k): v for k, v in resolved.items() if mine.get(k) != v}}


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


def complete_options(spec: dict) -> dict:
    """A recorded spec's options with every option its model and paradigm accept today, the ones it
    does not name (introduced after it ran) at their defaults."""
    valid = valid_options(spec["model"], spec["paradigm"])
    return {**parse_options([], valid), **dict(spec.get("options") or {})}


# ------------------------------------------------------------------------------------------
# the rows of `msde-bench compare`

COMPARE_ROWS = (
    ("baseline (non-masked)", "baseline", {"train_on": "non-masked"}),
    ("baseline (masked)", "baseline", {"train_on": "masked"}),
    ("baseline (mixed)", "baseline", {"train_on": "mixed"}),
    ("contrastive", "contrastive", {}),
    ("distill", "distill", {}),
)


def compare_row_options(paradigm: str, model: str, base: dict, user: dict, quirks: str = "none") -> dict:
    """Every option of the row with its value: defaults (every reference quirk of the paradigm on
    under quirks="reference"), then the user's --opt values that this paradigm accepts, then the
    row's own (the same canonical form `run` gives, so that a row and the equivalent
    `msde-bench run` share one spec and one result file)."""
    valid = valid_options(model, paradigm)
    ref = reference_values(paradigm) if quirks == "reference" else {}
    return {**parse_options([], valid), **ref, **{k: v for k, v in user.items() if k in valid}, **base}


def check_compare_options(model: str, pairs, recipe: str | None = None) -> dict:
    """Each --opt key must be valid for at least one row; values are parsed by that row's option.
    Under `recipe="official"` the method's official option values come first."""
    merged = {}
    for _, paradigm, _ in COMPARE_ROWS:
        merged.update(valid_options(model, paradigm))
    pairs = qualify(pairs, option_aliases(model, merged))
    values = parse_options(pairs, merged)
    given = {p.split("=", 1)[0].strip() for p in pairs}
    official = official_options(model) if recipe == "official" else {}
    return {**official, **{k: v for k, v in values.items() if k in given}}


def compare_specs(model: str, recipe: str, user_opts: dict, quirks: str = "none", **kw) -> list:
    specs = []
    for title, paradigm, base in COMPARE_ROWS:
        opts = compare_row_options(paradigm, model, base, user_opts, quirks)
        spec = make_spec(model=model, paradigm=paradigm, recipe=recipe, official=official_recipe(model),
                         paper_lr=paradigm_class(paradigm).paper_lr, options=opts, **kw)
        specs.append((title, canonical_spec(spec)))
    if len({(s.seed, s.protocol, s.folds, s.data) for _, s in specs}) != 1:  # same folds for every row
        raise MsdeError("internal: compare rows differ in seed, protocol or data")
    return specs
