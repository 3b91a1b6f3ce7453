"""Evaluation stage: diagnostic-accuracy metrics and the study's tables.

Schwannoma is the positive class (label 1), ependymoma the negative class (label 0).
Predictions are probabilities of the positive class, and a decision is positive when
``prob > threshold`` (strictly greater, so a probability equal to the threshold is
negative).

Reported per group of predictions:

* the 2x2 counts, sensitivity, specificity and accuracy with Wilson score intervals
  (closed form, exact to the study's printed digits from integer counts);
* Cohen's kappa of the 2x2 and the ROC AUC (Mann-Whitney, ties count one half), each
  with a percentile interval from a patient-level bootstrap. Images of one patient are
  correlated, so resampling images as if independent would understate the uncertainty;
  patients (clusters) are resampled instead, stratified by class so that every
  replicate contains both classes and AUC and kappa are always defined.

Undefined quantities (for example sensitivity without positive cases, or AUC with a
single class) are NaN rather than errors, so that small or partial cohorts still give
a complete table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import write_csv

__all__ = [
    "bootstrap_intervals",
    "build_tables",
    "confusion_counts",
    "fold_2x2_table",
    "metrics_from_counts",
    "metrics_table",
    "roc_auc",
    "wilson_interval",
    "write_tables",
]

#: Settings of :func:`build_tables` and the values used when a key is absent (they
#: match the defaults of the config schema: ``decision.threshold`` and ``evaluation.*``).
DEFAULT_SETTINGS: dict[str, float | int] = {
    "threshold": 0.5,
    "bootstrap_replicates": 2000,
    "seed": 0,
    "ci_level": 0.95,
}

#: Columns of :func:`metrics_table` after the group columns, in output order.
METRIC_COLUMNS: tuple[str, ...] = (
    "n_pos", "n_neg", "tp", "fp", "fn", "tn",
    "sensitivity", "sensitivity_lo", "sensitivity_hi",
    "specificity", "specificity_lo", "specificity_hi",
    "accuracy", "accuracy_lo", "accuracy_hi",
    "auc", "auc_lo", "auc_hi",
    "kappa", "kappa_lo", "kappa_hi",
    "n_patients",
)

#: Columns of :func:`fold_2x2_table`, in output order.
FOLD_2X2_COLUMNS: tuple[str, ...] = (
    "backbone", "input", "fold", "n_pos", "n_neg", "tp", "fp", "fn", "tn",
    "sensitivity", "specificity",
)

#: Columns that :func:`build_tables` reads from each input (other columns are ignored).
IMAGE_PREDICTION_COLUMNS: tuple[str, ...] = (
    "backbone", "sequence", "patient_id", "cohort", "label", "model", "prob",
)
CASE_PREDICTION_COLUMNS: tuple[str, ...] = (
    "backbone", "input", "patient_id", "cohort", "label", "model", "prob",
)

# (cohort, model) whose predictions each table evaluates: the external cohort is scored
# by the ensemble of fold models, the internal cohort by its out-of-fold predictions.
_EXTERNAL_ENSEMBLE = ("external", "ensemble")
_INTERNAL_OOF = ("internal", "oof")


# ---------------------------------------------------------------------------------------
# Point estimates
# ---------------------------------------------------------------------------------------


def _as_label_prob_arrays(labels, probs) -> tuple[np.ndarray, np.ndarray]:
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
    labels, probs = _as_label_prob_arrays(labels, probs)
    positive_call = positive_calls(probs, threshold)
    is_positive = labels == 1
    return {
        "tp": int(np.sum(positive_call & is_positive)),
        "fp": int(np.sum(positive_call & ~is_positive)),
        "fn": int(np.sum(~positive_call & is_positive)),
        "tn": int(np.sum(~positive_call & ~is_positive)),
    }


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``.

    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    which matters for sensitivities around 90 % on 34 cases. ``n == 0`` gives (nan, nan).
    """
    _check_level(level)
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


def _kappa(tp, fp, fn, tn):
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


