"""The paired-comparison table: models (or readers, inputs, fusion vs image-only)
compared on the same cases by AUC (DeLong), sensitivity and specificity (exact McNemar,
Newcombe interval), with multiplicity-adjusted p-values.

N classes (:func:`multiclass_paired_comparison_table`): accuracy of the argmax decisions
(exact McNemar on each case right or wrong, Newcombe interval), and per class one-vs-rest
the AUC of that class's probability (DeLong) and the sensitivity (the class's cases
decided as that class; exact McNemar); the same row builders as the two-class table.

One row per (comparison, metric); differences are model_a minus model_b. Decisions are
the study's rule (positive when the probability is strictly above the threshold,
:func:`spinedx.stats.binary.positive_calls`) unless given explicitly (e.g. a reader's own
binary calls). Rows are case-level: pass one prediction per patient.

Units clustered in patients (images labelled per image, :func:`cluster_bootstrap_comparison_table`):
the same N-class rows with the difference bootstrapped over patients instead of McNemar
and DeLong, which assume independent units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.binary import positive_calls
from spinedx.stats.delong import paired_delong_test
from spinedx.stats.mcnemar import paired_accuracy, paired_proportions
from spinedx.stats.multiclass import argmax_decisions
from spinedx.stats.multiplicity import adjust_pvalues

__all__ = ["CLUSTER_BOOTSTRAP_TEST", "COLUMNS", "METRICS", "MULTICLASS_COLUMNS", "MULTICLASS_METRICS",
           "adjust_family", "cluster_bootstrap_comparison_table", "multiclass_paired_comparison_table",
           "paired_comparison_table"]

METRICS = ("auc", "sensitivity", "specificity")
COLUMNS = ["comparison", "model_a", "model_b", "metric", "test", "n", "estimate_a",
           "estimate_b", "difference", "ci_lo", "ci_hi", "statistic", "p", "p_adjusted",
           "adjustment", "only_a_correct", "only_b_correct"]
MULTICLASS_METRICS = ("accuracy", "auc", "sensitivity")
#: N classes: ``class`` names the class of a one-vs-rest row ("all" for accuracy).
MULTICLASS_COLUMNS = [*COLUMNS[:4], "class", *COLUMNS[4:]]
ALL_CLASSES = "all"


def _threshold_of(threshold, model: str) -> float:
    if isinstance(threshold, Mapping):
        if model not in threshold:
            raise InputError(f"no threshold given for model {model!r}")
        return float(threshold[model])
    return float(threshold)


def paired_comparison_table(labels, scores: Mapping[str, Sequence[float]],
                            comparisons: Sequence[tuple[str, str]] | None = None, *,
                            threshold: float | Mapping[str, float] = 0.5,
                            calls: Mapping[str, Sequence[int]] | None = None,
                            metrics: Sequence[str] = METRICS, level: float = 0.95,
                            adjust: str = "holm", family: str = "all") -> pd.DataFrame:
    """Compare models pairwise on the same cases.

    ``labels``: 0/1 per case. ``scores``: model name -> probability (or rating) per case,
    all in the order of ``labels``. ``comparisons``: (model_a, model_b) pairs; default
    every pair in the order of ``scores``. ``threshold``: one value or one per model;
    ``calls``: explicit 0/1 decisions per model, used instead of thresholding.
    ``adjust``: "holm" or "bonferroni" over the family of rows: ``family="all"`` (every
    row of the table) or ``"metric"`` (separately per metric).

    Columns: see ``COLUMNS``. ``statistic`` is DeLong's z for AUC and empty for McNemar
    (its p is exact); ``only_a_correct`` / ``only_b_correct`` are McNemar's discordant
    counts. A metric that cannot be computed (a class absent) gives NaN, not an error.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, (0, 1)).all():
        raise InputError("labels must be a 1-D sequence of 0/1 (1 = positive case)")
    arrays, comparisons = _checked_models(scores, labels.shape, "scores", comparisons, metrics, METRICS, family)

    def decisions(model: str) -> np.ndarray:
        if calls is not None and model in calls:
            return np.asarray(calls[model]).astype(int)
        return positive_calls(arrays[model], _threshold_of(threshold, model)).astype(int)

    rows = []
    for model_a, model_b in comparisons:
        base = _base_row(model_a, model_b)
        if "auc" in metrics:
            rows.append(_delong_row(base, labels, arrays[model_a], arrays[model_b], level))
        accuracy_metrics = [metric for metric in ("sensitivity", "specificity") if metric in metrics]
        if accuracy_metrics:
            paired = paired_accuracy(labels, decisions(model_a), decisions(model_b), level)
            rows += [_mcnemar_row(base, metric, paired[metric]) for metric in accuracy_metrics]
    return adjust_family(pd.DataFrame(rows).reindex(columns=COLUMNS), adjust, family)


