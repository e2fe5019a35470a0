"""Do the paper's paradigms help the FER methods on real faces? (issue 24's methods grid on M-CK+)

Reads the committed results (leaderboard/results), takes the from-scratch M-CK+ runs of
`leaderboard/real-ckplus.toml` (real48, seed 0, 10 subject-disjoint folds, random init) and prints
two markdown tables, every comparison paired fold by fold (the same folds: same data, protocol and
seed) with its mean change, 95 % interval and two-sided p of the corrected resampled t-test
(msde_bench.stats, as the leaderboard uses):

1. per model, contrastive and distill against the same model's mixed baseline (the paper's claim:
   both paradigms raise masked accuracy and keep non-masked accuracy);
2. per method, its mixed baseline against ResNet-18's (does the method's own loss or head help?).

From the repository root:

    python benchmarks/methods/compare.py [RESULTS_DIR] > benchmarks/methods/RESULTS.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from msde_bench import results as R
from msde_bench.factory import paradigm_class
from msde_bench.stats import corrected_ci, corrected_ttest, detectable_difference

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results"
DATASET = "m-ckplus48"
SEED = 0
METRICS = (("acc_non_masked", "non-masked"), ("acc_masked", "masked"))


#: the weight option of each paradigm (a row's label: the reference code's or the chosen default)
WEIGHT = {"contrastive": "alpha", "distill": "lambda"}
#: the weights the methods grid (leaderboard/real-ckplus.toml) trained every method with: the reference code's
#: (Paradigm.reference_options, what --quirks reference sets)
REFERENCE = {p: paradigm_class(p).reference_options[k] for p, k in WEIGHT.items()}


def _weight(spec: dict) -> float | None:
    key = WEIGHT.get(spec["paradigm"])
    return None if key is None else spec["options"].get(key)


def _start(spec: dict) -> str:
    init = spec.get("init") or ""
    return "FER-2013-pretrained" if init.startswith("pretrain:") else "random" if not init else "other"


def all_runs(results: list[dict]) -> dict:
    """{(model, paradigm, weight, start, seed): {fold: fold record}} for the complete real48 M-CK+ runs
    (mixed baselines only: the one-view ResNet-18 baselines are the paper's other comparison)."""
    out: dict = {}
    for r in results:
        s = r["spec"]
        if (r["dataset"]["name"] != DATASET or s["recipe"] != "real48" or not r["protocol"].get("complete")
                or s.get("test_data") or s.get("candidates") or s["options"].get("train_on", "mixed") != "mixed"
                or any(v for k, v in s["options"].items() if k.startswith("quirk_"))):
            continue
        if s["paradigm"] == "contrastive" and (s["options"].get("align", "mse") != "mse"
                                               or s["options"].get("joint_forward")):
            continue
        if s["paradigm"] == "distill" and s["options"].get("p", 0.5) != 0.5:
            continue
        key = (s["model"], s["paradigm"], _weight(s), _start(s), s["seed"])
        if key in out:
            raise SystemExit(f"{r['run_id']}: a second result for {key}; give one results folder per grid")
        out[key] = {f["fold"]: f for f in r["folds"]}
    return out


def runs(results: list[dict]) -> dict:
    """{(model, paradigm): {fold: fold record}}: the methods grid's rows, seed 0 from random weights, the
    paradigms at the reference code's weights (alpha = 1, lambda = 100)."""
    out: dict = {}
    for (model, paradigm, weight, start, seed), folds in all_runs(results).items():
        if seed == SEED and start == "random" and weight == REFERENCE.get(paradigm):
            out[(model, paradigm)] = folds
    return out


def change(a: dict, b: dict, metric: str) -> tuple[float, float, float, tuple[float, float], float, float]:
    """(mean of a, mean of b, mean change b - a, its 95 % interval, p, the change detectable with
    80 % power) over the folds both have; a and b are {fold: record}, or {(seed, fold): record} to pair
    seed by seed and fold by fold."""
    folds = sorted(set(a) & set(b))
    x = np.array([a[f][metric] for f in folds])
    y = np.array([b[f][metric] for f in folds])
    ratio = float(np.mean([a[f]["n_test_pairs"] / a[f]["n_train_pairs"] for f in folds]))
    d = y - x
    return (float(x.mean()), float(y.mean()), float(d.mean()), corrected_ci(d, ratio), corrected_ttest(d, ratio),
            detectable_difference(d, ratio))


def seeded(table: dict, model: str, paradigm: str, weight, start: str) -> dict:
    """{(seed, fold): record} of one row over all its seeds."""
    return {(seed, f): rec for (m, p, w, st, seed), folds in table.items() if (m, p, w, st) == (model, paradigm,
            weight, start) for f, rec in folds.items()}


def _cell(a: dict, b: dict, metric: str) -> str:
    x, y, d, ci, p, mde = change(a, b, metric)
    mark = " *" if p is not None and p < 0.05 else ""
    return f"{x:.3f} -> {y:.3f} | {d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | {p:.2g}{mark} | {mde:.3f}"


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    loaded = [R.load(p) for p in sorted(folder.glob("*.json"))]
    table, every = runs(loaded), all_runs(loaded)
    models = sorted({m for m, _ in table}, key=lambda m: (m != "resnet18", m))
    n_folds = {len(v) for v in table.values()}
    print(f"# The paradigms and the methods on M-CK+ (seed {SEED}, {'/'.join(map(str, sorted(n_folds)))} "
          "subject-disjoint folds, real48, from random weights)\n")
    print("Written by `benchmarks/methods/compare.py` from the committed results. Each cell: mean over the "
          "folds of the first row -> the second, the mean change paired fold by fold [95 % interval], "
          "the two-sided p of the corrected resampled t-test (* p < 0.05) and the smallest change that comparison "
          "detects with 80 % power (two-sided, α = 0.05; `msde_bench.stats.detectable_difference`): a p above "
          "0.05 beside a detectable change of 0.12 says that no change of about 0.12 or more was seen, not that there "
          "is none. "
          "The contrastive rows' alignment term carried under 0.1 % of their loss (α = 1 on L2-normalised maps): they "
          "test the contrastive layout, not the alignment (benchmarks/paradigms).\n")
    print("## 1. Each paradigm against the same model's mixed baseline\n")
    print("| model | paradigm | non-masked: baseline -> paradigm | change | p | detectable | masked: baseline -> "
          "paradigm | change | p | detectable |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        base = table.get((m, "baseline"))
        for paradigm in ("contrastive", "distill"):
            other = table.get((m, paradigm))
            if base is None or other is None:
                continue
            print(f"| {m} | {paradigm} | " + " | ".join(_cell(base, other, k) for k, _ in METRICS) + " |")
    print("\n## 2. Each method's mixed baseline against ResNet-18's\n")
    print("| method | non-masked: ResNet-18 -> method | change | p | detectable | masked: ResNet-18 -> method | change "
          "| p | detectable |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = table.get(("resnet18", "baseline"))
    for m in models:
        if m == "resnet18" or ref is None or (m, "baseline") not in table:
            continue
        print(f"| {m} | " + " | ".join(_cell(ref, table[(m, "baseline")], k) for k, _ in METRICS) + " |")
    print("\n## 3. ResNet-18 over seeds: the paradigms at the reference weights and at the defaults\n")
    print("Issue 36, item 5. Every seed's run is paired fold by fold with the mixed baseline of the same seed and "
          "start (the same folds), so each comparison has seeds x folds paired differences; the t-test's "
          "correction uses the folds' test/train ratio. The reference weights (alpha = 1, lambda = 100) are the "
          "MSD-E code's numbers; the defaults since 0.10 (alpha = 30, lambda = 1000) give the cross-view term the "
          "share of the gradient it has in the reference code's own objective (benchmarks/paradigms/RESULTS.md).\n")
    print("| start | paradigm | weight | seeds | non-masked: baseline -> paradigm | change | p | detectable | masked: "
          "baseline -> paradigm | change | p | detectable |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for start in ("random", "FER-2013-pretrained"):
        for paradigm in ("contrastive", "distill"):
            weights = sorted({w for (m, p, w, st, _) in every if (m, p, st) == ("resnet18", paradigm, start)})
            for w in weights:
                row = seeded(every, "resnet18", paradigm, w, start)
                base = seeded(every, "resnet18", "baseline", None, start)
                seeds = sorted({sd for sd, _ in set(row) & set(base)})
                if not seeds:
                    continue
                default = paradigm_class(paradigm).options[WEIGHT[paradigm]].default
                label = "reference" if w == REFERENCE[paradigm] else "the default" if w == default else "other"
                print(f"| {start} | {paradigm} | {WEIGHT[paradigm]} = {w:g} ({label}) | {','.join(map(str, seeds))} | "
                      + " | ".join(_cell(base, row, k) for k, _ in METRICS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
