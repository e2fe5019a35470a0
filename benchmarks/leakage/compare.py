"""Image-level against subject-disjoint folds on M-CK+: the grid's result (CK+ converted without
identities) beside the committed leaderboard result of the same spec on M-CK+ (subjects from CK+'s
file names). For each arm: per-view means over the folds with their corrected 95 % intervals, and
how much of each fold's test set had its person, or its video (CK+ sequence), on the training side,
counted from the converted files' CK+ names. The two arms' folds hold different test pairs, so the
difference of the means is reported without a paired test. Prints markdown; run from the repository
root (the result files name their data relative to it; the sets are converted into the cache if
they are not there yet):

    python benchmarks/leakage/compare.py [RESULTS_DIR [COMMITTED_DIR]]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from msde_bench.board import load_all
from msde_bench.factory import load_dataset
from msde_bench.stats import corrected_ci

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CKPLUS_NAME = re.compile(r"(S\d{3})_(\d{3})_\d+\.")
METRICS = (("acc_non_masked", "non-masked"), ("acc_masked", "masked"))


def comparable(spec: dict) -> dict:
    """The spec without its data: what both arms share."""
    return {k: v for k, v in spec.items() if k != "data"}


def arms(results: list[dict], committed: list[dict]) -> list[tuple[str, dict]]:
    """[(label, result)]: each complete image-level result, then the committed result of the same spec
    on a set whose folds are subject-disjoint."""
    out = []
    for r in results:
        if not r["protocol"].get("complete"):
            continue
        twin = [c for c in committed if c["protocol"].get("complete") and c["dataset"].get("folds_by") == "subject"
                and comparable(c["spec"]) == comparable(r["spec"])]
        if not twin:
            sys.exit(f"no committed subject-fold result of the spec of {r['run_id']}")
        out += [("image-level folds (no identities)", r), ("subject-disjoint folds", twin[0])]
    return out


def crossing(result: dict) -> list[tuple[float, float]]:
    """Per fold: the share of test pairs whose CK+ person, and whose CK+ sequence, has a pair on the
    training side of that fold."""
    ds = load_dataset(result["dataset"]["root"])
    sources = ds.meta.get("pairs", {})
    who: dict[int, list[tuple[str, str]]] = {}
    for p in ds.pairs:
        m = CKPLUS_NAME.search(sources.get(p.name, {}).get("source", p.name))
        if m is None:
            sys.exit(f"{p.non_masked}: no CK+ subject / sequence in its source name")
        who.setdefault(p.subject, []).append((m.group(1), m.group(1) + "_" + m.group(2)))
    shares = []
    for f in result["folds"]:
        train = [x for s in f["train_subjects"] for x in who[s]]
        people, videos = {p for p, _ in train}, {v for _, v in train}
        test = [x for s in f["test_subjects"] for x in who[s]]
        shares.append((np.mean([p in people for p, _ in test]), np.mean([v in videos for _, v in test])))
    return shares


def main(results_dir: Path, committed_dir: Path) -> None:
    results, _ = load_all([results_dir])
    committed, _ = load_all([committed_dir])
    rows = arms(results, committed)
    print("| folds | run id | non-masked (95 % CI) | masked (95 % CI) | mask gap | test pairs whose person "
          "is in training | whose video is |")
    print("|---|---|---|---|---|---|---|")
    means = {}
    for label, r in rows:
        folds = r["folds"]
        ratio = float(np.mean([f["n_test_pairs"] / f["n_train_pairs"] for f in folds]))
        cells = []
        for key, _ in METRICS:
            v = [f[key] for f in folds]
            lo, hi = corrected_ci(v, ratio)
            means[(label, key)] = float(np.mean(v))
            cells.append(f"{np.mean(v):.3f} ({max(lo, 0.0):.3f}-{min(hi, 1.0):.3f})")  # accuracies: clipped to [0, 1]
        gap = means[(label, "acc_non_masked")] - means[(label, "acc_masked")]
        share = np.array(crossing(r))
        print(f"| {label} | `{r['run_id']}` | {cells[0]} | {cells[1]} | {gap:.3f} | "
              f"{share[:, 0].mean():.0%} | {share[:, 1].mean():.0%} |")
    print()
    for i in range(0, len(rows), 2):
        (a, _), (b, _) = rows[i], rows[i + 1]
        diffs = ", ".join(f"{name} {means[(a, key)] - means[(b, key)]:+.3f}" for key, name in METRICS)
        print(f"Image-level minus subject-disjoint: {diffs} ({len(rows[i][1]['folds'])} folds each).")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results",
         Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "leaderboard" / "results")
