import numpy as np
import pytest

from msde_bench.errors import MsdeError
from msde_bench.protocol import Fold, check_disjoint, make_folds


def _data(n_subjects=30, seed=0):
    rng = np.random.default_rng(seed)
    subjects, labels = [], []
    for s in range(n_subjects):
        for y in rng.choice(7, size=rng.integers(5, 8), replace=False):
            subjects.append(s)
            labels.append(int(y))
    return np.array(subjects), np.array(labels)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_clean_folds_partition_subjects(k):
    subjects, labels = _data()
    folds = make_folds("clean", subjects, labels, k, seed=3)
    assert len(folds) == k
    tested = [s for f in folds for s in f.test_subjects]
    assert sorted(tested) == sorted(set(subjects.tolist()))  # every subject tested exactly once
    all_test = np.concatenate([f.test for f in folds])
    assert sorted(all_test.tolist()) == list(range(len(subjects)))  # every pair tested exactly once
    for f in folds:
        assert not set(subjects[f.train]) & set(subjects[f.test])
        assert len(f.train) + len(f.test) == len(subjects)


def test_clean_folds_are_deterministic_and_seeded():
    subjects, labels = _data()
    a = make_folds("clean", subjects, labels, 5, seed=1)
    b = make_folds("clean", subjects, labels, 5, seed=1)
    c = make_folds("clean", subjects, labels, 5, seed=2)
    assert [f.test_subjects for f in a] == [f.test_subjects for f in b]
    assert [f.test_subjects for f in a] != [f.test_subjects for f in c]


def test_clean_folds_are_stable_across_platforms():
    """A golden assignment: it changes only if the splitting algorithm changes."""
    subjects = np.repeat(np.arange(12), 7)
    labels = np.tile(np.arange(7), 12)
    folds = make_folds("clean", subjects, labels, 4, seed=123)
    assert [f.test_subjects for f in folds] == [(0, 1, 7), (4, 6, 10), (8, 9, 11), (2, 3, 5)]


def test_clean_folds_balance_classes():
    subjects, labels = _data(60)
    folds = make_folds("clean", subjects, labels, 5, seed=0)
    overall = np.bincount(labels, minlength=7) / len(labels)
    for f in folds:
        share = np.bincount(labels[f.test], minlength=7) / len(f.test)
        assert np.abs(share - overall).max() < 0.05


def test_too_few_subjects_is_a_clear_error():
    subjects, labels = _data(3)
    with pytest.raises(MsdeError, match="at least 5 subjects"):
        make_folds("clean", subjects, labels, 5, seed=0)


def test_faithful_reproduces_the_reference_windows():
    """142 subject IDs, 10 folds: fold k tests IDs 14k..14k+14; IDs 14, 28, ... are tested twice
    and ID 141 never (the reference code's split)."""
    subjects = np.repeat(np.arange(142), 7)
    labels = np.tile(np.arange(7), 142)
    folds = make_folds("faithful", subjects, labels, 10, seed=0)
    assert folds[0].test_subjects == tuple(range(0, 15))
    assert folds[3].test_subjects == tuple(range(42, 57))
    assert folds[9].test_subjects == tuple(range(126, 141))
    counts = np.bincount([s for f in folds for s in f.test_subjects], minlength=142)
    assert np.flatnonzero(counts == 2).tolist() == [14, 28, 42, 56, 70, 84, 98, 112, 126]
    assert counts[141] == 0
    for f in folds:
        assert len(f.train) + len(f.test) == len(subjects)
        assert not set(subjects[f.train]) & set(subjects[f.test])


def test_disjointness_check_catches_leaks():
    subjects = np.array([0, 0, 1, 1])
    leak = Fold(0, train=np.array([0, 2]), test=np.array([1, 3]), test_subjects=(0, 1))
    with pytest.raises(AssertionError, match="both train and test"):
        check_disjoint(leak, subjects)


def test_unknown_protocol():
    subjects, labels = _data()
    with pytest.raises(MsdeError, match="unknown protocol"):
        make_folds("random", subjects, labels, 5, seed=0)
