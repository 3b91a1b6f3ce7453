"""Plain probability averaging: fold models into an ensemble, images into cases.

Every function averages each probability column separately (one per class, see
:mod:`spinedx.task`), so a table with several classes is averaged class by class; the
pipeline passes ``Task.probability_columns``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from spinedx.errors import InputError

#: The case-level input that pools every sequence's images of a case.
ALL_INPUT = "ALL"

_IMAGE_KEYS = ["image_id", "patient_id", "sequence", "cohort", "label"]


def ensemble(predictions: pd.DataFrame, backbone: str, n_folds: int, source="predictions",
             prob_columns: Sequence[str] = ("prob",)) -> pd.DataFrame:
    """Per-fold, mean ("ensemble") and out-of-fold ("oof") predictions of one backbone x sequence.

    External images: each fold model's probabilities and their plain mean over the folds.
    Internal images: the probabilities of the one fold model that did not train on the
    patient.
    """
    prob_columns = list(prob_columns)
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
    columns = _IMAGE_KEYS + ["model", *prob_columns]
    per_fold = external.assign(model="fold" + external["fold"].astype(str))
    mean = (external.groupby(_IMAGE_KEYS, sort=False, as_index=False)[prob_columns].mean()
            .assign(model="ensemble"))
    out_of_fold = internal.assign(model="oof")
    combined = pd.concat([per_fold[columns], mean[columns], out_of_fold[columns]], ignore_index=True)
    combined.insert(0, "backbone", backbone)
    return combined[["backbone", "sequence", "image_id", "patient_id", "cohort", "label", "model", *prob_columns]]


def aggregate(image_predictions: pd.DataFrame, prob_columns: Sequence[str] = ("prob",)) -> pd.DataFrame:
    """Case-level predictions from image-level predictions of one or more sequences.

    Per sequence: the mean over the case's images of that sequence. ALL: the mean over
    all the case's images of every sequence, each image scored by its own sequence's
    model (the study's "ALL" input). Done for every model (each fold, the ensemble, the
    out-of-fold predictions), so fold models get their own case-level 2x2 tables.
    """
    prob_columns = list(prob_columns)
    conflicting = image_predictions.groupby("patient_id")["label"].nunique()
    if (conflicting > 1).any():
        raise InputError(f"patients with images of different labels: {conflicting[conflicting > 1].index.tolist()[:5]}")
    keys = ["backbone", "model", "patient_id", "cohort", "label"]
    means = {column: (column, "mean") for column in prob_columns}
    count = {"n_images": (prob_columns[0], "size")}
    per_sequence = (image_predictions.groupby(keys + ["sequence"], sort=False)
                    .agg(**means, **count).reset_index()
                    .rename(columns={"sequence": "input"}))
    combined = (image_predictions.groupby(keys, sort=False)
                .agg(**means, **count).reset_index()
                .assign(input=ALL_INPUT))
    cases = pd.concat([per_sequence, combined], ignore_index=True)
    return cases[["backbone", "input", "model", "patient_id", "cohort", "label", *prob_columns, "n_images"]]
