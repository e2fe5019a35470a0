"""Per-fold metrics (scikit-learn), their aggregation over folds, and the one table that says
what each metric is called, which way is better, how it is written and where it is shown.

Adding a metric: compute it in `fold_metrics` and add a `Metric` to `METRICS`; the result schema's
check (results.py), `results`, `results show`, the run summary, `compare`, the leaderboard, its
figures' data and the web page read the table (tests/test_leaderboard.py adds one on a branch of
the table to check that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msde_bench import CLASS_NAMES, NUM_CLASSES

#: where a metric is shown: `summary` (a result's mean ± std over folds), `fold` (`results show`,
#: the web page's per-fold details), `run` (the lines `run`, `evaluate` and `results` print),
#: `compare` (the compare table), `table` (the leaderboard and its web page)
VIEWS = ("summary", "fold", "run", "compare", "table")


@dataclass(frozen=True)
class Metric:
    key: str  # as a fold record and a summary store it
    label: str  # a column title
    column: str  # a machine-readable column name (`results --format csv|json`)
    higher_is_better: bool = True
    #: a share of test images or pairs: checked to lie in [0, 1]; accuracies are compared with chance
    share: bool = True
    #: an accuracy the leaderboard compares with chance (1 / the dataset's classes)
    chance: bool = False
    fmt: str = ".3f"  # how it is written for people
    digits: int = 4  # how it is rounded in data outputs (csv, json)
    views: tuple[str, ...] = ("summary", "fold")
    #: the values it can take, where bounded (a share: [0, 1]); an interval is clipped to them
    bounds: tuple[float, float] | None = None

    def text(self, value: float) -> str:
        return format(value, self.fmt)

    @property
    def limits(self) -> tuple[float, float] | None:
        return self.bounds or ((0.0, 1.0) if self.share else None)


_ALL = ("summary", "fold", "run", "compare", "table")
METRICS: tuple[Metric, ...] = (
    Metric("acc_non_masked", "non-masked", "non_masked", chance=True, views=_ALL),
    Metric("acc_masked", "masked", "masked", chance=True, views=_ALL),
    Metric("acc_overall", "overall", "overall", chance=True, views=_ALL),
    Metric("mask_gap", "mask gap", "mask_gap", higher_is_better=False, share=False, bounds=(-1.0, 1.0),
           views=("summary", "fold", "compare", "table")),
    Metric("pair_agreement", "pair agreement", "pair_agreement", views=("summary", "fold", "table")),
    Metric("macro_f1_non_masked", "macro-F1 non-masked", "macro_f1_non_masked", views=("summary",)),
    Metric("macro_f1_masked", "macro-F1 masked", "macro_f1_masked", views=("summary", "fold", "table")),
    Metric("train_seconds", "train seconds", "train_seconds", higher_is_better=False, share=False, fmt=".1f",
           digits=1, views=("summary", "fold")),
    Metric("train_images_per_second", "training images / s", "train_images_per_second", share=False, fmt=".0f",
           digits=1, views=("summary",)),
)


def metrics_in(view: str) -> tuple[Metric, ...]:
    """The metrics shown in `view` (VIEWS), in the table's order."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; one of {VIEWS}")
    return tuple(m for m in METRICS if view in m.views)


def metric(key: str) -> Metric | None:
    """The table's row of `key`, or None for a key it does not hold."""
    return next((m for m in METRICS if m.key == key), None)


def share_keys() -> tuple[str, ...]:
    """The fold keys that are shares of test images or pairs, in [0, 1] (results.py checks them)."""
    return tuple(m.key for m in METRICS if m.share)


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


def summarise(folds: list[dict], keys=None) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one fold) and count of each metric (`keys`,
    default: the metrics of view `summary`) that at least one fold records."""
    out = {}
    keys = keys if keys is not None else [m.key for m in metrics_in("summary")]
    for k in keys:
        vals = [f[k] for f in folds if f.get(k) is not None]
        if vals:
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            out[k] = dict(mean=float(np.mean(vals)), std=std, n=len(vals))
    return out
