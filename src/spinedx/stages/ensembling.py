"""Ensembling stage: combine the fold models of one backbone x sequence.

External images: each fold model's probability and their plain mean (model
"ensemble"). Internal images: the probability from the one fold model that did not
train on the patient (model "oof", out-of-fold).
"""

from __future__ import annotations


import pandas as pd

from spinedx.errors import InputError

ENSEMBLE_COLUMNS = ["backbone", "sequence", "image_id", "patient_id", "cohort", "label", "model", "prob"]


def ensemble(predictions: pd.DataFrame, backbone: str, n_folds: int, source="predictions") -> pd.DataFrame:
    """Per-fold, mean ("ensemble") and out-of-fold ("oof") predictions of one backbone x sequence."""
    folds = sorted(predictions["fold"].unique().tolist())
    if folds != list(range(n_folds)):
        raise InputError(f"{source}: expected predictions of folds 0..{n_folds - 1}, found {folds}; rerun inference")
    external = predictions[predictions["role"] == "external"]
    scored = external.groupby("fold")["image_id"].apply(frozenset)
    if scored.nunique() > 1:
        raise InputError(f"{source}: the fold models scored different external images; rerun inference")
    internal = predictions[predictions["role"] == "validation"]
    if internal["image_id"].duplicated().any():
        raise InputError(f"{source}: an internal image was validated by two fold models: the split leaks")
    keys = ["image_id", "patient_id", "sequence", "cohort", "label"]
    per_fold = external.assign(model="fold" + external["fold"].astype(str))
    mean = (external.groupby(keys, sort=False, as_index=False)["prob"].mean().assign(model="ensemble"))
    out_of_fold = internal.assign(model="oof")
    combined = pd.concat([per_fold[keys + ["model", "prob"]], mean[keys + ["model", "prob"]],
                          out_of_fold[keys + ["model", "prob"]]], ignore_index=True)
    combined.insert(0, "backbone", backbone)
    return combined[ENSEMBLE_COLUMNS]