def _ratio(numerator: int, denominator: int) -> float:
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
        result[name] = _ratio(successes, n)
        result[f"{name}_lo"], result[f"{name}_hi"] = wilson_interval(successes, n, level)
    result["kappa"] = float(_kappa(tp, fp, fn, tn))
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
    labels, probs = _as_label_prob_arrays(labels, probs)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = _average_ranks(probs)[labels == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------
# Patient-level (cluster) bootstrap
# ---------------------------------------------------------------------------------------


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
        kappa = _kappa(w_pos @ self.tp, w_neg @ self.fp, w_pos @ self.fn, w_neg @ self.tn)
        return auc, kappa


def _summarise_clusters(labels, probs, clusters, threshold: float) -> _ClusterSummary:
    """Collapse image-level predictions into a :class:`_ClusterSummary`.

    Raises ValueError when a cluster holds images of both labels: stratified resampling
    needs each patient in exactly one class.
    """
    labels, probs = _as_label_prob_arrays(labels, probs)
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
    _check_level(level)
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


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def _validate_predictions(frame: pd.DataFrame, required: Iterable[str], name: str) -> None:
    """Raise ValueError naming the frame and column when ``frame`` is unfit to evaluate."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks required column(s): {', '.join(missing)}")
    if not frame["label"].isin((0, 1)).all():
        bad = frame.loc[~frame["label"].isin((0, 1)), "label"].unique()[:5]
        raise InputError(f"{name}: column 'label' must hold only 0 or 1, found {list(bad)}")
    prob = pd.to_numeric(frame["prob"], errors="coerce").to_numpy(dtype=float)
    invalid = ~(np.isfinite(prob) & (prob >= 0) & (prob <= 1))
    if invalid.any():
        bad = frame["prob"].to_numpy()[invalid][:5]
        raise InputError(
            f"{name}: column 'prob' must hold finite probabilities in [0, 1], found {list(bad)}"
        )


def _group_metrics(
    group: pd.DataFrame,
    threshold: float,
    n_boot: int,
    seed: int,
    level: float,
    cluster_col: str,
) -> dict:
    """All :data:`METRIC_COLUMNS` of one group of predictions."""
    labels = group["label"].to_numpy()
    probs = group["prob"].to_numpy(dtype=float)
    clusters = group[cluster_col].to_numpy()
    row = metrics_from_counts(**confusion_counts(labels, probs, threshold), level=level)
    row["auc"] = roc_auc(labels, probs)
    row.update(bootstrap_intervals(labels, probs, clusters, threshold, n_boot, seed, level))
    row["n_patients"] = int(group[cluster_col].nunique())
    return row


def metrics_table(
    predictions: pd.DataFrame,
    group_cols: Sequence[str],
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    cluster_col: str = "patient_id",
) -> pd.DataFrame:
    """One row of diagnostic-accuracy metrics per group of ``predictions``.

    ``predictions`` needs ``label``, ``prob``, ``cluster_col`` and the ``group_cols``.
    Columns: the group columns, then :data:`METRIC_COLUMNS`. Rows follow the order in
    which groups first appear in ``predictions``, so the caller's ordering (e.g. T1, T2,
    CE-T1, ALL) is kept. Every group is bootstrapped with the same ``seed``. Empty
    ``predictions`` give an empty table with these columns.
    """
    group_cols = list(group_cols)
    _validate_predictions(predictions, [*group_cols, cluster_col], "predictions")
    columns = [*group_cols, *METRIC_COLUMNS]
    if predictions.empty:
        return pd.DataFrame(columns=columns)

    options = dict(threshold=threshold, n_boot=n_boot, seed=seed, level=level,
                   cluster_col=cluster_col)
    if not group_cols:
        return pd.DataFrame([_group_metrics(predictions, **options)], columns=columns)
    rows = []
    for key, group in predictions.groupby(group_cols, sort=False, observed=True, dropna=False):
        rows.append({**dict(zip(group_cols, key)), **_group_metrics(group, **options)})
    return pd.DataFrame(rows, columns=columns)


def fold_2x2_table(case_predictions: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Each fold model's own case-level 2x2 on the external cohort.

    Uses rows with ``cohort == "external"`` and ``model == "fold<k>"``; ``fold`` is the
    integer k. These per-fold 2x2 tables feed the bivariate meta-analysis, which pools
    sensitivity and specificity across folds. Rows keep the first-appearance order of
    (backbone, input), folds ascending within each.
    """
    _validate_predictions(
        case_predictions, ("backbone", "input", "cohort", "model", "label", "prob"),
        "case_predictions",
    )
    # Positional (numpy) masks, so that a non-unique index of the input does no harm.
    fold_number = case_predictions["model"].astype(str).str.extract(r"^fold(\d+)$")[0]
    is_selected = (fold_number.notna() & (case_predictions["cohort"] == "external")).to_numpy()
    selected = case_predictions[is_selected].assign(
        fold=fold_number.to_numpy()[is_selected].astype(int)
    )

    rows = []
    for (backbone, input_, fold_k), group in selected.groupby(
        ["backbone", "input", "fold"], sort=False, observed=True
    ):
        counts = confusion_counts(group["label"].to_numpy(), group["prob"].to_numpy(), threshold)
        n_pos, n_neg = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
        rows.append({
            "backbone": backbone, "input": input_, "fold": int(fold_k),
            "n_pos": n_pos, "n_neg": n_neg, **counts,
            "sensitivity": _ratio(counts["tp"], n_pos),
            "specificity": _ratio(counts["tn"], n_neg),
        })
    table = pd.DataFrame(rows, columns=list(FOLD_2X2_COLUMNS))
    if table.empty:
        return table
    # Folds may appear in any order in the input (e.g. fold10 before fold2); sort them
    # numerically inside each (backbone, input) block, blocks in first-appearance order.
    block = table.groupby(["backbone", "input"], sort=False).ngroup()
    order = np.lexsort((table["fold"].to_numpy(), block.to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def _resolve_settings(settings: Mapping) -> dict:
    """Merge ``settings`` over :data:`DEFAULT_SETTINGS` and check their ranges."""
    resolved = {**DEFAULT_SETTINGS, **{k: settings[k] for k in DEFAULT_SETTINGS if k in settings}}
    if not 0 <= resolved["threshold"] <= 1:
        raise InputError(f"settings['threshold'] must lie in [0, 1], got {resolved['threshold']}")
    replicates = resolved["bootstrap_replicates"]
    if int(replicates) != replicates or replicates < 0:
        raise InputError(
            f"settings['bootstrap_replicates'] must be a non-negative integer, got {replicates}"
        )
    if not 0 < resolved["ci_level"] < 1:
        raise InputError(f"settings['ci_level'] must lie in (0, 1), got {resolved['ci_level']}")
    return resolved


def build_tables(
    image_predictions: pd.DataFrame,
    case_predictions: pd.DataFrame,
    settings: Mapping,
) -> dict[str, pd.DataFrame]:
    """The study's tables from image- and case-level predictions.

    Keys:

    * ``table2_image_level``: external cohort, ensemble model, per backbone and input
      sequence (``sequence`` is renamed ``input``);
    * ``table3_case_level``: external cohort, ensemble model, per backbone and input;
    * ``fold_2x2``: see :func:`fold_2x2_table`;
    * ``internal_cv_image_level``, ``internal_cv_case_level``: internal cohort,
      out-of-fold predictions (the cross-validation performance).

    ``settings`` may hold ``threshold``, ``bootstrap_replicates``, ``seed`` and
    ``ci_level`` (:data:`DEFAULT_SETTINGS` fill in missing ones; other keys are
    ignored). A selection without rows (e.g. a study without external cohort) gives an
    empty table. Raises ValueError for missing columns, labels other than 0/1 or
    probabilities outside [0, 1].
    """
    options = _resolve_settings(settings)
    _validate_predictions(image_predictions, IMAGE_PREDICTION_COLUMNS, "image_predictions")
    _validate_predictions(case_predictions, CASE_PREDICTION_COLUMNS, "case_predictions")
    images = image_predictions.rename(columns={"sequence": "input"})

    def table(predictions: pd.DataFrame, cohort_model: tuple[str, str]) -> pd.DataFrame:
        cohort, model = cohort_model
        selected = predictions[(predictions["cohort"] == cohort) & (predictions["model"] == model)]
        return metrics_table(
            selected, ["backbone", "input"],
            threshold=options["threshold"], n_boot=int(options["bootstrap_replicates"]),
            seed=int(options["seed"]), level=options["ci_level"],
        )

    return {
        "table2_image_level": table(images, _EXTERNAL_ENSEMBLE),
        "table3_case_level": table(case_predictions, _EXTERNAL_ENSEMBLE),
        "fold_2x2": fold_2x2_table(case_predictions, threshold=options["threshold"]),
        "internal_cv_image_level": table(images, _INTERNAL_OOF),
        "internal_cv_case_level": table(case_predictions, _INTERNAL_OOF),
    }


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table as ``<key>.csv`` (no index) into ``out_dir``; return the paths.

    Floats are written at full (round-trip) precision so that downstream steps, such as
    the meta-analysis, do not inherit rounding; rounding is left to presentation.
    """
    return {key: write_csv(table, Path(out_dir) / f"{key}.csv") for key, table in tables.items()}
