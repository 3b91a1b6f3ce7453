"""Patient-level (cluster) bootstrap intervals of AUC and Cohen's kappa.

Images of one patient are correlated, so resampling images as if independent would
understate the uncertainty; patients (clusters) are resampled instead, stratified by
class so that every replicate contains both classes and AUC and kappa are always
defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.binary import check_level, kappa_of_counts, label_prob_arrays, positive_calls


@dataclass(frozen=True)
class _ClusterSummary:
    """Per-cluster sufficient statistics of AUC and kappa.

    A bootstrap replicate only changes how often each cluster is drawn, so AUC and the
    2x2 counts of any replicate are weighted sums of these per-cluster quantities: the
    work per replicate scales with the number of patients, not of images.

    ``wins[a, b]`` is the Mann-Whitney count of positive cluster ``a`` against negative
    cluster ``b``: over all image pairs, 1 when the positive image scores higher, 1/2 on
    a tie. Clusters are in order of first appearance within their class.
    """

    pos_sizes: np.ndarray  # images per positive cluster
    neg_sizes: np.ndarray  # images per negative cluster
    wins: np.ndarray  # (n positive clusters, n negative clusters)
    tp: np.ndarray  # per positive cluster
    fn: np.ndarray  # per positive cluster
    fp: np.ndarray  # per negative cluster
    tn: np.ndarray  # per negative cluster

    def replicate(self, w_pos: np.ndarray, w_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AUC and kappa for cluster multiplicities ``w_pos`` (B, n_pos), ``w_neg`` (B, n_neg)."""
        w_pos = np.asarray(w_pos, dtype=float)
        w_neg = np.asarray(w_neg, dtype=float)
        pairs = (w_pos @ self.pos_sizes) * (w_neg @ self.neg_sizes)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = np.einsum("bi,ij,bj->b", w_pos, self.wins, w_neg) / pairs
        kappa = kappa_of_counts(w_pos @ self.tp, w_neg @ self.fp, w_pos @ self.fn, w_neg @ self.tn)
        return auc, kappa


def _summarise_clusters(labels, probs, clusters, threshold: float) -> _ClusterSummary:
    """Collapse image-level predictions into a :class:`_ClusterSummary`.

    Raises ValueError when a cluster holds images of both labels: stratified resampling
    needs each patient in exactly one class.
    """
    labels, probs = label_prob_arrays(labels, probs)
    clusters = np.asarray(clusters)
    if clusters.shape != labels.shape:
        raise InputError("clusters must have the same length as labels")
    cluster_code, cluster_ids = pd.factorize(clusters, use_na_sentinel=False)
    label_min = np.full(len(cluster_ids), 1)
    label_max = np.full(len(cluster_ids), 0)
    np.minimum.at(label_min, cluster_code, labels)
    np.maximum.at(label_max, cluster_code, labels)
    mixed = label_min != label_max
    if mixed.any():
        raise InputError(
            f"clusters must not mix labels; cluster(s) {list(cluster_ids[mixed][:5])} have both"
        )

    is_pos = labels == 1
    pos_code, pos_ids = pd.factorize(cluster_code[is_pos])
    neg_code, neg_ids = pd.factorize(cluster_code[~is_pos])
    n_pos_clusters, n_neg_clusters = len(pos_ids), len(neg_ids)
    positive_call = positive_calls(probs, threshold)

    # Mann-Whitney counts per (positive image, negative cluster) without an image-by-image
    # matrix: negative images are sorted by the key (cluster, dense rank of score), so
    # for each negative cluster the number of its images scoring below, or tying with, a
    # positive image is a difference of two binary searches.
    _, dense_rank = np.unique(probs, return_inverse=True)
    n_ranks = int(dense_rank.max()) + 1 if dense_rank.size else 1
    neg_keys = np.sort(neg_code * n_ranks + dense_rank[~is_pos])
    cluster_start = np.arange(n_neg_clusters) * n_ranks
    query = cluster_start[None, :] + dense_rank[is_pos][:, None]
    below = np.searchsorted(neg_keys, query, side="left")
    up_to = np.searchsorted(neg_keys, query, side="right")
    image_wins = (below + up_to) / 2 - np.searchsorted(neg_keys, cluster_start)[None, :]
    wins = np.zeros((n_pos_clusters, n_neg_clusters))
    np.add.at(wins, pos_code, image_wins)

    return _ClusterSummary(
        pos_sizes=np.bincount(pos_code, minlength=n_pos_clusters).astype(float),
        neg_sizes=np.bincount(neg_code, minlength=n_neg_clusters).astype(float),
        wins=wins,
        tp=np.bincount(pos_code, weights=positive_call[is_pos], minlength=n_pos_clusters),
        fn=np.bincount(pos_code, weights=~positive_call[is_pos], minlength=n_pos_clusters),
        fp=np.bincount(neg_code, weights=positive_call[~is_pos], minlength=n_neg_clusters),
        tn=np.bincount(neg_code, weights=~positive_call[~is_pos], minlength=n_neg_clusters),
    )


