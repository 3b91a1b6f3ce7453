"""Per-group diagnostic-accuracy tables of binary prediction frames.

A prediction frame has one row per image (or case): ``label`` (1 = positive class), a
score column (the positive class's probability; pipeline tables name it
:attr:`spinedx.task.BinaryTask.positive_column`), the patient (``cluster_col``) and
whatever columns define the groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.binary import confusion_counts, metrics_from_counts, ratio, roc_auc
from spinedx.stats.bootstrap import bootstrap_intervals

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


def validate_predictions(frame: pd.DataFrame, required: Iterable[str], name: str,
                         score_col: str = "prob") -> None:
    """Raise ValueError naming the frame and column when ``frame`` is unfit to evaluate:
    ``required`` columns and ``score_col`` present, labels 0/1, scores probabilities."""
    missing = [column for column in [*required, "label", score_col] if column not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks required column(s): {', '.join(dict.fromkeys(missing))}")
    if not frame["label"].isin((0, 1)).all():
        bad = frame.loc[~frame["label"].isin((0, 1)), "label"].unique()[:5]
        raise InputError(f"{name}: column 'label' must hold only 0 or 1, found {list(bad)}")
    prob = pd.to_numeric(frame[score_col], errors="coerce").to_numpy(dtype=float)
    invalid = ~(np.isfinite(prob) & (prob >= 0) & (prob <= 1))
    if invalid.any():
        bad = frame[score_col].to_numpy()[invalid][:5]
        raise InputError(
            f"{name}: column '{score_col}' must hold finite probabilities in [0, 1], found {list(bad)}"
        )


def _group_metrics(
    group: pd.DataFrame,
    threshold: float,
    n_boot: int,
    seed: int,
    level: float,
    cluster_col: str,
    score_col: str,
) -> dict:
    """All :data:`METRIC_COLUMNS` of one group of predictions."""
    labels = group["label"].to_numpy()
    probs = group[score_col].to_numpy(dtype=float)
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
    score_col: str = "prob",
) -> pd.DataFrame:
    """One row of diagnostic-accuracy metrics per group of ``predictions``.

    ``predictions`` needs ``label``, ``score_col`` (the positive class's probability),
    ``cluster_col`` and the ``group_cols``.
    Columns: the group columns, then :data:`METRIC_COLUMNS`. Rows follow the order in
    which groups first appear in ``predictions``, so the caller's ordering (e.g. T1, T2,
    CE-T1, ALL) is kept. Every group is bootstrapped with the same ``seed``. Empty
    ``predictions`` give an empty table with these columns.
    """
    group_cols = list(group_cols)
    validate_predictions(predictions, [*group_cols, cluster_col], "predictions", score_col)
    columns = [*group_cols, *METRIC_COLUMNS]
    if predictions.empty:
        return pd.DataFrame(columns=columns)

    options = dict(threshold=threshold, n_boot=n_boot, seed=seed, level=level,
                   cluster_col=cluster_col, score_col=score_col)
    if not group_cols:
        return pd.DataFrame([_group_metrics(predictions, **options)], columns=columns)
    rows = []
    for key, group in predictions.groupby(group_cols, sort=False, observed=True, dropna=False):
        rows.append({**dict(zip(group_cols, key)), **_group_metrics(group, **options)})
    return pd.DataFrame(rows, columns=columns)


def fold_2x2_table(case_predictions: pd.DataFrame, threshold: float = 0.5,
                   score_col: str = "prob") -> pd.DataFrame:
    """Each fold model's own case-level 2x2 on the external cohort.

    Uses rows of the external cohorts (``cohort`` other than "internal") and
    ``model == "fold<k>"``; ``fold`` is the
    integer k. These per-fold 2x2 tables feed the bivariate meta-analysis, which pools
    sensitivity and specificity across folds. Rows keep the first-appearance order of
    (backbone, input), folds ascending within each.
    """
    validate_predictions(case_predictions, ("backbone", "input", "cohort", "model"),
                         "case_predictions", score_col)
    # Positional (numpy) masks, so that a non-unique index of the input does no harm.
    fold_number = case_predictions["model"].astype(str).str.extract(r"^fold(\d+)$")[0]
    is_selected = (fold_number.notna() & (case_predictions["cohort"] != "internal")).to_numpy()
    selected = case_predictions[is_selected].assign(
        fold=fold_number.to_numpy()[is_selected].astype(int)
    )

    rows = []
    for (backbone, input_, fold_k), group in selected.groupby(
        ["backbone", "input", "fold"], sort=False, observed=True
    ):
        counts = confusion_counts(group["label"].to_numpy(), group[score_col].to_numpy(), threshold)
        n_pos, n_neg = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
        rows.append({
            "backbone": backbone, "input": input_, "fold": int(fold_k),
            "n_pos": n_pos, "n_neg": n_neg, **counts,
            "sensitivity": ratio(counts["tp"], n_pos),
            "specificity": ratio(counts["tn"], n_neg),
        })
    table = pd.DataFrame(rows, columns=list(FOLD_2X2_COLUMNS))
    if table.empty:
        return table
    # Folds may appear in any order in the input (e.g. fold10 before fold2); sort them
    # numerically inside each (backbone, input) block, blocks in first-appearance order.
    block = table.groupby(["backbone", "input"], sort=False).ngroup()
    order = np.lexsort((table["fold"].to_numpy(), block.to_numpy()))
    return table.iloc[order].reset_index(drop=True)
