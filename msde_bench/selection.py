"""Nested weight selection: each fold chooses an option's value on validation, never on its test fold.

`--opt alpha=1,10,100 --select-on val` gives an option candidate values (RunSpec.candidates). Each
fold of the run then:

1. carves a validation split out of its own training side: the set's official validation split
   where it has one (FER-2013's PublicTest under the holdout protocol), else a seeded,
   subject-disjoint, class-stratified split of the fold's training subjects of about one training
   fold's worth of them (fold 0 of the protocol's clean split into k - 1 folds over the training
   subjects alone);
2. trains one model per candidate (every combination, when several options have candidates) on
   the rest of its training side, from the fold's seed, and scores each on the validation split;
3. keeps the candidate with the highest validation accuracy over both views' images
   (acc_overall; a tie goes to the one listed first), trains it again on the fold's whole
   training side and scores that model once on the test fold.

The test fold takes no part in the choice: its pairs are neither trained on nor scored before
step 3 (tests/test_selection.py checks that permuting its labels changes nothing chosen). Every
candidate's validation numbers and the choice go into the fold record (`selection`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from msde_bench import protocol as P
from msde_bench.errors import MsdeError
from msde_bench.spec import RunSpec, derive_seed

#: what a candidate is chosen on: accuracy over both views' validation images
SELECT_METRIC = "acc_overall"


def combinations(spec: RunSpec) -> list[dict[str, Any]]:
    """Every combination of the spec's candidate values, as {option: value}, in the order given."""
    keys = [k for k, _ in spec.candidates]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in spec.candidates))]


def with_values(spec: RunSpec, values: dict[str, Any]) -> RunSpec:
    """The spec of one candidate: its values in the options, no candidates left."""
    return spec.with_(options=tuple(sorted({**dict(spec.options), **values}.items())), candidates=(), select_on=None)


def cost(spec: RunSpec, n_folds: int) -> str:
    """What the selection costs, said before training: candidates x folds extra trainings."""
    n = len(combinations(spec))
    return (f"weights chosen on validation: {n} candidates ({', '.join(f'{k}={list(v)}' for k, v in spec.candidates)}) "
            f"x {n_folds} folds = {n * n_folds} trainings on the folds' inner splits, then {n_folds} on the whole "
            f"training sides: {n + 1}x the cost of the run without selection")


def validation_split(spec: RunSpec, fold: P.Fold, subjects: np.ndarray, labels: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """(inner training pairs, validation pairs, where the split came from) of one fold: the official
    validation split where the fold has one, else a seeded subject-disjoint split of its training
    subjects (see the module). Refused when it would share a subject with the test fold."""
    if len(fold.val):
        inner, val, source = fold.train, fold.val, "the official validation split"
    else:
        train_subjects = subjects[fold.train]
        k = max(2, spec.folds - 1)
        n_subjects = len(set(train_subjects.tolist()))
        if n_subjects < k:
            k = max(2, n_subjects)
        sub = P.clean_folds(train_subjects, labels[fold.train], k, derive_seed(spec.seed, "select", fold.index))[0]
        inner, val = fold.train[sub.train], fold.train[sub.test]
        source = f"1 of {k} subject-disjoint parts of the fold's training subjects"
    shared = sorted(set(subjects[val].tolist()) & set(subjects[fold.test].tolist()))
    if shared:
        raise MsdeError(f"--select-on val: fold {fold.index}'s validation split shares subjects {shared[:10]} with "
                        "its test fold; a choice made there would see the test people")
    return inner, val, source


def check(spec: RunSpec, folds: list[P.Fold], subjects: np.ndarray, labels: np.ndarray,
          class_names: list[str] | None = None) -> None:
    """Before anything is written: every fold to run can be split (at least 2 subjects of each of
    its training side's classes, so that one can be left for validation), and no split shares a
    subject with its test fold."""
    if not spec.candidates:
        return
    for fold in folds:
        if spec.run_folds and fold.index not in spec.run_folds:
            continue
        if not len(fold.val):
            tr_s, tr_y = subjects[fold.train], labels[fold.train]
            for c in sorted(set(tr_y.tolist())):
                n = len(set(tr_s[tr_y == c].tolist()))
                if n < 2:
                    name = class_names[c] if class_names and c < len(class_names) else f"class {c}"
                    raise MsdeError(f"--select-on val: fold {fold.index}'s training side has {n} subject of {name}; "
                                    "an inner validation split needs at least 2 subjects per class (use fewer folds "
                                    "or a larger set)")
        validation_split(spec, fold, subjects, labels)


def choose(spec: RunSpec, fold: P.Fold, subjects: np.ndarray, labels: np.ndarray,
           train_and_score: Callable[[RunSpec, np.ndarray, np.ndarray], dict],
           say: Callable[[str], None] = lambda text: None) -> tuple[dict[str, Any], dict]:
    """The values chosen for one fold and the record of the choice: `train_and_score(spec, train,
    val)` trains a candidate's model on `train` and returns its metrics on `val`."""
    inner, val, source = validation_split(spec, fold, subjects, labels)
    scored = []
    for values in combinations(spec):
        m = train_and_score(with_values(spec, values), inner, val)
        scored.append(dict(values=values, n_val_pairs=int(len(val)), acc_non_masked=m["acc_non_masked"],
                           acc_masked=m["acc_masked"], acc_overall=m["acc_overall"]))
        say(f"fold {fold.index}: candidate {values}: validation non-masked {m['acc_non_masked']:.3f} masked "
            f"{m['acc_masked']:.3f} overall {m['acc_overall']:.3f}")
    best = max(range(len(scored)), key=lambda i: (scored[i][SELECT_METRIC], -i))
    chosen = scored[best]["values"]
    say(f"fold {fold.index}: chose {chosen} on validation; training it on the whole training side")
    record = dict(on=source, metric=SELECT_METRIC, chosen=chosen, candidates=scored,
                  n_inner_train_pairs=int(len(inner)), n_val_pairs=int(len(val)),
                  val_subjects=P.subjects_of(val, subjects))
    return chosen, record
