"""Per-fold metrics (scikit-learn) and their aggregation over folds."""

from __future__ import annotations

import math

import numpy as np

from msde_bench import CLASS_NAMES, NUM_CLASSES

SUMMARY_KEYS = ("acc_non_masked", "acc_masked", "acc_overall", "mask_gap", "macro_f1_non_masked",
                "macro_f1_masked", "pair_agreement", "train_seconds", "train_images_per_second")


#: the keys `fold_metrics` returns: a fold's numbers, compared whenever a fold is scored again
#: (evaluate against its run, a predictions file against its record, merge against a result)
FOLD_METRICS = ("n_test_pairs", "acc_non_masked", "acc_masked", "acc_overall", "mask_gap", "macro_f1_non_masked",
                "macro_f1_masked", "pair_agreement", "per_class", "confusion_non_masked", "confusion_masked")


def same_metrics(rec: dict, recorded: dict) -> bool:
    """Whether a fold scored again has exactly the numbers `recorded` holds."""
    return all(rec[k] == recorded[k] for k in FOLD_METRICS if k in recorded)


def fold_metrics(y: np.ndarray, pred_nm: np.ndarray, pred_m: np.ndarray) -> dict:
    """Scores both views of every test pair. Accuracies are fractions; overall is over all test
    images of the fold (both views), as in the reference code."""
    # imported here: scikit-learn takes ~1.8 s to import, and most commands (listing methods, rendering
    # the leaderboard) never compute a fold's metrics
    from sklearn.metrics import confusion_matrix, f1_score

    y, pred_nm, pred_m = (np.asarray(a, dtype=np.int64) for a in (y, pred_nm, pred_m))
    labels = list(range(NUM_CLASSES))
    ok_nm, ok_m = pred_nm == y, pred_m == y
    per_class = {}
    for c in labels:
        sel = y == c
        n = int(sel.sum())
        per_class[CLASS_NAMES[c]] = dict(
            n=n,
            acc_non_masked=float(ok_nm[sel].mean()) if n else None,
            acc_masked=float(ok_m[sel].mean()) if n else None,
        )
    return dict(
        n_test_pairs=int(len(y)),
        acc_non_masked=float(ok_nm.mean()),
        acc_masked=float(ok_m.mean()),
        acc_overall=float((ok_nm.sum() + ok_m.sum()) / (2 * len(y))),
        mask_gap=float(ok_nm.mean() - ok_m.mean()),  # non-masked minus masked accuracy
        # over the classes present (in the labels or the predictions), scikit-learn's default: a class
        # absent from the fold's test set is not scored as 0
        macro_f1_non_masked=float(f1_score(y, pred_nm, average="macro", zero_division=0)),
        macro_f1_masked=float(f1_score(y, pred_m, average="macro", zero_division=0)),
        pair_agreement=float((pred_nm == pred_m).mean()),
        per_class=per_class,
        confusion_non_masked=confusion_matrix(y, pred_nm, labels=labels).tolist(),
        confusion_masked=confusion_matrix(y, pred_m, labels=labels).tolist(),
    )


def summarise(folds: list[dict], keys=SUMMARY_KEYS) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one fold) and count of each metric."""
    out = {}
    for k in keys:
        vals = [f[k] for f in folds if f.get(k) is not None]
        n = len(vals)
        mean = float(np.mean(vals)) if n else math.nan
        std = float(np.std(vals, ddof=1)) if n > 1 else 0.0
        out[k] = dict(mean=mean, std=std, n=n)
    return out
