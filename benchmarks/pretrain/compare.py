"""How much the FER-2013-pretrained start changes M-CK+ accuracy (issue 25's Done-when).

Reads the committed results (leaderboard/results), pairs each FER-2013-pretrained ResNet-18 row of
M-CK+ (`init = pretrain:...`, leaderboard/real-ckplus-fer-pretrained.toml) with the from-scratch row
of the same paradigm, options and seed, fold by fold (the same folds: same data, protocol and seed),
and prints a markdown table: the mean change of non-masked and masked accuracy over seeds x folds
with its 95 % interval and the two-sided p of the corrected resampled t-test (msde_bench.stats, as
the leaderboard uses), and how long the pretraining took. From the repository root:

    python benchmarks/pretrain/compare.py [RESULTS_DIR] > benchmarks/pretrain/RESULTS.md
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from msde_bench import results as R
from msde_bench.stats import corrected_ci, corrected_ttest

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results"
DATASET = "m-ckplus48"


def rows(results: list[dict]) -> dict:
    """{(paradigm, train_on): {"scratch"|"pretrained": {(seed, fold): fold record}}}, complete
    real48 ResNet-18 runs on M-CK+ only."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in results:
        s = r["spec"]
        if (r["dataset"]["name"] != DATASET or s["model"] != "resnet18" or s["recipe"] != "real48"
                or not r["protocol"].get("complete") or s.get("test_data")):
            continue
        start = "pretrained" if str(s.get("init") or "").startswith("pretrain:") else "scratch" if not s.get("init") else None
        if start is None:
            continue
        key = (s["paradigm"], s["options"].get("train_on", "mixed") if s["paradigm"] == "baseline" else "")
        for f in r["folds"]:
            out[key][start][(s["seed"], f["fold"])] = f
    return out


def _interval(d: np.ndarray, ratio: float) -> str:
    ci = corrected_ci(d, ratio)
    return f"{d.mean():+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{d.mean():+.3f}"


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = [R.load(p) for p in sorted(folder.glob("*.json"))]
    table = rows(results)
    print("| row | seeds x folds | non-masked: scratch -> pretrained | change [95 % CI] | p | "
          "masked: scratch -> pretrained | change [95 % CI] | p |")
    print("|---|---|---|---|---|---|---|---|")
    for (paradigm, train_on), starts in sorted(table.items()):
        keys = sorted(set(starts["scratch"]) & set(starts["pretrained"]))
        if not keys:
            continue
        a = [starts["scratch"][k] for k in keys]
        b = [starts["pretrained"][k] for k in keys]
        ratio = float(np.mean([f["n_test_pairs"] / f["n_train_pairs"] for f in a]))
        nm = np.array([y["acc_non_masked"] - x["acc_non_masked"] for x, y in zip(a, b)])
        m = np.array([y["acc_masked"] - x["acc_masked"] for x, y in zip(a, b)])
        name = f"{paradigm} ({train_on})" if train_on else paradigm
        seeds = len({k[0] for k in keys})
        print(f"| {name} | {seeds} x {len(keys) // seeds} | "
              f"{np.mean([x['acc_non_masked'] for x in a]):.3f} -> {np.mean([y['acc_non_masked'] for y in b]):.3f} | "
              f"{_interval(nm, ratio)} | {corrected_ttest(nm, ratio):.3g} | "
              f"{np.mean([x['acc_masked'] for x in a]):.3f} -> {np.mean([y['acc_masked'] for y in b]):.3f} | "
              f"{_interval(m, ratio)} | {corrected_ttest(m, ratio):.3g} |")
    pre = {r["pretrained"]["sha256"]: r["pretrained"] for r in results if r.get("pretrained")}
    for about in pre.values():
        print(f"\nPretrained model {about['file']} (SHA-256 {about['sha256'][:12]}...): {about['spec']['model']} "
              f"trained on {about['dataset']['n_train_pairs']} training pairs of {about['dataset']['name']} "
              f"({about['spec']['recipe']}, {about['spec']['epochs']} epochs, both views) in "
              f"{about['train_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
