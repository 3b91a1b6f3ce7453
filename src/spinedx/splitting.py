"""Splits of the internal cohort: patient-grouped, stratified k folds, persisted as a
file, checked for leakage wherever they are read.

The same split serves every sequence and backbone, so the fold-k models of T1, T2 and
CE-T1 never saw the fold-k patients, and the ALL input stays out-of-fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import write_csv

FOLD_COLUMNS = ["patient_id", "diagnosis", "label", "fold"]


def make_folds(cases: pd.DataFrame, n_folds: int, seed: int, cases_path="cases table") -> pd.DataFrame:
    """Assign each internal patient to one of ``n_folds`` validation folds."""
    internal = cases[cases["cohort"] == "internal"].sort_values("patient_id").reset_index(drop=True)
    per_class = internal.groupby("diagnosis")["patient_id"].nunique()
    if internal["label"].nunique() < 2:
        raise InputError(
            f"{cases_path}: the internal cohort has a single diagnosis {sorted(per_class.index)}; "
            "cross-validation needs patients of both classes"
        )
    if (per_class < n_folds).any():
        raise InputError(
            f"{cases_path}: too few internal patients for {n_folds} folds: {per_class.to_dict()}; "
            f"every fold needs each class, so each class needs at least {n_folds} patients "
            "(or lower config splits.n_folds)"
        )
    from sklearn.model_selection import StratifiedGroupKFold  # slow import, needed only here

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(internal), -1)
    for k, (_, validation) in enumerate(
        splitter.split(internal, internal["label"], groups=internal["patient_id"])
    ):
        fold[validation] = k
    internal["fold"] = fold
    folds = internal[FOLD_COLUMNS].sort_values(["fold", "patient_id"]).reset_index(drop=True)
    check_folds(folds, cases, n_folds, cases_path)
    return folds


def check_folds(folds: pd.DataFrame, cases: pd.DataFrame, n_folds: int, source="folds",
                both_labels: bool = True) -> None:
    """Invariants every split must hold, whoever wrote it (``both_labels``: every fold
    holds both classes, which classification needs and detection does not)."""
    if folds["patient_id"].duplicated().any():
        raise InputError(f"{source}: a patient is assigned to more than one fold")
    if set(folds["fold"]) != set(range(n_folds)):
        raise InputError(f"{source}: folds {sorted(set(folds['fold']))} != 0..{n_folds - 1}")
    external = set(cases.loc[cases["cohort"] == "external", "patient_id"])
    crossing = sorted(external & set(folds["patient_id"]))
    if crossing:
        raise InputError(f"{source}: external patients in the cross-validation folds: {crossing}; "
                         "rerun the splits stage on the current cases table")
    single = folds.groupby("fold")["label"].nunique()
    if both_labels and (single < 2).any():
        raise InputError(
            f"{source}: fold(s) {single[single < 2].index.tolist()} hold one class only; "
            "validation accuracy there would be meaningless; rerun the splits stage "
            "(spinedx splits) or add patients of the missing class"
        )


# --- detection (issue 16): folds stratified by lesion load ---------------------------------

#: Lesion-count bands the detection folds are stratified by: (lowest, highest, name).
LESION_LOAD_BANDS = ((0, 0, "no lesion"), (1, 1, "1 lesion"), (2, 3, "2-3 lesions"), (4, None, "4+ lesions"))


def make_detection_folds(cases: pd.DataFrame, n_folds: int, seed: int, cases_path="cases table") -> pd.DataFrame:
    """Patient-grouped folds of the internal cohort of a detection study, stratified by
    lesion load (``n_lesions`` in :data:`LESION_LOAD_BANDS`), so that every fold gets
    patients without, with one and with many lesions in the cohort's proportions. A band
    with fewer patients than folds is merged into its lower neighbour (the lowest into
    the next), as often as needed. Written like the classification folds: ``diagnosis``
    holds the band's name and ``label`` its position."""
    internal = cases[cases["cohort"] == "internal"].sort_values("patient_id").reset_index(drop=True)
    if len(internal) < n_folds:
        raise InputError(f"{cases_path}: {len(internal)} internal patients cannot fill {n_folds} folds; "
                         "add patients or lower config splits.n_folds")
    counts = internal["n_lesions"].astype(int).to_numpy()
    bands = [[low, high, name] for low, high, name in LESION_LOAD_BANDS]

    def members(band):
        return (counts >= band[0]) & (counts <= (band[1] if band[1] is not None else counts.max(initial=0)))

    while len(bands) > 1:
        sizes = [int(members(b).sum()) for b in bands]
        small = next((i for i, n in enumerate(sizes) if n < n_folds), None)
        if small is None:
            break
        into = small - 1 if small > 0 else 1
        low, high = min(bands[small][0], bands[into][0]), None if None in (bands[small][1], bands[into][1]) \
            else max(bands[small][1], bands[into][1])
        name = ("any lesion load" if low == 0 else f"{low}+ lesions") if high is None else \
            (f"{low}-{high} lesions" if high > low else bands[into][2])
        bands[min(small, into)] = [low, high, name]
        del bands[max(small, into)]
    label = np.full(len(internal), -1)
    for position, band in enumerate(bands):
        label[members(band)] = position
    internal["label"] = label
    internal["diagnosis"] = [bands[k][2] for k in label]
    from sklearn.model_selection import StratifiedGroupKFold  # slow import, needed only here

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(internal), -1)
    for k, (_, validation) in enumerate(splitter.split(internal, internal["label"], groups=internal["patient_id"])):
        fold[validation] = k
    internal["fold"] = fold
    folds = internal[FOLD_COLUMNS].sort_values(["fold", "patient_id"]).reset_index(drop=True)
    check_folds(folds, cases, n_folds, cases_path, both_labels=False)
    return folds


def write_folds(folds: pd.DataFrame, path: str | Path) -> None:
    write_csv(folds, path, sep="\t")


def read_folds(path: str | Path) -> pd.DataFrame:
    try:
        folds = pd.read_csv(path, sep="\t", dtype={"patient_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read folds: {error}") from error
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    return folds


def split_indices(images: pd.DataFrame, folds: pd.DataFrame, fold: int, folds_path) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and validation images of ``fold``."""
    if fold not in set(folds["fold"]):
        raise InputError(f"{folds_path}: no fold {fold}; folds are {sorted(set(folds['fold']))}")
    internal = images["cohort"].to_numpy() == "internal"
    fold_of = images["patient_id"].map(folds.set_index("patient_id")["fold"])
    unassigned = internal & fold_of.isna().to_numpy()
    if unassigned.any():
        missing = sorted(set(images.loc[unassigned, "patient_id"]))[:5]
        raise InputError(f"{folds_path}: internal patient(s) {missing} have images but no fold; rerun the splits stage")
    validation = internal & (fold_of.to_numpy() == fold)
    training = internal & ~validation
    for name, mask in (("training", training), ("validation", validation)):
        if len(set(images.loc[mask, "label"])) < 2:
            raise InputError(
                f"{folds_path}: fold {fold}: the {name} images of this sequence hold one class "
                f"only ({int(mask.sum())} images); add patients of both classes with this "
                "sequence, or lower config splits.n_folds"
            )
    return np.flatnonzero(training), np.flatnonzero(validation)
