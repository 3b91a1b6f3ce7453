"""Decision-curve analysis (Vickers & Elkin 2006, Med Decis Making 26:565-574): the net
benefit of acting on a model's predictions, against treating everyone or no one.

At threshold probability ``pt`` (the risk at which one would act), with ``n`` cases::

    NB(pt) = TP / n - FP / n * pt / (1 - pt)
    treat all:  NB = prevalence - (1 - prevalence) * pt / (1 - pt);   treat none: NB = 0

where a case counts as positive when its predicted probability is ``>= pt`` (the
decision-curve convention, which differs from the study's ``prob > threshold`` rule only
for a probability exactly on a grid threshold).

The computation is the maintained ``dcurves`` package's (``dcurves.dca``, MSKCC's
Python port of the R/Stata ``dca``), wrapped to return a tidy table with the study's
names; it is imported on first use because it pulls in lifelines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from spinedx.errors import InputError

__all__ = ["COLUMNS", "DEFAULT_THRESHOLDS", "TREAT_ALL", "TREAT_NONE", "decision_curve"]

TREAT_ALL = "treat all"
TREAT_NONE = "treat none"
COLUMNS = ["model", "threshold", "n", "prevalence", "test_positive_rate", "tp_rate",
           "fp_rate", "net_benefit", "net_interventions_avoided"]
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2))


def decision_curve(labels, probs: Mapping[str, Sequence[float]],
                   thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Net benefit of each model in ``probs`` (name -> probability per case) and of the
    treat-all / treat-none strategies at each threshold in [0, 1).

    Returns one row per (model, threshold), models in input order then "treat all",
    "treat none"; columns ``COLUMNS``. ``tp_rate`` and ``fp_rate`` are TP / n and FP / n;
    ``net_interventions_avoided`` is per case:
    ``(NB_model - NB_treat_all) / (pt / (1 - pt))`` (NaN at pt = 0).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.isin(labels, (0, 1)).all():
        raise InputError("labels must be a non-empty 1-D sequence of 0/1 (1 = positive case)")
    if not probs:
        raise InputError("give at least one model's probabilities")
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.ndim != 1 or thresholds.size == 0 or (thresholds < 0).any() or (thresholds >= 1).any():
        raise InputError("thresholds must be a non-empty 1-D sequence in [0, 1)")
    # dcurves reads models from data-frame columns and adds its own "all" and "none"
    # columns, so models get neutral column names here and their own names back after.
    columns = {}
    data = pd.DataFrame({"outcome": labels.astype(int)})
    for index, (name, values) in enumerate(probs.items()):
        values = np.asarray(values, dtype=float)
        if values.shape != labels.shape:
            raise InputError(f"probabilities of {name!r} have shape {values.shape}, labels {labels.shape}")
        if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise InputError(f"probabilities of {name!r} must be finite and in [0, 1]")
        column = f"model_{index}"
        columns[column] = name
        data[column] = values

    from dcurves import dca  # imports lifelines (seconds): only when a curve is wanted

    result = dca(data=data, outcome="outcome", modelnames=list(columns),
                 thresholds=thresholds.tolist())
    names = {**columns, "all": TREAT_ALL, "none": TREAT_NONE}
    table = pd.DataFrame({
        "model": result["model"].map(names),
        "threshold": result["threshold"].astype(float),
        "n": result["n"].astype(int),
        "prevalence": result["prevalence"].astype(float),
        "test_positive_rate": result["test_pos_rate"].astype(float),
        "tp_rate": result["tp_rate"].astype(float),
        "fp_rate": result["fp_rate"].astype(float),
        "net_benefit": result["net_benefit"].astype(float),
        "net_interventions_avoided": result["net_intervention_avoided"].astype(float),
    })
    # dcurves divides by pt / (1 - pt) = 0 at pt = 0 (giving NaN or -inf): undefined there.
    table.loc[table["threshold"] == 0, "net_interventions_avoided"] = np.nan
    order = {name: rank for rank, name in enumerate([*columns.values(), TREAT_ALL, TREAT_NONE])}
    table = table.sort_values(["model", "threshold"], key=lambda column: (
        column.map(order) if column.name == "model" else column), kind="mergesort")
    return table.reset_index(drop=True)[COLUMNS]