def _checked_models(scores: Mapping, shape: tuple, what: str, comparisons, metrics, known_metrics,
                    family: str) -> tuple[dict[str, np.ndarray], list]:
    """The models' arrays (each of ``shape``, finite) and the pairs (default: every pair),
    after checking the family, the metrics and that each pair names two models."""
    if family not in ("all", "metric"):
        raise InputError(f"family must be 'all' or 'metric', got {family!r}")
    unknown_metrics = set(metrics) - set(known_metrics)
    if unknown_metrics:
        raise InputError(f"unknown metric(s) {sorted(unknown_metrics)}; choose from {known_metrics}")
    arrays = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=float)
        if values.shape != shape:
            raise InputError(f"{what}: {name!r} has shape {values.shape}, expected {shape}")
        if not np.isfinite(values).all():
            raise InputError(f"{what}: {name!r} must all be finite")
        arrays[name] = values
    if comparisons is None:
        comparisons = list(combinations(arrays, 2))
    for pair in comparisons:
        missing = [name for name in pair if name not in arrays]
        if len(pair) != 2 or missing:
            raise InputError(f"comparison {pair!r} must name two models of the {what.split(' (')[0]}; "
                             f"unknown: {missing}")
    return arrays, list(comparisons)


def _base_row(model_a: str, model_b: str, **extra) -> dict:
    return {"comparison": f"{model_a} vs {model_b}", "model_a": model_a, "model_b": model_b, **extra}


def _delong_row(base: dict, labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, level: float) -> dict:
    """An AUC row (DeLong's test of correlated AUCs); NaN estimates when a class is absent."""
    row = dict(base, metric="auc", test="DeLong", n=int(labels.size), only_a_correct=math.nan,
               only_b_correct=math.nan)
    if 0 < labels.sum() < labels.size:
        result = paired_delong_test(labels, scores_a, scores_b, level)
        row.update(estimate_a=result["auc_a"], estimate_b=result["auc_b"], difference=result["difference"],
                   ci_lo=result["ci_lo"], ci_hi=result["ci_hi"], statistic=result["z"], p=result["p"])
    return row


def _mcnemar_row(base: dict, metric: str, result: dict) -> dict:
    """A paired-proportion row (:func:`spinedx.stats.mcnemar.paired_proportions`)."""
    return dict(base, metric=metric, test="McNemar exact", n=result["n"], estimate_a=result["estimate_a"],
                estimate_b=result["estimate_b"], difference=result["difference"], ci_lo=result["ci_lo"],
                ci_hi=result["ci_hi"], statistic=math.nan, p=result["p"], only_a_correct=result["b"],
                only_b_correct=result["c"])


