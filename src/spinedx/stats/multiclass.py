"""Diagnostic-accuracy metrics for N classes, with patient-level bootstrap intervals.

Inputs
------
Each row is one image or one case. ``labels`` holds its true class as an integer
0..N-1 in the order of ``class_names``; ``probs`` is the (n, N) matrix of class
probabilities (column k is ``prob_<class k>``); ``decisions`` holds the decided class.
Give ``probs``, ``decisions`` or both: decisions default to the argmax of ``probs``, and
AUCs need ``probs`` (they are NaN for decisions alone, e.g. a reader's calls).
``clusters`` gives each row's patient.

Decision rule
-------------
The decided class is the argmax of the probability row; on a tie the earlier class (the
lower index, i.e. earlier in the configured class order) wins, which is numpy's argmax
rule. Binary studies keep their threshold on the positive class and do not use this
module's decisions.

Definitions (class k against the rest, "one-vs-rest")
-----------------------------------------------------
tp: rows of class k decided k; fp: rows of another class decided k; fn: rows of class k
decided otherwise; tn: all other rows.

* sensitivity = tp / (tp + fn) (recall): NaN when class k is absent from the truth;
* specificity = tn / (tn + fp): NaN when every row is of class k;
* PPV = tp / (tp + fp) (precision): NaN when no row is decided k;
* NPV = tn / (tn + fn): NaN when every row is decided k;
* F1 = 2 tp / (2 tp + fp + fn): NaN only when class k is absent from both the truth and
  the decisions; 0 when it is in one of them only (e.g. decided but never true);
* AUC: Mann-Whitney AUC of ``prob_k``, rows of class k against all others, ties count
  one half: NaN when class k is absent from the truth or is the only class present;
* micro-accuracy = (sum of the diagonal) / n (for single-label data it equals the
  micro-averaged precision, recall and F1);
* macro-F1: unweighted mean of the per-class F1 over the classes whose F1 is defined;
* macro-AUC: unweighted mean of the per-class AUC over the classes whose AUC is defined
  (present in the truth and not alone);
* macro sensitivity and macro specificity: unweighted means of the per-class (one-vs-rest)
  sensitivity and specificity over the classes where each is defined (macro sensitivity
  is scikit-learn's ``balanced_accuracy_score`` and ``recall_score(average="macro")``);
* Cohen's kappa = 1 - sum(w * O) / sum(w * E), with O the observed confusion matrix, E
  the outer product of its margins divided by n, and w = 1 - I (unweighted, Cohen 1960),
  w = |i - j| (linear) or (i - j)^2 (quadratic; only meaningful for ordered classes):
  NaN when sum(w * E) = 0 (e.g. truth and decisions all of one class).

These equal scikit-learn's ``precision_recall_fscore_support(labels=range(N),
zero_division=nan)``, ``f1_score(average="macro", zero_division=nan)``,
``roc_auc_score(multi_class="ovr", average="macro")`` (defined there only when every class
is present), ``cohen_kappa_score`` and ``accuracy_score``; NaN replaces scikit-learn's
errors and warnings so that a cohort missing a class still gives a complete table.

Per pathology against the reference class
-----------------------------------------
For image-labelled studies with a reference class (e.g. "unremarkable"),
:func:`reference_class_table` evaluates each other class p on the rows whose truth is p
or the reference class only: the one-vs-rest 2x2 of p restricted to those rows
(sensitivity: rows of p decided p; specificity: reference rows not decided p), and the
AUC of ``prob_p`` on them. A reference row decided as another pathology q counts as a
true negative for p: it is a false positive in q's row.

Intervals
---------
Percentile intervals from a patient-level (cluster) bootstrap: a replicate draws
patients with replacement and takes all their rows (a patient drawn twice counts twice),
because rows of one patient are correlated. ``stratify`` says how patients are drawn:

* ``"none"``: from one pool. Right when the patients are a cohort (consecutive
  patients), whose class mix is itself random: PPV, NPV, F1, accuracy and kappa depend
  on that mix, and their intervals must carry its variability. It also serves labels
  that belong to images, where a patient has rows of several classes. A rare class can
  be missing from some replicates; those replicates are left out of that class's
  metrics (whose intervals are then conditional on the class being present), and
  ``replicates_with_class`` reports how many replicates held it.
* ``"class"``: each class's patients drawn separately, as many as it holds (the binary
  tables' rule). Right when the design fixed the class counts (case-control selection,
  e.g. 34 + 34 patients), and every class is then present in every replicate. It needs
  labels that belong to cases (an error names patients with rows of several classes).
  In a cohort it drops the class-mix variability and its intervals are too narrow:
  on the coverage test's population (400 patients, 400 replicates, 1000 repetitions)
  F1 covered 0.906-0.938 stratified against 0.944-0.953 unstratified, sensitivity
  alike (0.936-0.944 against 0.940-0.955).
* one value per row (constant within a patient): strata chosen by the caller, e.g. the
  most severe class under a severity order the study declares. No such order is built
  in: "most severe" is a clinical choice, and strata of patients sharing one set of
  classes fragment into strata of a single patient, which never vary between
  replicates and make intervals too narrow.

With ``proportion_intervals="wilson"`` the proportions (sensitivity, specificity, PPV,
NPV, micro-accuracy) get Wilson score intervals instead: the natural closed form for
independent rows (one row per patient), close to nominal coverage also near 0 and 1 and
the binary tables' choice, but blind to the correlation of a patient's images. F1, AUC, macro-F1, macro-AUC and kappa always get
bootstrap intervals. Reproducible for a given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from spinedx.errors import InputError

# Binary tools reused here (one place, so that they can be repointed to spinedx.stats.binary).
from spinedx.stats.binary import roc_auc, wilson_interval

__all__ = [
    "CONFUSION_METRICS",
    "KAPPA_WEIGHTS",
    "OVERALL_COLUMNS",
    "PER_CLASS_COLUMNS",
    "REFERENCE_COLUMNS",
    "argmax_decisions",
    "case_bootstrap_weights",
    "cohen_kappa",
    "confusion_metrics",
    "confusion_matrix",
    "confusion_table",
    "multiclass_tables",
    "one_vs_rest_auc",
    "percentile_interval",
    "reference_class_table",
]

#: Accepted ``kappa_weights``: None (unweighted), "linear", "quadratic".
KAPPA_WEIGHTS = (None, "linear", "quadratic")

#: Probability rows must sum to 1 within this tolerance: a larger gap means a missing or
#: mislabelled class column, not rounding (float32 softmax and CSV round trips stay
#: below 1e-6).
PROB_SUM_TOLERANCE = 1e-4

_PROPORTION_INTERVALS = ("wilson", "bootstrap")


def _with_interval(*names: str) -> tuple[str, ...]:
    return tuple(column for name in names for column in (name, f"{name}_lo", f"{name}_hi"))


#: Columns of the ``per_class`` table of :func:`multiclass_tables`, in output order.
PER_CLASS_COLUMNS: tuple[str, ...] = (
    "class", "n_true", "n_decided", "n_patients", "tp", "fp", "fn", "tn",
    *_with_interval("sensitivity", "specificity", "ppv", "npv", "f1", "auc"),
    "replicates_with_class",
)

#: Columns of the ``overall`` table (one row) of :func:`multiclass_tables`.
OVERALL_COLUMNS: tuple[str, ...] = (
    "n", "n_patients", "n_classes_present",
    *_with_interval("accuracy", "macro_f1", "macro_auc", "kappa"),
    "kappa_weights", "n_boot", "stratification", "proportion_intervals",
    *_with_interval("macro_sensitivity", "macro_specificity"),
)

#: Metrics of :func:`confusion_metrics`.
CONFUSION_METRICS: tuple[str, ...] = ("accuracy", "macro_sensitivity", "macro_specificity", "macro_f1", "kappa")

#: Columns of :func:`reference_class_table`, in output order.
REFERENCE_COLUMNS: tuple[str, ...] = (
    "pathology", "reference", "n_pathology", "n_reference", "n_patients",
    "tp", "fn", "fp", "tn",
    *_with_interval("sensitivity", "specificity", "auc"),
    "replicates_with_class",
)

#: Columns of :func:`confusion_table`.
CONFUSION_COLUMNS: tuple[str, ...] = ("truth", "decision", "count", "row_percent")


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(name) for name in class_names)
    if len(names) < 2:
        raise InputError(f"class_names needs at least two classes, got {list(names)}")
    if len(set(names)) != len(names):
        raise InputError(f"class_names must be unique, got {list(names)}")
    return names


def _class_indices(values, n_classes: int, name: str) -> np.ndarray:
    """``values`` as an int64 1-D array of class indices 0..n_classes-1."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        array = array.astype(np.int64)  # e.g. integer labels read from a CSV as floats
    if array.size and array.dtype.kind not in "iu":
        raise InputError(f"{name} must be integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    outside = (array < 0) | (array >= n_classes)
    if outside.any():
        raise InputError(
            f"{name} must be class indices 0..{n_classes - 1}, found {sorted(set(array[outside]))[:5]}"
        )
    return array


def _probability_matrix(probs, n_rows: int, n_classes: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (n_rows, n_classes):
        raise InputError(f"probs must have shape ({n_rows}, {n_classes}), got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise InputError("probs must hold finite probabilities in [0, 1]")
    gap = np.abs(probs.sum(axis=1) - 1)
    if (gap > PROB_SUM_TOLERANCE).any():
        row = int(np.argmax(gap))
        raise InputError(
            f"probability rows must sum to 1 (one column per class); row {row} sums to "
            f"{probs[row].sum():.6g}: is a class column missing?"
        )
    return probs


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")


def _check_n_boot(n_boot) -> int:
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    return int(n_boot)


@dataclass(frozen=True)
class _Rows:
    """Validated inputs of one evaluation."""

    labels: np.ndarray  # (n,) int64
    decisions: np.ndarray  # (n,) int64
    probs: np.ndarray | None  # (n, N) float64
    cluster_codes: np.ndarray  # (n,) int64, 0..n_clusters-1 in order of first appearance
    n_clusters: int
    n_classes: int
    cluster_ids: np.ndarray  # (n_clusters,) the patient ids, by code


def _rows(labels, clusters, n_classes, probs, decisions) -> _Rows:
    labels = _class_indices(labels, n_classes, "labels")
    if probs is None and decisions is None:
        raise InputError("give probs, decisions or both")
    if probs is not None:
        probs = _probability_matrix(probs, labels.size, n_classes)
    if decisions is None:
        decisions = argmax_decisions(probs)
    decisions = _class_indices(decisions, n_classes, "decisions")
    if decisions.shape != labels.shape:
        raise InputError(f"decisions must have the length of labels ({labels.size}), got {decisions.size}")
    clusters = pd.Series(np.asarray(clusters, dtype=object))
    if clusters.shape != labels.shape:
        raise InputError(f"clusters must have the length of labels ({labels.size}), got {clusters.size}")
    if clusters.isna().any():
        raise InputError("clusters (patient ids) must not be missing")
    codes, uniques = pd.factorize(clusters)
    return _Rows(labels, decisions, probs, codes.astype(np.int64), len(uniques), n_classes,
                 np.asarray(uniques, dtype=object))


# ---------------------------------------------------------------------------------------
# Point estimates
# ---------------------------------------------------------------------------------------


def argmax_decisions(probs) -> np.ndarray:
    """The decided class of each probability row: the argmax, ties to the earlier class."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InputError(f"probs must be an (n, N >= 2) matrix, got shape {probs.shape}")
    if probs.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(probs, axis=1).astype(np.int64)  # numpy returns the first maximum


def confusion_matrix(labels, decisions, n_classes: int) -> np.ndarray:
    """N x N counts: row i = true class i, column j = decided class j (int64)."""
    labels = _class_indices(labels, n_classes, "labels")
    decisions = _class_indices(decisions, n_classes, "decisions")
    if decisions.shape != labels.shape:
        raise InputError("labels and decisions must have equal length")
    return np.bincount(labels * n_classes + decisions, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _kappa_weight_matrix(n_classes: int, weights: str | None) -> np.ndarray:
    if weights not in KAPPA_WEIGHTS:
        raise InputError(f"kappa weights must be one of {KAPPA_WEIGHTS}, got {weights!r}")
    distance = np.abs(np.subtract.outer(np.arange(n_classes), np.arange(n_classes))).astype(float)
    if weights == "linear":
        return distance
    if weights == "quadratic":
        return distance**2
    return (distance > 0).astype(float)


def _kappa_from_confusions(confusions: np.ndarray, weight_matrix: np.ndarray) -> np.ndarray:
    """Kappa of each (…, N, N) confusion matrix; NaN where sum(w * E) == 0.

    Computed as 1 - n * sum(w * O) / sum(w * r c^T) (r, c the margins), which stays in
    integer arithmetic for integer counts, so "undefined" is an exact zero test.
    """
    n = confusions.sum(axis=(-2, -1))
    observed = np.einsum("...ij,ij->...", confusions, weight_matrix)
    expected = np.einsum("...i,...j,ij->...", confusions.sum(-1), confusions.sum(-2), weight_matrix)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - n * observed / expected, np.nan)


def confusion_metrics(confusions, kappa_weights: str | None = None) -> dict[str, np.ndarray]:
    """Micro-accuracy, macro sensitivity, macro specificity, macro-F1 (one-vs-rest, means
    over the classes where each is defined), Cohen's kappa, and the per-class sensitivity
    (key ``sensitivity``, last axis = class) of each (..., N, N) confusion matrix (rows:
    truth, columns: decision; counts or bootstrap-weighted counts)."""
    confusions = np.asarray(confusions, dtype=float)
    n = confusions.sum(axis=(-2, -1))
    tp = np.diagonal(confusions, axis1=-2, axis2=-1)
    n_true = confusions.sum(axis=-1)
    n_decided = confusions.sum(axis=-2)
    fp = n_decided - tp
    tn = n[..., None] - n_true - fp
    sensitivity = _ratio(tp, n_true)
    return {
        "accuracy": _ratio(tp.sum(axis=-1), n),
        "macro_sensitivity": _mean_over_defined(sensitivity),
        "macro_specificity": _mean_over_defined(_ratio(tn, tn + fp)),
        "macro_f1": _mean_over_defined(_ratio(2 * tp, 2 * tp + fp + (n_true - tp))),
        "sensitivity": sensitivity,
        "kappa": _kappa_from_confusions(confusions, _kappa_weight_matrix(confusions.shape[-1], kappa_weights)),
    }


def cohen_kappa(confusion, weights: str | None = None) -> float:
    """Cohen's kappa of an N x N confusion matrix (see the module docstring); NaN if undefined."""
    confusion = np.asarray(confusion, dtype=float)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise InputError(f"confusion must be square, got shape {confusion.shape}")
    return float(_kappa_from_confusions(confusion, _kappa_weight_matrix(len(confusion), weights)))


def one_vs_rest_auc(labels, probs) -> np.ndarray:
    """AUC of ``probs[:, k]`` for class k against the rest, per class; NaN where undefined."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2:
        raise InputError(f"probs must be an (n, N) matrix, got shape {probs.shape}")
    labels = _class_indices(labels, probs.shape[1], "labels")
    probs = _probability_matrix(probs, labels.size, probs.shape[1])
    return np.array([roc_auc(labels == k, probs[:, k]) for k in range(probs.shape[1])])


def confusion_table(confusion, class_names: Sequence[str]) -> pd.DataFrame:
    """Long-format N x N confusion matrix: ``truth, decision, count, row_percent``.

    ``row_percent`` is 100 * count / (rows of that true class): the share of each true
    class decided as each class (its diagonal is the per-class sensitivity); NaN for a
    class absent from the truth. Rows: truth in class order, then decision in class order.
    """
    names = _check_class_names(class_names)
    confusion = np.asarray(confusion)
    if confusion.shape != (len(names), len(names)):
        raise InputError(f"confusion must be {len(names)} x {len(names)}, got {confusion.shape}")
    row_totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        row_percent = np.where(row_totals > 0, 100 * confusion / row_totals, np.nan)
    truth, decision = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    return pd.DataFrame({
        "truth": np.array(names, dtype=object)[truth.ravel()],
        "decision": np.array(names, dtype=object)[decision.ravel()],
        "count": confusion.ravel().astype(np.int64),
        "row_percent": row_percent.ravel(),
    }, columns=list(CONFUSION_COLUMNS))


# ---------------------------------------------------------------------------------------
# Cluster bootstrap engine
# ---------------------------------------------------------------------------------------

# Rows of (positive row x cluster) comparisons handled at once by _cluster_wins: bounds
# its memory (three int64 arrays of this many elements) on large image-level cohorts.
_WINS_CHUNK_ELEMENTS = 2_000_000


def _cluster_wins(pos_scores, pos_codes, neg_scores, neg_codes, n_clusters) -> np.ndarray:
    """Mann-Whitney counts between clusters: ``wins[a, b]`` sums, over positive rows of
    cluster a and negative rows of cluster b, 1 when the positive row scores higher and
    1/2 on a tie.

    A replicate drawing cluster i w_i times has AUC = w' wins w / ((w'pos)(w'neg)), so
    the per-replicate work scales with patients, not images. Computed without an
    image-by-image matrix: negative rows sorted by the key (cluster, dense score rank)
    give, for each positive row and cluster, the negatives below or tied as differences
    of binary searches.
    """
    wins = np.zeros((n_clusters, n_clusters))
    if pos_scores.size == 0 or neg_scores.size == 0:
        return wins
    _, dense_rank = np.unique(np.concatenate([pos_scores, neg_scores]), return_inverse=True)
    pos_rank, neg_rank = dense_rank[: pos_scores.size], dense_rank[pos_scores.size:]
    n_ranks = int(dense_rank.max()) + 1
    neg_keys = np.sort(neg_codes * n_ranks + neg_rank)
    cluster_start = np.arange(n_clusters, dtype=np.int64) * n_ranks
    first_of_cluster = np.searchsorted(neg_keys, cluster_start)
    step = max(1, _WINS_CHUNK_ELEMENTS // n_clusters)
    for begin in range(0, pos_scores.size, step):
        query = cluster_start[None, :] + pos_rank[begin:begin + step, None]
        below = np.searchsorted(neg_keys, query, side="left")
        up_to = np.searchsorted(neg_keys, query, side="right")
        np.add.at(wins, pos_codes[begin:begin + step], (below + up_to) / 2 - first_of_cluster)
    return wins


@dataclass(frozen=True)
class _BinaryProblem:
    """Per-cluster sufficient statistics of one positive-vs-negative comparison.

    Rows outside both groups (e.g. other pathologies in a pathology-vs-reference
    comparison) are simply not counted.
    """

    tp: np.ndarray  # (n_clusters,) positive rows called positive
    fn: np.ndarray
    fp: np.ndarray  # negative rows called positive
    tn: np.ndarray
    wins: np.ndarray | None  # (n_clusters, n_clusters), None without scores

    @classmethod
    def build(cls, rows: _Rows, is_pos, is_neg, calls, scores) -> _BinaryProblem:
        def per_cluster(mask):
            return np.bincount(rows.cluster_codes[mask], minlength=rows.n_clusters).astype(float)

        wins = None
        if scores is not None:
            wins = _cluster_wins(scores[is_pos], rows.cluster_codes[is_pos],
                                 scores[is_neg], rows.cluster_codes[is_neg], rows.n_clusters)
        return cls(per_cluster(is_pos & calls), per_cluster(is_pos & ~calls),
                   per_cluster(is_neg & calls), per_cluster(is_neg & ~calls), wins)

    def replicate(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Counts, proportions and AUC for cluster multiplicities ``weights`` (B, n_clusters)."""
        tp, fn, fp, tn = (weights @ counts for counts in (self.tp, self.fn, self.fp, self.tn))
        result = {
            "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        if self.wins is None:
            result["auc"] = np.full(len(weights), np.nan)
        else:
            wins = ((weights @ self.wins) * weights).sum(axis=1)
            result["auc"] = _ratio(wins, (tp + fn) * (fp + tn))
        return result


def _one_blas_thread():
    """Run the replicates' matrix products on one BLAS thread. They are small (replicates x
    patients); on a machine shared with other jobs, BLAS threads compete for the cores and
    made 2000 replicates 2-4x slower here (0.53 s against 0.21 s for 627 images)."""
    return threadpool_limits(limits=1, user_api="blas")


def _ratio(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _mean_over_defined(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries; NaN where none is finite."""
    defined = np.isfinite(values)
    count = defined.sum(axis=-1)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _patient_strata(rows: _Rows, stratify) -> tuple[np.ndarray, str]:
    """One stratum code per cluster and the name of the rule (module docstring)."""
    if isinstance(stratify, str):
        if stratify == "none":
            return np.zeros(rows.n_clusters, dtype=np.int64), "none"
        if stratify != "class":
            raise InputError(f"stratify must be 'class', 'none' or one stratum per row, got {stratify!r}")
        lowest = np.full(rows.n_clusters, rows.n_classes)
        highest = np.full(rows.n_clusters, -1)
        np.minimum.at(lowest, rows.cluster_codes, rows.labels)
        np.maximum.at(highest, rows.cluster_codes, rows.labels)
        mixed = np.flatnonzero(lowest != highest)
        if mixed.size:
            raise InputError(
                f"stratify='class' needs one class per patient, but {mixed.size} patient(s) have "
                f"rows of several classes (e.g. {list(rows.cluster_ids[mixed[:5]])}): labels belong "
                "to images here; use stratify='none' or give strata"
            )
        return lowest, "class"
    strata = pd.Series(np.asarray(stratify, dtype=object))
    if strata.shape != rows.labels.shape:
        raise InputError(f"stratify must have the length of labels ({rows.labels.size}), got {strata.size}")
    codes = pd.factorize(strata, use_na_sentinel=False)[0]
    per_cluster = np.full(rows.n_clusters, -1)
    per_cluster[rows.cluster_codes] = codes
    if (per_cluster[rows.cluster_codes] != codes).any():
        raise InputError("strata must be constant within each patient (cluster)")
    return per_cluster, "given"


def _bootstrap_weights(strata: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_clusters) multiplicities: each stratum's patients drawn with replacement,
    as many as it holds (a replicate's data are the drawn patients' rows, repeated as
    often as drawn)."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, strata.size))
    replicate = np.arange(n_boot)[:, None]
    for stratum in np.unique(strata):  # sorted: the draw order, hence the result, is fixed
        members = np.flatnonzero(strata == stratum)
        drawn = rng.integers(0, members.size, size=(n_boot, members.size))
        counts = np.bincount((replicate * members.size + drawn).ravel(), minlength=n_boot * members.size)
        weights[:, members] = counts.reshape(n_boot, members.size)
    return weights


def case_bootstrap_weights(n_cases: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_cases) multiplicities of an unstratified bootstrap over cases (each case
    one cluster), the draws :func:`multiclass_tables` makes with ``stratify="none"``."""
    return _bootstrap_weights(np.zeros(int(n_cases), dtype=np.int64), _check_n_boot(n_boot), seed)


def percentile_interval(values, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over bootstrap replicates (axis 0), leaving out undefined (NaN)
    replicates; NaN where none is defined."""
    _check_level(level)
    return _percentile_interval(values, level)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over replicates (axis 0; numpy's linear interpolation), leaving
    out replicates where the metric is undefined (NaN); NaN when none is defined."""
    tail = 100 * (1 - level) / 2
    values = np.asarray(values, dtype=float)
    if values.shape[0] == 0:  # no replicates
        return np.full(values.shape[1:], np.nan), np.full(values.shape[1:], np.nan)
    columns = values.reshape(values.shape[0], -1)
    lo = np.full(columns.shape[1], np.nan)
    hi = np.full(columns.shape[1], np.nan)
    defined = np.isfinite(columns)
    complete = defined.all(axis=0)
    if complete.any():  # the common case, vectorised (numpy's nanpercentile loops per column)
        lo[complete], hi[complete] = np.percentile(columns[:, complete], [tail, 100 - tail], axis=0)
    for column in np.flatnonzero(~complete & defined.any(axis=0)):
        lo[column], hi[column] = np.percentile(columns[defined[:, column], column], [tail, 100 - tail])
    return lo.reshape(values.shape[1:]), hi.reshape(values.shape[1:])


def _stack(results: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    """(B, K) array of ``key`` over K binary problems."""
    return np.stack([result[key] for result in results], axis=-1)


def _validate_options(n_boot, level, proportion_intervals) -> int:
    _check_level(level)
    if proportion_intervals not in _PROPORTION_INTERVALS:
        raise InputError(
            f"proportion_intervals must be one of {_PROPORTION_INTERVALS}, got {proportion_intervals!r}"
        )
    return _check_n_boot(n_boot)


def _wilson_columns(successes, totals, level) -> tuple[np.ndarray, np.ndarray]:
    bounds = np.array([wilson_interval(int(s), int(n), level) for s, n in zip(successes, totals)])
    return bounds[:, 0], bounds[:, 1]


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def multiclass_tables(
    labels,
    clusters,
    class_names: Sequence[str],
    *,
    probs=None,
    decisions=None,
    n_boot: int,
    seed: int,
    level: float,
    proportion_intervals: str,
    stratify,
    kappa_weights: str | None = None,
) -> dict[str, pd.DataFrame]:
    """All N-class metrics of one group of predictions, with intervals.

    Returns ``per_class`` (one row per class, :data:`PER_CLASS_COLUMNS`), ``overall``
    (one row, :data:`OVERALL_COLUMNS`) and ``confusion`` (:func:`confusion_table`).
    Definitions, undefined values, decisions and interval rules: module docstring.
    ``proportion_intervals`` is "wilson" or "bootstrap"; ``kappa_weights`` None
    (unweighted), "linear" or "quadratic"; ``stratify`` "none", "class" or one stratum
    per row (constant within a patient). ``n_boot == 0`` gives NaN bootstrap bounds.
    Percentiles use numpy's linear interpolation.
    """
    names = _check_class_names(class_names)
    n_boot = _validate_options(n_boot, level, proportion_intervals)
    weight_matrix = _kappa_weight_matrix(len(names), kappa_weights)
    rows = _rows(labels, clusters, len(names), probs, decisions)
    n_classes = len(names)

    problems = [
        _BinaryProblem.build(rows, rows.labels == k, rows.labels != k, rows.decisions == k,
                             None if rows.probs is None else rows.probs[:, k])
        for k in range(n_classes)
    ]
    # Per-cluster confusion matrices: a replicate's confusion matrix is their weighted sum.
    cluster_confusion = np.zeros((rows.n_clusters, n_classes * n_classes))
    np.add.at(cluster_confusion, (rows.cluster_codes, rows.labels * n_classes + rows.decisions), 1)

    def replicate(weights: np.ndarray) -> dict[str, np.ndarray]:
        per_class = [problem.replicate(weights) for problem in problems]
        confusions = (weights @ cluster_confusion).reshape(len(weights), n_classes, n_classes)
        n = confusions.sum(axis=(1, 2))
        result = {key: _stack(per_class, key) for key in per_class[0]}
        result["n_true"] = result["tp"] + result["fn"]
        result["accuracy"] = _ratio(np.trace(confusions, axis1=1, axis2=2), n)
        result["macro_f1"] = _mean_over_defined(result["f1"])
        result["macro_auc"] = _mean_over_defined(result["auc"])
        result["kappa"] = _kappa_from_confusions(confusions, weight_matrix)
        result["macro_sensitivity"] = _mean_over_defined(result["sensitivity"])
        result["macro_specificity"] = _mean_over_defined(result["specificity"])
        return result

    strata_codes, stratification = _patient_strata(rows, stratify)
    with _one_blas_thread():
        boot = replicate(_bootstrap_weights(strata_codes, n_boot, seed))

    # Point estimates straight from the rows (the engine reproduces them at unit weights,
    # which the tests check), AUC by the binary Mann-Whitney tool.
    confusion = confusion_matrix(rows.labels, rows.decisions, n_classes)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = rows.labels.size - tp - fp - fn
    auc = (one_vs_rest_auc(rows.labels, rows.probs) if rows.probs is not None
           else np.full(n_classes, np.nan))
    point = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": auc,
    }
    proportion_counts = {
        "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp), "npv": (tn, tn + fn),
    }

    patients_with_class = np.zeros((rows.n_clusters, n_classes), dtype=bool)
    patients_with_class[rows.cluster_codes, rows.labels] = True
    per_class = {
        "class": list(names),
        "n_true": tp + fn,
        "n_decided": tp + fp,
        "n_patients": patients_with_class.sum(axis=0),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }
    for name, estimate in point.items():
        if proportion_intervals == "wilson" and name in proportion_counts:
            lo, hi = _wilson_columns(*proportion_counts[name], level)
        else:
            lo, hi = _percentile_interval(boot[name], level)
        per_class.update({name: estimate, f"{name}_lo": lo, f"{name}_hi": hi})
    per_class["replicates_with_class"] = (boot["n_true"] > 0).sum(axis=0)

    n = int(rows.labels.size)
    overall = {
        "n": n,
        "n_patients": rows.n_clusters,
        "n_classes_present": int((tp + fn > 0).sum()),
        "accuracy": float(_ratio(np.trace(confusion), n)),
        "macro_f1": float(_mean_over_defined(point["f1"])),
        "macro_auc": float(_mean_over_defined(auc)),
        "kappa": float(_kappa_from_confusions(confusion.astype(float), weight_matrix)),
        "macro_sensitivity": float(_mean_over_defined(point["sensitivity"])),
        "macro_specificity": float(_mean_over_defined(point["specificity"])),
    }
    for name in ("accuracy", "macro_f1", "macro_auc", "kappa", "macro_sensitivity", "macro_specificity"):
        if proportion_intervals == "wilson" and name == "accuracy":
            lo, hi = wilson_interval(int(np.trace(confusion)), n, level)
        else:
            lo, hi = (float(bound) for bound in _percentile_interval(boot[name], level))
        overall[f"{name}_lo"], overall[f"{name}_hi"] = lo, hi
    overall.update(kappa_weights=kappa_weights or "none", n_boot=n_boot,
                   stratification=stratification, proportion_intervals=proportion_intervals)

    return {
        "per_class": pd.DataFrame(per_class, columns=list(PER_CLASS_COLUMNS)),
        "overall": pd.DataFrame([overall], columns=list(OVERALL_COLUMNS)),
        "confusion": confusion_table(confusion, names),
    }


def reference_class_table(
    labels,
    clusters,
    class_names: Sequence[str],
    reference: str,
    *,
    probs=None,
    decisions=None,
    n_boot: int,
    seed: int,
    level: float,
    proportion_intervals: str,
    stratify,
) -> pd.DataFrame:
    """Each pathology against the reference class (module docstring), one row per class
    other than ``reference`` in class order (:data:`REFERENCE_COLUMNS`).

    Decisions are the N-class decisions (argmax over all classes unless given). All rows
    share one set of bootstrap draws of patients over the whole input (``stratify`` as
    in :func:`multiclass_tables`), so that the pathologies' intervals come from the same
    replicates; each replicate then evaluates the drawn rows of p and of the reference.
    """
    names = _check_class_names(class_names)
    if reference not in names:
        raise InputError(f"reference class {reference!r} is not one of the classes {list(names)}")
    n_boot = _validate_options(n_boot, level, proportion_intervals)
    rows = _rows(labels, clusters, len(names), probs, decisions)
    reference_index = names.index(reference)
    pathologies = [k for k in range(len(names)) if k != reference_index]
    is_reference = rows.labels == reference_index
    problems = [
        _BinaryProblem.build(rows, rows.labels == k, is_reference, rows.decisions == k,
                             None if rows.probs is None else rows.probs[:, k])
        for k in pathologies
    ]
    strata_codes, _ = _patient_strata(rows, stratify)
    weights = _bootstrap_weights(strata_codes, n_boot, seed)
    with _one_blas_thread():
        boot = [problem.replicate(weights) for problem in problems]

    table_rows = []
    for k, problem, replicates in zip(pathologies, problems, boot):
        tp, fn, fp, tn = (int(counts.sum()) for counts in (problem.tp, problem.fn, problem.fp, problem.tn))
        subset = (rows.labels == k) | is_reference
        auc = (roc_auc(rows.labels[subset] == k, rows.probs[subset, k])
               if rows.probs is not None else math.nan)
        row = {
            "pathology": names[k], "reference": reference,
            "n_pathology": tp + fn, "n_reference": fp + tn,
            "n_patients": int(np.unique(rows.cluster_codes[rows.labels == k]).size),
            "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "sensitivity": float(_ratio(tp, tp + fn)),
            "specificity": float(_ratio(tn, tn + fp)),
            "auc": auc,
        }
        for name, (successes, total) in (("sensitivity", (tp, tp + fn)), ("specificity", (tn, tn + fp))):
            if proportion_intervals == "wilson":
                row[f"{name}_lo"], row[f"{name}_hi"] = wilson_interval(successes, total, level)
            else:
                row[f"{name}_lo"], row[f"{name}_hi"] = (float(b) for b in _percentile_interval(replicates[name], level))
        row["auc_lo"], row["auc_hi"] = (float(b) for b in _percentile_interval(replicates["auc"], level))
        row["replicates_with_class"] = int((replicates["tp"] + replicates["fn"] > 0).sum())
        table_rows.append(row)
    return pd.DataFrame(table_rows, columns=list(REFERENCE_COLUMNS))
