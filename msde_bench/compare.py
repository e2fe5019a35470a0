"""`msde-bench compare`: the paper-style table of every paradigm for one model on one dataset.

Rows: baseline trained on non-masked, masked and mixed images, contrastive, distill; columns:
non-masked, masked and overall accuracy (mean ± std over folds), the mask gap, and the change of
non-masked accuracy relative to the non-masked-only baseline. Every row uses the same seed, the
same protocol and therefore the same folds; finished runs are reused (`--resume` semantics).
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from msde_bench import runner
from msde_bench.errors import MsdeError
from msde_bench.factory import (
    canonical_spec,
    official_options,
    official_recipe,
    option_aliases,
    paradigm_class,
    qualify,
    reference_quirks,
    valid_options,
)
from msde_bench.options import parse_options
from msde_bench.spec import make_spec

ROWS = (
    ("baseline (non-masked)", "baseline", {"train_on": "non-masked"}),
    ("baseline (masked)", "baseline", {"train_on": "masked"}),
    ("baseline (mixed)", "baseline", {"train_on": "mixed"}),
    ("contrastive", "contrastive", {}),
    ("distill", "distill", {}),
)


def row_options(paradigm: str, model: str, base: dict, user: dict, quirks: str = "none") -> dict:
    """Every option of the row with its value: defaults (every reference quirk of the paradigm on
    under quirks="reference"), then the user's --opt values that this paradigm accepts, then the
    row's own (the same canonical form `run` gives, so that a row and the equivalent
    `msde-bench run` share one spec and one result file)."""
    valid = valid_options(model, paradigm)
    ref = {k: True for k in reference_quirks(paradigm)} if quirks == "reference" else {}
    return {**parse_options([], valid), **ref, **{k: v for k, v in user.items() if k in valid}, **base}


def check_user_options(model: str, pairs, recipe: str | None = None) -> dict:
    """Each --opt key must be valid for at least one row; values are parsed by that row's option.
    Under `recipe="official"` the method's official option values come first."""
    merged = {}
    for _, paradigm, _ in ROWS:
        merged.update(valid_options(model, paradigm))
    pairs = qualify(pairs, option_aliases(model, merged))
    values = parse_options(pairs, merged)
    given = {p.split("=", 1)[0].strip() for p in pairs}
    official = official_options(model) if recipe == "official" else {}
    return {**official, **{k: v for k, v in values.items() if k in given}}


def run_all(specs: list, dataset, out: str | Path, console, show_progress, log_samples: bool = False) -> list[dict]:
    results = []
    for title, spec in specs:
        console.print(f"[bold]{title}[/]")
        result, path = runner.run(spec, dataset, out, resume=True, console=console, show_progress=show_progress,
                                  log_samples=log_samples)
        results.append(dict(title=title, result=result, path=str(path)))
    return results


def table(rows: list[dict], fmt: str = "github") -> str:
    ref = next((r for r in rows if r["title"] == "baseline (non-masked)"), None)
    ref_nm = ref["result"]["summary"]["acc_non_masked"]["mean"] if ref else None
    out = []
    for r in rows:
        s = r["result"]["summary"]

        def ms(key, s=s):
            return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"

        delta = "" if ref_nm is None else f"{s['acc_non_masked']['mean'] - ref_nm:+.3f}"
        out.append([r["title"], ms("acc_non_masked"), ms("acc_masked"), ms("acc_overall"),
                    f"{s['mask_gap']['mean']:.3f}", delta, s["acc_masked"]["n"]])
    headers = ["paradigm", "non-masked", "masked", "overall", "mask gap", "Δ non-masked vs NM baseline", "folds"]
    return tabulate(out, headers=headers, tablefmt=fmt, disable_numparse=True)


def build_specs(model: str, recipe: str, user_opts: dict, quirks: str = "none", **kw) -> list:
    specs = []
    for title, paradigm, base in ROWS:
        opts = row_options(paradigm, model, base, user_opts, quirks)
        spec = make_spec(model=model, paradigm=paradigm, recipe=recipe, official=official_recipe(model),
                         paper_lr=paradigm_class(paradigm).paper_lr, options=opts, **kw)
        specs.append((title, canonical_spec(spec)))
    if len({(s.seed, s.protocol, s.folds, s.data) for _, s in specs}) != 1:  # same folds for every row
        raise MsdeError("internal: compare rows differ in seed, protocol or data")
    return specs