def multiclass_paired_comparison_table(labels, probs: Mapping[str, np.ndarray], classes: Sequence[str],
                                       comparisons: Sequence[tuple[str, str]] | None = None, *,
                                       metrics: Sequence[str] = MULTICLASS_METRICS, level: float = 0.95,
                                       adjust: str = "holm", family: str = "all") -> pd.DataFrame:
    """Compare N-class models pairwise on the same cases.

    ``labels``: the true class index (0 .. K-1) per case. ``probs``: model name -> (N, K)
    probabilities (columns in the order of ``classes``), rows in the order of ``labels``.
    The decision is the class of highest probability (ties: the earlier class,
    :func:`spinedx.stats.multiclass.argmax_decisions`). Rows (columns
    :data:`MULTICLASS_COLUMNS`), per pair: ``accuracy`` (class "all": each case right or
    wrong; exact McNemar, Newcombe interval), then per class ``auc`` (that class's
    probability against "is that class", DeLong) and ``sensitivity`` (the class's cases
    decided as that class, exact McNemar); a class absent from the cases gives NaN.
    ``adjust`` / ``family`` as :func:`paired_comparison_table` (``metric``: accuracy, AUC
    and sensitivity each its own family).
    """
    labels = np.asarray(labels)
    k = len(classes)
    if labels.ndim != 1 or not np.isin(labels, np.arange(k)).all():
        raise InputError(f"labels must be a 1-D sequence of class indices 0..{k - 1} ({list(classes)})")
    arrays, comparisons = _checked_models(probs, (labels.size, k), "probabilities (one row per case, one column per "
                                          "class)", comparisons, metrics, MULTICLASS_METRICS, family)
    rows = []
    for model_a, model_b in comparisons:
        decided_a, decided_b = argmax_decisions(arrays[model_a]), argmax_decisions(arrays[model_b])
        if "accuracy" in metrics:
            rows.append(_mcnemar_row(_base_row(model_a, model_b, **{"class": ALL_CLASSES}), "accuracy",
                                     paired_proportions(decided_a == labels, decided_b == labels, level)))
        for index, class_name in enumerate(classes):
            base = _base_row(model_a, model_b, **{"class": class_name})
            is_class = labels == index
            if "auc" in metrics:
                rows.append(_delong_row(base, is_class.astype(int), arrays[model_a][:, index],
                                        arrays[model_b][:, index], level))
            if "sensitivity" in metrics:
                rows.append(_mcnemar_row(base, "sensitivity", paired_proportions(
                    decided_a[is_class] == index, decided_b[is_class] == index, level)))
    return adjust_family(pd.DataFrame(rows).reindex(columns=MULTICLASS_COLUMNS), adjust, family)


def adjust_family(table: pd.DataFrame, adjust: str = "holm", family: str = "all", label: str = "") -> pd.DataFrame:
    """Fill ``p_adjusted`` and ``adjustment`` of a comparison table (in place; returned):
    ``family="all"`` adjusts over every row, ``"metric"`` within each metric. ``label``
    names the family in ``adjustment`` (e.g. "of cohort external")."""
    if family not in ("all", "metric"):
        raise InputError(f"family must be 'all' or 'metric', got {family!r}")
    scope = "all rows" if family == "all" else "within metric"
    table["adjustment"] = f"{adjust} ({scope}{' ' + label if label else ''})"
    if family == "all":
        table["p_adjusted"] = adjust_pvalues(table["p"].to_numpy(float), adjust)
    else:
        for _, index in table.groupby("metric", sort=False).groups.items():
            table.loc[index, "p_adjusted"] = adjust_pvalues(table.loc[index, "p"].to_numpy(float), adjust)
    return table


# --- clustered units (images of a patient) --------------------------------------------

#: ``test`` of a row of :func:`cluster_bootstrap_comparison_table`.
CLUSTER_BOOTSTRAP_TEST = "patient bootstrap"


