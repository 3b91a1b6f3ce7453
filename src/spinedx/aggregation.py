"""Plain probability averaging: fold models into an ensemble, images into cases.

Every function averages each probability column separately (one per class, see
:mod:`spinedx.task`), so a table with several classes is averaged class by class (the
mean of the probability vectors); the pipeline passes ``Task.probability_columns``.

Every ensembled row says which predictions it belongs to in ``prediction_set``
(:data:`spinedx.stats.fusion.PREDICTION_SET_COLUMN`): ``oof`` (internal out-of-fold,
k-fold), ``validation`` or ``internal_test`` (a hold-out repeat's partitions), or the
external cohort's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pandas as pd

from spinedx.errors import InputError
from spinedx.paths import model_name

#: The case-level input that pools every sequence's images of a case.
ALL_INPUT = "ALL"
#: Which predictions a row belongs to (the name spinedx.stats.fusion reads).
PREDICTION_SET = "prediction_set"
#: The internal out-of-fold predictions' prediction set and model name (k-fold).
OUT_OF_FOLD = "oof"
#: The mean of the fold (or hold-out repeat) models on the external cohorts.
ENSEMBLE = "ensemble"

_IMAGE_KEYS = ["image_id", "patient_id", "sequence", "cohort", "label"]


def image_inputs(images: pd.DataFrame, sequences, planes: Mapping) -> Iterator[tuple[str, pd.DataFrame]]:
    """(input, image rows): each sequence, each plane (its sequences' images), ALL."""
    for sequence in sequences:
        yield sequence, images[images["sequence"] == sequence]
    for plane, members in planes.items():
        yield plane, images[images["sequence"].isin(members)]
    yield ALL_INPUT, images


def distinct_inputs(inputs) -> list[str]:
    """The case-level inputs whose predictions differ, in order. With one sequence ALL is
    that sequence's predictions again (e.g. a volume study's CT): only ALL, so analyses
    neither compare an input with itself nor count it twice."""
    inputs = list(dict.fromkeys(inputs))
    if ALL_INPUT in inputs and len([name for name in inputs if name != ALL_INPUT]) <= 1:
        return [ALL_INPUT]
    return inputs


def ensemble(predictions: pd.DataFrame, backbone: str, n_folds: int, source="predictions",
             prob_columns: Sequence[str] = ("prob",), split_scheme: str = "kfold") -> pd.DataFrame:
    """Per-model, mean ("ensemble") and internal predictions of one backbone x sequence.

    External images: each model's probabilities and their plain mean over the models
    (``n_folds`` folds, or hold-out repeats). Internal images, k-fold: the probabilities
    of the one fold model that did not train on the patient (model "oof"); hold-out: each
    repeat model's validation and internal-test patients (model holdout<r>, prediction
    set validation or internal_test).
    """
    prob_columns = list(prob_columns)
    folds = sorted(predictions["fold"].unique().tolist())
    if folds != list(range(n_folds)):
        what = "hold-out repeats" if split_scheme == "holdout" else "folds"
        raise InputError(f"{source}: expected predictions of {what} 0..{n_folds - 1}, found {folds}; rerun inference")
    external = predictions[predictions["role"] == "external"]
    scored = external.groupby("fold")["image_id"].apply(frozenset)
    if scored.nunique() > 1:
        raise InputError(f"{source}: the fold models scored different external images; rerun inference")
    internal = predictions[predictions["role"] != "external"]
    if internal.duplicated(["fold", "image_id"]).any() or (
            split_scheme != "holdout" and internal["image_id"].duplicated().any()):
        raise InputError(f"{source}: an internal image was validated by two fold models: the split leaks")
    columns = _IMAGE_KEYS + ["model", PREDICTION_SET, *prob_columns]
    per_fold = external.assign(model=[model_name(k, split_scheme) for k in external["fold"]],
                               **{PREDICTION_SET: external["cohort"]})
    mean = (external.groupby(_IMAGE_KEYS, sort=False, as_index=False)[prob_columns].mean()
            .assign(model=ENSEMBLE))
    mean[PREDICTION_SET] = mean["cohort"]
    if split_scheme == "holdout":
        internal = internal.assign(model=[model_name(k, split_scheme) for k in internal["fold"]],
                                   **{PREDICTION_SET: internal["role"]})
    else:
        internal = internal.assign(model=OUT_OF_FOLD, **{PREDICTION_SET: OUT_OF_FOLD})
    combined = pd.concat([per_fold[columns], mean[columns], internal[columns]], ignore_index=True)
    combined.insert(0, "backbone", backbone)
    return combined[["backbone", "sequence", "image_id", "patient_id", "cohort", "label", "model", PREDICTION_SET,
                     *prob_columns]]


def aggregate(image_predictions: pd.DataFrame, prob_columns: Sequence[str] = ("prob",),
              planes: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Case-level predictions from image-level predictions of one or more sequences.

    Per sequence: the mean over the case's images of that sequence. ALL: the mean over
    all the case's images of every sequence, each image scored by its own sequence's
    model (the study's "ALL" input). ``planes`` (config ``planes``: name -> sequences):
    one more input per plane, the mean over the case's images of its sequences. Done for
    every model (each fold, the ensemble, the out-of-fold predictions), so fold models
    get their own case-level 2x2 tables.
    """
    prob_columns = list(prob_columns)
    conflicting = image_predictions.groupby("patient_id")["label"].nunique()
    if (conflicting > 1).any():
        raise InputError(f"patients with images of different labels: {conflicting[conflicting > 1].index.tolist()[:5]}")
    keys = ["backbone", "model", "patient_id", "cohort", "label"]
    if PREDICTION_SET in image_predictions.columns:
        keys.insert(2, PREDICTION_SET)
    means = {column: (column, "mean") for column in prob_columns}
    count = {"n_images": (prob_columns[0], "size")}
    per_sequence = (image_predictions.groupby(keys + ["sequence"], sort=False)
                    .agg(**means, **count).reset_index()
                    .rename(columns={"sequence": "input"}))
    per_plane = [image_predictions[image_predictions["sequence"].isin(members)]
                 .groupby(keys, sort=False).agg(**means, **count).reset_index().assign(input=plane)
                 for plane, members in (planes or {}).items()]
    combined = (image_predictions.groupby(keys, sort=False)
                .agg(**means, **count).reset_index()
                .assign(input=ALL_INPUT))
    cases = pd.concat([per_sequence, *per_plane, combined], ignore_index=True)
    return cases[["backbone", "input", *keys[1:-3], "patient_id", "cohort", "label", *prob_columns, "n_images"]]
