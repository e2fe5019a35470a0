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


#: the power and level at which a design's detectable difference is stated
POWER, ALPHA = 0.8, 0.05


def detectable_difference(differences: Sequence[float], test_train_ratio: float, power: float = POWER,
                          alpha: float = ALPHA) -> float | None:
    """The smallest true mean difference that the corrected resampled t-test on these paired
    differences (one per seed x fold) detects with probability `power` at two-sided level `alpha`:
    (t_{1-alpha/2} + t_{power}) x the corrected standard error, n - 1 degrees of freedom (the usual
    normal-approximation formula with t quantiles). None for fewer than 2 differences."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    q = float(_st.t.ppf(1 - alpha / 2, len(d) - 1) + _st.t.ppf(power, len(d) - 1))
    return q * _corrected_se(d, test_train_ratio)


def paired_images(a: np.ndarray, b: np.ndarray, power: float = POWER, alpha: float = ALPHA,
                  resamples: int = 10_000, seed: int = 0) -> dict:
    """A paired per-image comparison on a fixed test set: `a` and `b` are seeds x images arrays of
    1 (correct) / 0 (wrong), the same images in the same order, seeds as repeats.

    One seed: McNemar's exact test (a two-sided binomial test of the discordant images). Several:
    a paired bootstrap over images of the difference of the per-image means over seeds
    (`resamples` draws, `seed`), the two-sided p being twice the smaller tail share of the draws on
    either side of 0. Returns {test, n_images, diff (b - a), ci (95 %), p, detectable}: `detectable`
    is (z_{1-alpha/2} + z_{power}) x the standard error of the mean per-image difference."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError("paired_images: both rows need the same non-empty set of images")
    d = b.mean(axis=0) - a.mean(axis=0)  # per image
    n = len(d)
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    z = float(_st.norm.ppf(1 - alpha / 2) + _st.norm.ppf(power))
    out = dict(n_images=n, diff=float(d.mean()), detectable=z * se)
    if a.shape[0] == 1 and b.shape[0] == 1:
        gain, loss = int(((b[0] == 1) & (a[0] == 0)).sum()), int(((b[0] == 0) & (a[0] == 1)).sum())
        p = 1.0 if gain + loss == 0 else float(_st.binomtest(min(gain, loss), gain + loss, 0.5).pvalue)
        half = float(_st.norm.ppf(0.975)) * se
        return dict(out, test="McNemar (exact)", p=p, ci=(out["diff"] - half, out["diff"] + half),
                    discordant=(gain, loss))
    rng = np.random.default_rng(seed)
    draws = np.array([d[rng.integers(0, n, n)].mean() for _ in range(resamples)])
    p = min(1.0, 2 * min(float((draws <= 0).mean()), float((draws >= 0).mean())))
    return dict(out, test=f"paired bootstrap over images ({resamples} draws, seeds as repeats)", p=p,
                ci=(float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))))