def _weighted_auc(is_positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    """Mann-Whitney AUC with unit weights (a unit drawn twice counts twice; ties count 1/2)."""
    positive, negative = is_positive & (weights > 0), ~is_positive & (weights > 0)
    if not positive.any() or not negative.any():
        return math.nan
    order = np.argsort(scores[negative], kind="stable")
    negative_scores, negative_weights = scores[negative][order], weights[negative][order]
    cumulative = np.concatenate([[0.0], np.cumsum(negative_weights)])
    below = cumulative[np.searchsorted(negative_scores, scores[positive], side="left")]
    up_to = cumulative[np.searchsorted(negative_scores, scores[positive], side="right")]
    wins = (weights[positive] * (below + 0.5 * (up_to - below))).sum()
    return float(wins / (weights[positive].sum() * negative_weights.sum()))


def _weighted_metrics(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, k: int) -> list[float]:
    """[accuracy, then per class AUC and sensitivity] of the argmax decisions, units weighted."""
    decided = argmax_decisions(probs)
    values = [float((weights * (decided == labels)).sum() / weights.sum())]
    for index in range(k):
        is_class = labels == index
        total = (weights * is_class).sum()
        values += [_weighted_auc(is_class, probs[:, index], weights),
                   float((weights * (is_class & (decided == index))).sum() / total) if total > 0 else math.nan]
    return values


def cluster_bootstrap_comparison_table(model_a: str, labels_a, probs_a, clusters_a, model_b: str, labels_b,
                                       probs_b, clusters_b, classes: Sequence[str], *, n_boot: int, seed: int,
                                       level: float = 0.95) -> pd.DataFrame:
    """Compare two N-class models whose units (images) are clustered in patients (dogs), on
    the patients both scored; the two may score different units of a patient (e.g. the
    images of two sequences). Rows and columns as :func:`multiclass_paired_comparison_table`
    (accuracy, per class one-vs-rest AUC and sensitivity; ``n`` the units of model_a);
    p-values not adjusted (``p_adjusted`` NaN).

    Units of one patient are correlated, so neither McNemar's test nor DeLong's is valid
    on them: the difference model_a - model_b is bootstrapped over patients. Each replicate
    draws the common patients (first-appearance order in model_a's rows) with replacement,
    as many as there are (``numpy.random.default_rng(seed).integers``), and weighs each
    unit by its patient's number of draws, for both models (so the pairing within a patient
    is kept). Interval: percentile of the replicate differences (replicates where a metric
    is undefined left out); p two-sided: ``min(1, 2 * min((1 + #{d* <= 0}) / (B + 1),
    (1 + #{d* >= 0}) / (B + 1)))`` over the B defined replicates.
    """
    k = len(classes)
    labels_a, labels_b = np.asarray(labels_a, dtype=int), np.asarray(labels_b, dtype=int)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    clusters_a, clusters_b = np.asarray(clusters_a), np.asarray(clusters_b)
    for labels, probs, clusters, name in ((labels_a, probs_a, clusters_a, model_a),
                                          (labels_b, probs_b, clusters_b, model_b)):
        if probs.shape != (labels.size, k) or clusters.shape != labels.shape or not np.isin(labels, np.arange(k)).all():
            raise InputError(f"{name}: labels (0..{k - 1}), probabilities (one column per class of {list(classes)}) "
                             "and patients must have one row per unit")
    common = [c for c in dict.fromkeys(clusters_a.tolist()) if c in set(clusters_b.tolist())]
    keep_a, keep_b = np.isin(clusters_a, common), np.isin(clusters_b, common)
    labels_a, probs_a, clusters_a = labels_a[keep_a], probs_a[keep_a], clusters_a[keep_a]
    labels_b, probs_b, clusters_b = labels_b[keep_b], probs_b[keep_b], clusters_b[keep_b]
    position = {c: i for i, c in enumerate(common)}
    index_a = np.array([position[c] for c in clusters_a.tolist()], dtype=int)
    index_b = np.array([position[c] for c in clusters_b.tolist()], dtype=int)
    names = ["accuracy", *(m for _ in range(k) for m in ("auc", "sensitivity"))]
    row_classes = [ALL_CLASSES, *(c for c in classes for _ in range(2))]
    estimate_a = _weighted_metrics(labels_a, probs_a, np.ones(labels_a.size), k) if common else [math.nan] * len(names)
    estimate_b = _weighted_metrics(labels_b, probs_b, np.ones(labels_b.size), k) if common else [math.nan] * len(names)
    replicates = np.full((n_boot, len(names)), math.nan)
    if common:
        rng = np.random.default_rng(seed)
        for r, draw in enumerate(rng.integers(0, len(common), size=(n_boot, len(common)))):
            counts = np.bincount(draw, minlength=len(common)).astype(float)
            replicates[r] = (np.array(_weighted_metrics(labels_a, probs_a, counts[index_a], k))
                             - np.array(_weighted_metrics(labels_b, probs_b, counts[index_b], k)))
    tail = (1 - level) / 2
    rows = []
    for j, (metric, class_name) in enumerate(zip(names, row_classes)):
        defined = replicates[:, j][np.isfinite(replicates[:, j])]
        difference = estimate_a[j] - estimate_b[j]
        row = dict(_base_row(model_a, model_b, **{"class": class_name}), metric=metric,
                   test=f"{CLUSTER_BOOTSTRAP_TEST} (percentile, {n_boot} replicates)", n=int(labels_a.size),
                   estimate_a=estimate_a[j], estimate_b=estimate_b[j], difference=difference,
                   ci_lo=math.nan, ci_hi=math.nan, statistic=math.nan, p=math.nan,
                   only_a_correct=math.nan, only_b_correct=math.nan)
        if defined.size and np.isfinite(difference):
            lo, hi = np.percentile(defined, [100 * tail, 100 * (1 - tail)])
            below = (1 + (defined <= 0).sum()) / (defined.size + 1)
            above = (1 + (defined >= 0).sum()) / (defined.size + 1)
            row.update(ci_lo=float(lo), ci_hi=float(hi), p=float(min(1.0, 2 * min(below, above))))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=MULTICLASS_COLUMNS)
