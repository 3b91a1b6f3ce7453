"""N-class reader studies: the readings of a group of readers pooled, and the gain of one
reading condition over another, with case-bootstrap intervals.

Inputs: ``truth`` (c,), the true class index of each case, and ``decisions`` (r, c), the
class index each of ``r`` readers decided for each case (every reader reads every case:
a fully crossed design, as the Obuchowski-Rockette analysis needs).

A group's pooled readings form one confusion matrix (the sum of its readers'); its
micro-accuracy, macro sensitivity and macro specificity (one-vs-rest, averaged over the
classes where each is defined) equal the mean of its readers' values, because every reader
read the same cases; its Cohen's kappa is the kappa of the pooled matrix (agreement of
the group's decisions with the truth), not the mean of the readers' kappas. Definitions:
:func:`spinedx.stats.multiclass.confusion_metrics`.

Intervals: percentile intervals of a bootstrap over cases: a replicate draws cases with
replacement and takes every reader's decisions on each drawn case (in both conditions
for a gain), so the correlation of readers reading the same cases, and of a reader
reading a case twice, is kept. Replicates where a metric is undefined are left out of its
interval (:func:`spinedx.stats.multiclass.percentile_interval`).
"""

from __future__ import annotations

import numpy as np

from spinedx.errors import InputError
from spinedx.stats.multiclass import (CONFUSION_METRICS, case_bootstrap_weights, confusion_metrics,
                                      percentile_interval)

__all__ = ["condition_gain", "pooled_reader_metrics"]


def _case_confusions(truth, decisions, n_classes: int) -> np.ndarray:
    """(c, N*N): each case's contribution to the pooled confusion matrix of the readers."""
    truth = np.asarray(truth, dtype=np.int64)
    decisions = np.atleast_2d(np.asarray(decisions, dtype=np.int64))
    if decisions.shape[1] != truth.size:
        raise InputError(f"decisions must be (readers, cases) with {truth.size} cases, got {decisions.shape}")
    for name, values in (("truth", truth), ("decisions", decisions)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise InputError(f"{name} must be class indexes 0..{n_classes - 1}")
    cells = truth[None, :] * n_classes + decisions  # (r, c)
    contributions = np.zeros((truth.size, n_classes * n_classes))
    np.add.at(contributions, (np.broadcast_to(np.arange(truth.size), cells.shape), cells), 1)
    return contributions


def _metrics(contributions: np.ndarray, weights: np.ndarray, n_classes: int, kappa_weights) -> dict:
    confusions = (weights @ contributions).reshape(len(weights), n_classes, n_classes)
    return confusion_metrics(confusions, kappa_weights)


def pooled_reader_metrics(truth, decisions, n_classes: int, *, n_boot: int, seed: int, level: float,
                          kappa_weights: str | None = None) -> dict:
    """The metrics of :data:`~spinedx.stats.multiclass.CONFUSION_METRICS` of the pooled
    readings of ``decisions`` (readers x cases), each with ``<metric>_lo`` and
    ``<metric>_hi``; and ``sensitivity``, ``sensitivity_lo``, ``sensitivity_hi``: per-class
    arrays (NaN for a class absent from the truth)."""
    contributions = _case_confusions(truth, decisions, n_classes)
    point = _metrics(contributions, np.ones((1, contributions.shape[0])), n_classes, kappa_weights)
    boot = _metrics(contributions, case_bootstrap_weights(contributions.shape[0], n_boot, seed), n_classes,
                    kappa_weights)
    result: dict[str, float] = {}
    for name in CONFUSION_METRICS:
        lo, hi = percentile_interval(boot[name], level)
        result.update({name: float(point[name][0]), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    lo, hi = percentile_interval(boot["sensitivity"], level)
    result.update(sensitivity=point["sensitivity"][0], sensitivity_lo=lo, sensitivity_hi=hi)
    return result


def condition_gain(truth, reference, other, n_classes: int, *, n_boot: int, seed: int, level: float,
                   kappa_weights: str | None = None) -> dict[str, dict[str, float]]:
    """Per metric: the pooled value under ``reference`` (e.g. unaided) and ``other`` (e.g.
    aided; both readers x cases, the same readers and cases), the gain ``other -
    reference`` and its interval (the same bootstrap replicates for both conditions)."""
    first = _case_confusions(truth, reference, n_classes)
    second = _case_confusions(truth, other, n_classes)
    ones = np.ones((1, first.shape[0]))
    weights = case_bootstrap_weights(first.shape[0], n_boot, seed)
    point_first, point_second = (_metrics(m, ones, n_classes, kappa_weights) for m in (first, second))
    boot_first, boot_second = (_metrics(m, weights, n_classes, kappa_weights) for m in (first, second))
    result = {}
    for name in CONFUSION_METRICS:
        lo, hi = percentile_interval(boot_second[name] - boot_first[name], level)
        result[name] = {"reference": float(point_first[name][0]), "other": float(point_second[name][0]),
                        "gain": float(point_second[name][0] - point_first[name][0]),
                        "gain_lo": float(lo), "gain_hi": float(hi)}
    return result
