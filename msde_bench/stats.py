"""Statistics over cross-validation folds (and seeds) that do not pretend the folds are independent.

k-fold estimates share most of their training data, so the plain paired t-test over folds
underestimates the variance and its p-values are too small. The corrected resampled t-test
(Nadeau & Bengio, Machine Learning 2003) inflates the variance of the n = r x k fold values (r
repetitions, here seeds, of k-fold) by the ratio of test to training set size; Bouckaert & Frank
(PAKDD 2004) give its form for repeated k-fold:

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)),   n - 1 degrees of freedom,

var with ddof 1. The same corrected variance gives the confidence interval of a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

CHANCE = 1 / 7  # seven balanced expressions (a set with fewer classes: 1 / its number of classes)


def _corrected_se(values: np.ndarray, test_train_ratio: float) -> float:
    return math.sqrt((1 / len(values) + test_train_ratio) * float(np.var(values, ddof=1)))


def corrected_ttest(differences: Sequence[float], test_train_ratio: float) -> float | None:
    """Two-sided p of the corrected resampled t-test on paired differences (one per seed x fold);
    None for fewer than 2. All-zero differences give 1, a constant non-zero difference 0."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    if np.allclose(d, 0):
        return 1.0
    if np.allclose(d, d[0]):
        return 0.0
    t = float(d.mean()) / _corrected_se(d, test_train_ratio)
    return float(2 * _st.t.sf(abs(t), len(d) - 1))


def corrected_ci(values: Sequence[float], test_train_ratio: float, level: float = 0.95) -> tuple[float, float] | None:
    """The `level` confidence interval of the mean of fold values with the corrected variance;
    None for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    half = float(_st.t.ppf(0.5 + level / 2, len(v) - 1)) * _corrected_se(v, test_train_ratio)
    return float(v.mean()) - half, float(v.mean()) + half
