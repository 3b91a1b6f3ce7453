"""Ensembling stage: combine the fold models of one backbone x sequence.

External images: each fold model's probability and their plain mean (model
"ensemble"). Internal images: the probability from the one fold model that did not
train on the patient (model "oof", out-of-fold).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spinedx.errors import InputError

ENSEMBLE_COLUMNS = ["backbone", "sequence", "image_id", "patient_id", "cohort", "label", "model", "prob"]


def ensemble(fold_predictions: list[pd.DataFrame], backbone: str, sources: list | None = None) -> pd.DataFrame:
    sources = sources or [f"fold table {i}" for i in range(len(fold_predictions))]
    folds = [int(t["fold"].iloc[0]) for t in fold_predictions]
    if sorted(folds) != list(range(len(folds))):
        raise InputError(f"expected fold tables 0..{len(folds) - 1}, got folds {sorted(folds)} from {sources}")
    table = pd.concat(fold_predictions, ignore_index=True)
    external = table[table["role"] == "external"]
    reference = set(fold_predictions[0].loc[fold_predictions[0]["role"] == "external", "image_id"])
    for source, part in zip(sources, fold_predictions):
        scored = set(part.loc[part["role"] == "external", "image_id"])
        if scored != reference:
            raise InputError(f"{source}: scored a different set of external images than {sources[0]}; rerun inference")
    internal = table[table["role"] == "validation"]
    if internal["image_id"].duplicated().any():
        raise InputError(f"an internal image was validated by two fold models ({sources}): the split leaks")
    keys = ["image_id", "patient_id", "sequence", "cohort", "label"]
    per_fold = external.assign(model="fold" + external["fold"].astype(str))
    mean = (external.groupby(keys, sort=False, as_index=False)["prob"].mean().assign(model="ensemble"))
    out_of_fold = internal.assign(model="oof")
    combined = pd.concat([per_fold[keys + ["model", "prob"]], mean[keys + ["model", "prob"]],
                          out_of_fold[keys + ["model", "prob"]]], ignore_index=True)
    combined.insert(0, "backbone", backbone)
    return combined[ENSEMBLE_COLUMNS]


def write(table: pd.DataFrame, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
