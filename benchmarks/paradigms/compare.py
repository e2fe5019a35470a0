"""How strong must a paradigm's cross-view term be to help? (issue 36: the weight sensitivity on M-CK+)

Reads the results of `benchmarks/paradigms/grid.toml` (ResNet-18, real48, seed 0, 10 subject-disjoint
folds of M-CK+, random init; contrastive's alpha and distill's lambda swept over four decades) and, for
the settings the grid shares with the leaderboard, the committed results in leaderboard/results (the
mixed baseline every row is paired with, and the committed alpha = 1 / lambda = 100 rows where this
grid has not trained them again). Prints markdown: per paradigm and weight, the cross-view term's share
of the gradient (train_history's grad_share, mean over folds and epochs; for a committed result without
it, its share of the loss, marked "loss"), and the non-masked and masked accuracy against the mixed
baseline, paired fold by fold: mean change [95 % interval], the two-sided p of the corrected resampled
t-test and the smallest change that comparison detects with 80 % power (msde_bench.stats, as the
leaderboard). With --figure PATH, also draws the sensitivity curves.

From the repository root:

    python benchmarks/paradigms/compare.py --figure benchmarks/paradigms/sensitivity.png \\
        > benchmarks/paradigms/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from msde_bench import balance as BAL
from msde_bench import results as R
from msde_bench.factory import paradigm_class
from msde_bench.stats import corrected_ci, corrected_ttest, detectable_difference

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "benchmarks" / "paradigms" / "results"
BOARD = ROOT / "leaderboard" / "results"
DATASET = "m-ckplus48"
WEIGHT = {"contrastive": "alpha", "distill": "lambda"}
#: the options a variant row changes from the paradigm's defaults (besides the weight)
VARIANT_KEYS = {"contrastive": ("align", "joint_forward", "normalise", "beta"), "distill": ("p", "kd_weight")}
DEFAULTS = {"align": "mse", "joint_forward": False, "normalise": True, "beta": 1.0, "p": 0.5, "kd_weight": 0.0}
METRICS = (("acc_non_masked", "non-masked"), ("acc_masked", "masked"))
#: the weights grid.toml sweeps (what a complete sweep has; the missing ones are said)
SWEPT = {"contrastive": (1.0, 10.0, 30.0, 100.0, 1000.0, 10000.0), "distill": (1.0, 100.0, 1000.0, 10000.0, 100000.0)}


def _eligible(r: dict) -> bool:
    s = r["spec"]
    return (r["dataset"]["name"] == DATASET and s["model"] == "resnet18" and s["recipe"] == "real48"
            and s["seed"] == 0 and not s.get("init") and r["protocol"].get("complete") and not s.get("test_data")
            and not s.get("candidates") and not any(v for k, v in s["options"].items() if k.startswith("quirk_")))


def collect(here: Path, board: Path) -> tuple[dict, dict]:
    """(the mixed baseline's folds, {(paradigm, variant, weight): (result, source)}); a run of this
    grid replaces the committed one with the same run id."""
    found: dict = {}
    for folder, source in ((board, "leaderboard"), (here, "this grid")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            r = R.load(path)
            if _eligible(r):
                found[r["run_id"]] = (r, source)
    base = [r for r, _ in found.values() if r["spec"]["paradigm"] == "baseline"
            and r["spec"]["options"].get("train_on", "mixed") == "mixed"]
    if len(base) != 1:
        raise SystemExit(f"expected one mixed baseline (ResNet-18, real48, seed 0) in {board}, found {len(base)}")
    rows = {}
    for r, source in found.values():
        s = r["spec"]
        if s["paradigm"] not in WEIGHT:
            continue
        opts = s["options"]
        variant = ", ".join(f"{k}={opts[k]}" for k in VARIANT_KEYS[s["paradigm"]] if opts.get(k, DEFAULTS[k]) != DEFAULTS[k])
        rows[(s["paradigm"], variant, float(opts[WEIGHT[s["paradigm"]]]))] = (r, source)
    return {f["fold"]: f for f in base[0]["folds"]}, rows


def change(base: dict, run: dict, metric: str) -> dict:
    folds = sorted(set(base) & {f["fold"] for f in run["folds"]})
    mine = {f["fold"]: f for f in run["folds"]}
    d = np.array([mine[k][metric] - base[k][metric] for k in folds])
    ratio = float(np.mean([base[k]["n_test_pairs"] / base[k]["n_train_pairs"] for k in folds]))
    return dict(mean=float(np.mean([mine[k][metric] for k in folds])), d=float(d.mean()), ci=corrected_ci(d, ratio),
                p=corrected_ttest(d, ratio), mde=detectable_difference(d, ratio), n=len(folds))


def share(run: dict) -> tuple[float | None, str]:
    b = BAL.of_result(run)
    if b is None:
        return None, ""
    return (b["grad_share"], "gradient") if "grad_share" in b else (b["loss_share"], "loss")


def _pct(x: float | None, kind: str) -> str:
    if x is None:
        return "–"
    text = f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"
    return text + (" (loss)" if kind == "loss" else "")


#: the quirks of `--quirks reference` that act on the training loss (reference.toml varies the second)
REFERENCE_QUIRKS = ("quirk_double_softmax", "quirk_pool_normalised")


def reference_runs(here: Path) -> dict:
    """{(paradigm, objective): result} of benchmarks/paradigms/reference.toml: the reference weights
    under the reference code's softmax before the cross-entropy, alone ("double softmax") and with
    the pooled normalisation ("reference": both quirks that act on the loss), fold 0."""
    out = {}
    # one fold each: the sweep writes their cells (a result file needs every fold)
    for path in sorted(here.glob("*/fold0.json")) if here.is_dir() else []:
        cell = json.loads(path.read_text(encoding="utf-8"))
        s, opts = cell["spec"], cell["spec"]["options"]
        if (cell["dataset"]["name"] == DATASET and s["model"] == "resnet18" and s["recipe"] == "real48"
                and s["seed"] == 0 and s["paradigm"] in WEIGHT and opts.get("quirk_double_softmax") and not s.get("init")):
            out[(s["paradigm"], "reference" if opts.get("quirk_pool_normalised") else "double softmax")] = dict(
                spec=s, folds=[cell["record"]])
    return out


def fold_share(run: dict, fold: int = 0) -> float | None:
    """The cross-view share of the gradient in one fold (mean over its epochs)."""
    terms = paradigm_class(run["spec"]["paradigm"]).cross_view_terms
    folds = [f for f in run["folds"] if f["fold"] == fold]
    return BAL.grad_share(folds, terms) if folds else None


def reference_section(refs: dict, rows: dict) -> tuple[list[str], dict]:
    """The table of the reference objectives' shares beside this objective's at the same weight
    (fold 0), and per paradigm the swept weight whose mean share is nearest (on a log scale) to the
    full reference objective's: {paradigm: (weight, its share, the reference share)}."""
    lines = ["| paradigm | objective | weight | share of the gradient (fold 0) | this objective, same weight (fold 0) "
             "| ratio |", "|---|---|---:|---:|---:|---:|"]
    nearest = {}
    for (paradigm, objective), ref in sorted(refs.items()):
        w = WEIGHT[paradigm]
        weight = float(ref["spec"]["options"][w])
        theirs = fold_share(ref)
        same = rows.get((paradigm, "", weight))
        ours = fold_share(same[0]) if same else None
        ratio = f"{theirs / ours:.1f}x" if theirs and ours else "–"
        label = ("softmax before the cross-entropy" if objective == "double softmax" else
                 "softmax before the cross-entropy, pooled normalised map (the reference code)")
        lines.append(f"| {paradigm} | {label} | {w} = {weight:g} | {_pct(theirs, 'gradient')} | "
                     f"{_pct(ours, 'gradient')} | {ratio} |")
        swept = [(k[2], share(run)) for k, (run, source) in rows.items()
                 if k[0] == paradigm and not k[1] and source == "this grid"]
        swept = [(x, sh) for x, (sh, kind) in swept if sh is not None and kind == "gradient"]
        if objective == "reference" and theirs and swept:
            x, sh = min(swept, key=lambda xs: abs(np.log(xs[1] / theirs)))
            nearest[paradigm] = (x, sh, theirs)
    return lines, nearest


def table(base: dict, rows: dict, paradigm: str) -> list[str]:
    w = WEIGHT[paradigm]
    out = [f"| variant | {w} | cross-view share of the gradient | " + " | ".join(
        f"{label} | change [95 % CI] | p | detectable" for _, label in METRICS) + " | source |",
           "|---|---:|---:|" + "---:|---|---:|---:|" * len(METRICS) + "---|"]
    for (p, variant, weight), (run, source) in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if p != paradigm:
            continue
        cells = [variant or "default", f"{weight:g}", _pct(*share(run))]
        for metric, _ in METRICS:
            c = change(base, run, metric)
            star = " *" if c["p"] is not None and c["p"] < 0.05 else ""
            cells += [f"{c['mean']:.3f}", f"{c['d']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]",
                      f"{c['p']:.2g}{star}", f"{c['mde']:.3f}"]
        out.append("| " + " | ".join(cells + [source]) + " |")
    return out


def figure(base: dict, rows: dict, path: Path, reference: dict | None = None) -> None:
    """The sensitivity curves; `reference`: {paradigm: the reference objective's share} (a grey
    dotted line on the share axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    base_means = {m: float(np.mean([f[m] for f in base.values()])) for m, _ in METRICS}
    for ax, paradigm in zip(axes, WEIGHT):
        points = sorted((k[2], v[0]) for k, v in rows.items() if k[0] == paradigm and not k[1])
        if not points:
            ax.set_axis_off()
            continue
        x = np.array([p[0] for p in points])
        for (metric, label), colour in zip(METRICS, ("tab:blue", "tab:red")):
            cs = [change(base, run, metric) for _, run in points]
            y = np.array([c["mean"] for c in cs])
            err = np.array([[c["d"] - c["ci"][0], c["ci"][1] - c["d"]] for c in cs]).T
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour, label=f"{label} (95 % CI of the change)")
            ax.axhline(base_means[metric], color=colour, linestyle=":", linewidth=1,
                       label=f"mixed baseline, {label}")
        ax.set_xscale("log")
        ax.set_xlabel(f"{WEIGHT[paradigm]} (weight of the cross-view term)")
        ax.set_ylabel("accuracy over 10 subject-disjoint folds")
        ax.set_title(f"{paradigm} on M-CK+ (ResNet-18, real48, seed 0)")
        twin = ax.twinx()
        shares = [share(run) for _, run in points]
        sx = [xi for xi, (s, kind) in zip(x, shares) if s is not None and kind == "gradient"]
        sy = [100 * s for s, kind in shares if s is not None and kind == "gradient"]
        twin.plot(sx, sy, color="grey", marker="s", linestyle="--", label="cross-view share of the gradient")
        if reference and reference.get(paradigm):
            twin.axhline(100 * reference[paradigm], color="grey", linestyle=":", linewidth=1,
                         label=f"share in the reference code's objective ({_pct(reference[paradigm], 'gradient')})")
        twin.set_ylabel("cross-view share of the gradient (%)", color="grey")
        twin.set_ylim(0, 100)
        lines = ax.get_legend_handles_labels()
        extra = twin.get_legend_handles_labels()
        ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=7, loc="lower left")
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE)
    ap.add_argument("--board", type=Path, default=BOARD)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()
    base, rows = collect(args.results, args.board)
    base_means = {m: float(np.mean([f[m] for f in base.values()])) for m, _ in METRICS}
    print("# Paradigm weights on M-CK+: the cross-view term's share of the gradient and what it does\n")
    print("Written by `benchmarks/paradigms/compare.py` from the committed results. ResNet-18, real48 (48 px, 6 epochs "
          "at equal optimiser steps), seed 0, the 10 subject-disjoint folds of M-CK+, random init. Every row is paired "
          "fold by fold with the mixed baseline (non-masked "
          f"{base_means['acc_non_masked']:.3f}, masked {base_means['acc_masked']:.3f}): its mean, the mean change "
          "[95 % interval], the two-sided p of the corrected resampled t-test (* p < 0.05) and the smallest change "
          "that comparison detects with 80 % power (two-sided, α = 0.05). The share is the cross-view term's "
          "(contrastive: the alignment; distill: the feature MSE to the teacher) share of the gradient on the "
          "parameters every loss part reaches, the mean over folds and epochs of 4 measured batches an epoch; "
          "\"(loss)\": a result from before gradient shares, its weighted term's share of the loss instead.\n")
    for paradigm in WEIGHT:
        print(f"## {paradigm} ({WEIGHT[paradigm]})\n")
        print("\n".join(table(base, rows, paradigm)) + "\n")
        have = {k[2] for k, (_, source) in rows.items() if k[0] == paradigm and not k[1] and source == "this grid"}
        missing = [w for w in SWEPT[paradigm] if w not in have]
        if missing:
            print(f"Not yet trained by this grid: {WEIGHT[paradigm]} = {', '.join(f'{w:g}' for w in missing)} "
                  "(the sweep resumes where it stopped).\n")
        points = [(k[2], change(base, run, "acc_masked")) for k, (run, _) in rows.items() if k[0] == paradigm and not k[1]]
        if points:
            w, c = max(points, key=lambda wc: wc[1]["d"])
            verdict = "significant" if c["p"] is not None and c["p"] < 0.05 else "not significant"
            print(f"Largest masked change so far: {WEIGHT[paradigm]} = {w:g}, {c['d']:+.3f} [{c['ci'][0]:+.3f}, "
                  f"{c['ci'][1]:+.3f}], p = {c['p']:.2g} ({verdict}; this comparison detects {c['mde']:.3f} with 80 % "
                  "power). Picking the best of several weights on these test folds would be a choice made on the "
                  "test folds: the defaults are set by the share of the gradient (\"The reference objective\" "
                  "below), and a weight used for a leaderboard row is a default or chosen on validation "
                  "(`--select-on val`).\n")
    refs = reference_runs(args.results)
    print("## The reference objective\n")
    print("The reference code's classifier ends in softmax and its loss applies log-softmax again "
          "(`quirk_double_softmax`), which shrinks the cross-entropy's gradient, so the same weight gives its "
          "cross-view term a far larger share of the gradient there than here. Measured by "
          "`benchmarks/paradigms/reference.toml` (the reference weights under that objective, everything else as "
          "the grid, fold 0; a training quantity: no accuracy of these runs is compared):\n")
    if refs:
        lines, nearest = reference_section(refs, rows)
        print("\n".join(lines) + "\n")
        for paradigm, (x, sh, theirs) in sorted(nearest.items()):
            print(f"- {paradigm}: of the swept weights, {WEIGHT[paradigm]} = {x:g} gives the share nearest the "
                  f"reference code's objective ({_pct(sh, 'gradient')}, mean over folds and epochs, against "
                  f"{_pct(theirs, 'gradient')}).")
        print("\nThe defaults since 0.10 are these weights (contrastive alpha = 30, distill lambda = 1000; "
              "`--quirks reference` restores the reference objective and its weights, alpha = 1 and lambda = "
              "100): the paradigms then train with the balance of terms the reference code trained with. The "
              "choice looks at the share of the gradient, a training quantity, and at no test accuracy.")
        print()
    else:
        print("Not yet trained (the sweep of reference.toml resumes where it stopped).\n")
    if args.figure is not None:
        figure(base, rows, args.figure, {p: fold_share(r) for (p, objective), r in refs.items()
                                          if objective == "reference"})
        print(f"![sensitivity]({args.figure.name})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