def bootstrap_intervals(
    labels,
    probs,
    clusters,
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile intervals of AUC and Cohen's kappa from a stratified cluster bootstrap.

    Each replicate draws, with replacement, as many positive patients as there are
    among the positive patients, and likewise for the negative ones, then takes all
    images of the drawn patients (a patient drawn twice counts twice). ``clusters`` gives
    each image's patient; a patient's images must share one label.

    Returns ``dict(auc_lo, auc_hi, kappa_lo, kappa_hi)``, all NaN when a class is absent
    (neither statistic then measures discrimination) or when ``n_boot == 0``.
    Reproducible for a given ``seed``.
    """
    check_level(level)
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    summary = _summarise_clusters(labels, probs, clusters, threshold)
    n_pos, n_neg = len(summary.pos_sizes), len(summary.neg_sizes)
    if n_boot == 0 or n_pos == 0 or n_neg == 0:
        return dict.fromkeys(("auc_lo", "auc_hi", "kappa_lo", "kappa_hi"), math.nan)

    rng = np.random.default_rng(seed)
    # Drawing n clusters uniformly with replacement is a multinomial draw of how often
    # each cluster appears; sampling the counts directly skips the index arrays.
    w_pos = rng.multinomial(n_pos, np.full(n_pos, 1 / n_pos), size=int(n_boot))
    w_neg = rng.multinomial(n_neg, np.full(n_neg, 1 / n_neg), size=int(n_boot))
    auc, kappa = summary.replicate(w_pos, w_neg)

    tail = 100 * (1 - level) / 2
    auc_lo, auc_hi = np.percentile(auc, [tail, 100 - tail])
    kappa_lo, kappa_hi = np.percentile(kappa, [tail, 100 - tail])
    return {
        "auc_lo": float(auc_lo),
        "auc_hi": float(auc_hi),
        "kappa_lo": float(kappa_lo),
        "kappa_hi": float(kappa_hi),
    }


#: Metrics of :func:`reader_mean_intervals`, in order.
READER_MEAN_METRICS = ("sensitivity", "specificity", "accuracy", "f1")


def reader_mean_intervals(truth, called, n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict[str, float]:
    """Mean over a group of readers of sensitivity, specificity, accuracy and F1 (of the
    positive class) of their decisions, with percentile intervals from a case bootstrap
    stratified by class, the readers held fixed (the group's readers, the case sample
    random: FRRC-like; an interval for new readers needs a random-reader analysis).

    ``truth``: 0/1 per case; ``called``: readers x cases, 1 = the reader called the case
    positive (every reader reads every case). Each replicate draws, from
    ``numpy.random.default_rng(seed)``, the negatives' then the positives' indices,
    ``rng.integers(0, n_stratum, size=(n_boot, n_stratum))`` each, and computes every
    reader's metrics on the drawn cases; the replicate's value is their mean.

    Returns ``{metric: estimate, metric_lo: ..., metric_hi: ...}`` for
    :data:`READER_MEAN_METRICS`; bounds NaN when ``n_boot == 0`` or a class is absent.
    """
    check_level(level)
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    truth = np.asarray(truth, dtype=int)
    called = np.atleast_2d(np.asarray(called, dtype=int))
    if called.shape[1] != truth.size:
        raise InputError(f"called has {called.shape[1]} cases per reader, truth {truth.size}")

    def metrics(weights: np.ndarray) -> dict[str, np.ndarray]:
        """Per replicate (rows of ``weights``: how often each case is drawn), reader means."""
        tp = weights @ (called * truth).T
        fn = weights @ ((1 - called) * truth).T
        fp = weights @ (called * (1 - truth)).T
        tn = weights @ ((1 - called) * (1 - truth)).T
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                      "accuracy": (tp + tn) / (tp + fn + fp + tn), "f1": 2 * tp / (2 * tp + fp + fn)}
        return {name: value.mean(axis=1) for name, value in values.items()}

    point = {name: float(value[0]) for name, value in metrics(np.ones((1, truth.size))).items()}
    result = {}
    strata = [np.flatnonzero(truth == 0), np.flatnonzero(truth == 1)]
    if n_boot and all(len(s) for s in strata):
        rng = np.random.default_rng(seed)
        weights = np.zeros((int(n_boot), truth.size))
        for members in strata:
            draws = members[rng.integers(0, members.size, size=(int(n_boot), members.size))]
            np.add.at(weights, (np.arange(int(n_boot))[:, None], draws), 1)
        replicates = metrics(weights)
        tail = 100 * (1 - level) / 2
        bounds = {name: np.nanpercentile(value, [tail, 100 - tail]) for name, value in replicates.items()}
    else:
        bounds = {name: (math.nan, math.nan) for name in READER_MEAN_METRICS}
    for name in READER_MEAN_METRICS:
        result[name] = point[name]
        result[f"{name}_lo"], result[f"{name}_hi"] = (float(b) for b in bounds[name])
    return result
