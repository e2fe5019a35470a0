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
from msde_bench.stats import corrected_ci, corrected_ttest, detectable_difference

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results"
DATASET = "m-ckplus48"
SEED = 0
METRICS = (("acc_non_masked", "non-masked"), ("acc_masked", "masked"))


def runs(results: list[dict]) -> dict:
    """{(model, paradigm): {fold: fold record}} for the complete from-scratch real48 seed-0 runs of
    M-CK+ (mixed baselines only: the one-view ResNet-18 baselines are the paper's other comparison)."""
    out: dict = {}
    for r in results:
        s = r["spec"]
        if (r["dataset"]["name"] != DATASET or s["recipe"] != "real48" or s["seed"] != SEED or s.get("init")
                or not r["protocol"].get("complete") or s.get("test_data")
                or s["options"].get("train_on", "mixed") != "mixed"):
            continue
        key = (s["model"], s["paradigm"])
        if key in out:
            raise SystemExit(f"{r['run_id']}: a second result for {key}; give one results folder per grid")
        out[key] = {f["fold"]: f for f in r["folds"]}
    return out


def change(a: dict, b: dict, metric: str) -> tuple[float, float, float, tuple[float, float], float, float]:
    """(mean of a, mean of b, mean change b - a, its 95 % interval, p, the change detectable with
    80 % power) over the folds both have."""
    folds = sorted(set(a) & set(b))
    x = np.array([a[f][metric] for f in folds])
    y = np.array([b[f][metric] for f in folds])
    ratio = float(np.mean([a[f]["n_test_pairs"] / a[f]["n_train_pairs"] for f in folds]))
    d = y - x
    return (float(x.mean()), float(y.mean()), float(d.mean()), corrected_ci(d, ratio), corrected_ttest(d, ratio),
            detectable_difference(d, ratio))


def _cell(a: dict, b: dict, metric: str) -> str:
    x, y, d, ci, p, mde = change(a, b, metric)
    mark = " *" if p is not None and p < 0.05 else ""
    return f"{x:.3f} -> {y:.3f} | {d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | {p:.2g}{mark} | {mde:.3f}"


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    table = runs([R.load(p) for p in sorted(folder.glob("*.json"))])
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
