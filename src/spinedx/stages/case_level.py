"""Case-level stage: a patient's probability is the mean over their images.

Per sequence: the mean over the case's images of that sequence. ALL: the mean over all
the case's images of every sequence, each image scored by its own sequence's model
(the study's "ALL" input). Done for every model column (each fold, the ensemble, the
out-of-fold predictions), so fold models get their own case-level 2x2 tables.
"""

from __future__ import annotations


import pandas as pd

from spinedx.errors import InputError

ALL_INPUT = "ALL"
CASE_COLUMNS = ["backbone", "input", "model", "patient_id", "cohort", "label", "prob", "n_images"]


def aggregate(image_predictions: pd.DataFrame) -> pd.DataFrame:
    """Case-level predictions from image-level predictions of one or more sequences."""
    conflicting = image_predictions.groupby("patient_id")["label"].nunique()
    if (conflicting > 1).any():
        raise InputError(f"patients with images of different labels: {conflicting[conflicting > 1].index.tolist()[:5]}")
    keys = ["backbone", "model", "patient_id", "cohort", "label"]
    per_sequence = (image_predictions.groupby(keys + ["sequence"], sort=False)
                    .agg(prob=("prob", "mean"), n_images=("prob", "size")).reset_index()
                    .rename(columns={"sequence": "input"}))
    combined = (image_predictions.groupby(keys, sort=False)
                .agg(prob=("prob", "mean"), n_images=("prob", "size")).reset_index()
                .assign(input=ALL_INPUT))
    cases = pd.concat([per_sequence, combined], ignore_index=True)
    return cases[CASE_COLUMNS]
