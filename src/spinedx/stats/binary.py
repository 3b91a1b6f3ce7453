"""Binary diagnostic-accuracy statistics: 2x2 counts, Wilson intervals, Cohen's kappa, AUC.

The positive class is label 1. A decision is positive when ``prob > threshold``
(strictly greater, so a probability equal to the threshold is negative):
:func:`positive_calls` is that one rule, used by the tables, the figures and Grad-CAM
(through :class:`spinedx.task.BinaryTask`).

* the 2x2 counts, sensitivity, specificity and accuracy with Wilson score intervals
  (closed form, exact to the study's printed digits from integer counts);
* Cohen's kappa of the 2x2 and the ROC AUC (Mann-Whitney, ties count one half).

Undefined quantities (for example sensitivity without positive cases, or AUC with a
single class) are NaN rather than errors, so that small or partial cohorts still give
a complete table. Intervals of AUC and kappa: :mod:`spinedx.stats.bootstrap`.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from spinedx.errors import InputError

def label_prob_arrays(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    """Return ``labels`` as int64 and ``probs`` as float64 1-D arrays, validated.

    NaN probabilities are rejected here because ``nan > threshold`` is False and would
    otherwise turn silently into negative decisions.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    if labels.ndim != 1 or probs.shape != labels.shape:
        raise InputError(
            f"labels and probs must be 1-D of equal length, got shapes {labels.shape} "
            f"and {probs.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must all be 0 or 1")
    if not np.isfinite(probs).all():
        raise InputError("probs must all be finite")
    return labels.astype(np.int64), probs


def positive_calls(probs, threshold: float = 0.5) -> np.ndarray:
    """The study's decision rule: positive when the probability is strictly above the
    threshold (one definition for tables, figures and Grad-CAM)."""
    return np.asarray(probs) > threshold


def confusion_counts(labels, probs, threshold: float = 0.5) -> dict[str, int]:
    """2x2 counts of the decisions ``probs > threshold`` (strict) against ``labels``.

    Returns ``dict(tp=, fp=, fn=, tn=)`` of Python ints.
    """
    labels, probs = label_prob_arrays(labels, probs)
    positive_call = positive_calls(probs, threshold)
    is_positive = labels == 1
    return {
        "tp": int(np.sum(positive_call & is_positive)),
        "fp": int(np.sum(positive_call & ~is_positive)),
        "fn": int(np.sum(~positive_call & is_positive)),
        "tn": int(np.sum(~positive_call & ~is_positive)),
    }


def check_level(level: float) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``.

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    which matters for sensitivities around 90 % on 34 cases. ``n == 0`` gives (nan, nan).
    """
    check_level(level)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise InputError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes the outer bound is exactly 0 or 1; computing it would leave
    # rounding error of order 1e-17 (e.g. a "positive" lower bound of 0 %).
    lo = 0.0 if successes == 0 else centre - half_width
    hi = 1.0 if successes == n else centre + half_width
    return (lo, hi)


def kappa_of_counts(tp, fp, fn, tn):
    """Cohen's kappa of 2x2 tables, element-wise over arrays; NaN where undefined.

    Uses the closed form 2(tp*tn - fp*fn) / ((tp+fp)(fp+tn) + (tp+fn)(fn+tn)), which
    equals (p_o - p_e) / (1 - p_e) but is exact in integer counts: the denominator is
    zero exactly when p_e == 1 (all labels and all decisions in one class), with no
    floating-point comparison to 1 needed.
    """
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))
    numerator = 2 * (tp * tn - fp * fn)
    denominator = (tp + fp) * (fp + tn) + (tp + fn) * (fn + tn)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int, level: float = 0.95) -> dict:
    """Sensitivity, specificity, accuracy (with Wilson intervals) and kappa of a 2x2.

    Proportions are fractions in [0, 1]; undefined values are NaN. Keys, in order:
    ``n_pos, n_neg, tp, fp, fn, tn, sensitivity, sensitivity_lo, sensitivity_hi,
    specificity, specificity_lo, specificity_hi, accuracy, accuracy_lo, accuracy_hi,
    kappa``.
    """
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    tp, fp, fn, tn = (int(value) for value in counts.values())
    n_pos, n_neg = tp + fn, tn + fp
    result = {"n_pos": n_pos, "n_neg": n_neg, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, successes, n in (
        ("sensitivity", tp, n_pos),
        ("specificity", tn, n_neg),
        ("accuracy", tp + tn, n_pos + n_neg),
    ):
        result[name] = ratio(successes, n)
        result[f"{name}_lo"], result[f"{name}_hi"] = wilson_interval(successes, n, level)
    result["kappa"] = float(kappa_of_counts(tp, fp, fn, tn))
    return result


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2)[inverse]


def roc_auc(labels, probs) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count 1/2).

    Equals ``sklearn.metrics.roc_auc_score``; NaN (instead of an error) when one class
    is absent.
    """
    labels, probs = label_prob_arrays(labels, probs)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = _average_ranks(probs)[labels == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
