"""The MSD-E evaluation protocol: subject-disjoint folds.

- `clean` (default): a seeded subject-disjoint k-fold partition. Every subject is tested exactly
  once and classes are balanced across folds where the subjects allow it (scikit-learn's
  StratifiedGroupKFold). The model after the last epoch is the one evaluated.
- `holdout`: one fold, the official train/test split of a converted public dataset.
- `faithful`: the reference code's split (the MSD-E authors' released code): with w = (number of subject IDs) // k,
  fold k tests the subject IDs w*k ... w*k + w inclusive (w + 1 IDs, overlapping the next fold by one;
  the tail IDs are never tested), trains on all other IDs, and selects the best epoch on the test
  fold. It exists to compare with the paper; its numbers are optimistic by construction.

Every fold asserts that no subject is on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msde_bench.errors import MsdeError

PROTOCOL_VERSION = 1
PROTOCOLS = ("clean", "faithful", "holdout")


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # pair indices
    test: np.ndarray
    test_subjects: tuple[int, ...]
    #: holdout: the official validation split (FER-2013's PublicTest), scored beside the test split and
    #: never trained on or merged into it; empty otherwise
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def subjects_of(idx: np.ndarray, subjects: np.ndarray) -> list[int]:
    """The distinct subjects of the pairs `idx`, sorted."""
    return sorted(set(subjects[idx].tolist()))


def check_disjoint(fold: Fold, subjects: np.ndarray) -> None:
    shared = set(subjects[fold.train].tolist()) & set(subjects[fold.test].tolist())
    if shared:
        raise AssertionError(f"fold {fold.index}: subjects {sorted(shared)} are in both train and test")


def clean_folds(subjects: np.ndarray, labels: np.ndarray, k: int, seed: int) -> list[Fold]:
    from sklearn.model_selection import StratifiedGroupKFold

    n_subj = len(np.unique(subjects))
    if n_subj < k:
        raise MsdeError(f"{k} folds need at least {k} subjects; the dataset has {n_subj}")
    if k < 2:
        raise MsdeError("the protocol needs at least 2 folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    idx = np.arange(len(subjects))
    folds = []
    for i, (train, test) in enumerate(splitter.split(idx, labels, groups=subjects)):
        folds.append(Fold(i, np.sort(train), np.sort(test), tuple(subjects_of(test, subjects))))
    return folds


def faithful_folds(subjects: np.ndarray, k: int) -> list[Fold]:
    ids = np.unique(subjects)
    width = len(ids) // k
    if width < 1:
        raise MsdeError(f"{k} folds need at least {k} subjects; the dataset has {len(ids)}")
    folds = []
    for i in range(k):
        window = set(range(width * i, width * (i + 1) + 1))
        is_test = np.array([s in window for s in subjects.tolist()])
        test, train = np.flatnonzero(is_test), np.flatnonzero(~is_test)
        if len(test) == 0:
            raise MsdeError(f"faithful fold {i} tests subject IDs {min(window)}-{max(window)}, "
                            "none of which is in the dataset (the reference split assumes IDs 0..N-1)")
        folds.append(Fold(i, train, test, tuple(subjects_of(test, subjects))))
    return folds


def holdout_folds(subjects: np.ndarray, official: list[str] | None) -> list[Fold]:
    """One fold: train on the official train split, test on its test split (public datasets); the
    validation split, where the set has one, is the fold's `val`."""
    if official is None:
        raise MsdeError("the holdout protocol needs a dataset with an official train/test split (meta.json "
                        "'splits', written by `msde-bench data convert`)")
    split = np.array(official)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    if len(train) == 0 or len(test) == 0:
        raise MsdeError(f"holdout: the official split has {len(train)} train and {len(test)} test pairs; use "
                        "--protocol clean for subject-disjoint folds over the whole set")
    return [Fold(0, train, test, tuple(subjects_of(test, subjects)), np.flatnonzero(split == "val"))]


def make_folds(protocol: str, subjects: np.ndarray, labels: np.ndarray, k: int, seed: int,
               official: list[str] | None = None) -> list[Fold]:
    """The folds of a protocol; `official` is each pair's official split ("train"/"test") for holdout."""
    if protocol == "clean":
        folds = clean_folds(subjects, labels, k, seed)
    elif protocol == "faithful":
        folds = faithful_folds(subjects, k)
    elif protocol == "holdout":
        folds = holdout_folds(subjects, official)
    else:
        raise MsdeError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    for f in folds:
        check_disjoint(f, subjects)
    return folds


def describe(protocol: str, k: int) -> dict:
    """The result file's `protocol` block (its key `split` names the protocol, as in schema 1)."""
    return dict(name=f"msde-{protocol}", version=PROTOCOL_VERSION, folds=1 if protocol == "holdout" else k,
                split=protocol, selection="best-on-test" if protocol == "faithful" else "last")
