"""Splits of the internal cohort: patient-grouped, stratified k folds or a hold-out
(train / validation / internal test), persisted as a file, checked for leakage wherever
they are read.

The same split serves every sequence and backbone, so the fold-k models of T1, T2 and
CE-T1 never saw the fold-k patients, and the ALL input stays out-of-fold.

Hold-out (``splits/holdout.tsv``, long format, one row per (repeat, patient):
``patient_id, diagnosis, label, repeat, seed, partition``): the internal patients of each
diagnosis are shuffled (repeat r with seed ``seed + r``) and cut into ``train``,
``validation`` and ``internal_test`` in the configured ratios, each class's counts being
its exact shares rounded by largest remainder (ties drawn at random): every class is split
within one patient of the ratios. Rows are patients, so a patient's images all fall into
one partition (patient-grouped); cutting each diagnosis separately is the stratification.
(A k-fold-based hold-out, StratifiedGroupKFold with 7/1/2 of 10 folds, was the first
design: it can only move whole folds, which put 4 of 14 meningiomas, 29%, into a 20%
internal test set; the exact cut has no such error and takes any ratios.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import write_csv

FOLD_COLUMNS = ["patient_id", "diagnosis", "label", "fold"]
HOLDOUT_COLUMNS = ["patient_id", "diagnosis", "label", "repeat", "seed", "partition"]
#: Hold-out partitions, in ratio order.
PARTITIONS = ("train", "validation", "internal_test")
#: What each model scores besides the external cohorts: its validation patients (k-fold:
#: the out-of-fold predictions) or, hold-out, its validation and internal-test patients.
SCORED_PARTITIONS = ("validation", "internal_test")


def model_count(splits: dict) -> int:
    """How many models one backbone x sequence has: the folds, or the hold-out repeats
    (config ``splits``)."""
    return splits["repeats"] if splits["scheme"] == "holdout" else splits["n_folds"]


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


def refuse_external(splits: pd.DataFrame, cases: pd.DataFrame, source, where: str) -> None:
    """A patient of an external cohort in a split is a leak."""
    external = set(cases.loc[cases["cohort"] != "internal", "patient_id"])
    crossing = sorted(external & set(splits["patient_id"]))
    if crossing:
        raise InputError(f"{source}: external patients in {where}: {crossing[:10]}; "
                         "rerun the splits stage on the current cases table")


def check_folds(folds: pd.DataFrame, cases: pd.DataFrame, n_folds: int, source="folds",
                both_labels: bool = True) -> None:
    """Invariants every split must hold, whoever wrote it (``both_labels``: every fold
    holds both classes, which classification needs and detection does not)."""
    if folds["patient_id"].duplicated().any():
        raise InputError(f"{source}: a patient is assigned to more than one fold")
    if set(folds["fold"]) != set(range(n_folds)):
        raise InputError(f"{source}: folds {sorted(set(folds['fold']))} != 0..{n_folds - 1}")
    refuse_external(folds, cases, source, "the cross-validation folds")
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
    """Folds or hold-out partitions, tab-separated."""
    write_csv(folds, path, sep="\t")


def holdout_shares(ratios) -> np.ndarray:
    """The ratios (train, validation, internal test) as shares summing to 1; ValueError
    when they are not three numbers >= 0 with train and validation > 0."""
    try:
        weights = np.asarray([float(r) for r in ratios])
    except (TypeError, ValueError):
        raise ValueError(f"ratios must be three numbers, got {ratios}") from None
    if weights.shape != (3,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"ratios must be three numbers >= 0 (train, validation, internal test), got {ratios}")
    if weights[0] <= 0 or weights[1] <= 0:
        raise ValueError(f"train and validation need a share > 0, got {ratios} (internal test may be 0)")
    return weights / weights.sum()


def partition_counts(n: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` patients cut in ``shares``: the exact shares' floors, the remaining patients to
    the largest fractional parts (ties in random order). A zero share gets none."""
    exact = n * shares
    counts = np.floor(exact + 1e-9).astype(int)
    fractions = np.where(shares > 0, exact - counts, -1.0)
    order = np.lexsort((rng.random(len(shares)), -fractions))
    counts[order[: n - counts.sum()]] += 1
    return counts


def make_holdout(cases: pd.DataFrame, ratios, repeats: int, seed: int, cases_path="cases table") -> pd.DataFrame:
    """Train / validation / internal-test partitions of the internal patients, per repeat
    (module docstring)."""
    try:
        shares = holdout_shares(ratios)
    except ValueError as error:
        raise InputError(f"config splits.ratios: {error}") from None
    internal = cases[cases["cohort"] == "internal"].sort_values("patient_id").reset_index(drop=True)
    if internal["label"].nunique() < 2:
        raise InputError(f"{cases_path}: the internal cohort has a single diagnosis "
                         f"{sorted(set(internal['diagnosis']))}; a hold-out needs patients of several classes")
    tables = []
    for repeat in range(repeats):
        repeat_seed = seed + repeat
        rng = np.random.default_rng(repeat_seed)
        partition = np.empty(len(internal), dtype=object)
        for _, members in internal.groupby("label", sort=True).groups.items():
            members = np.asarray(members)[rng.permutation(len(members))]
            counts = partition_counts(len(members), shares, rng)
            partition[members] = np.repeat(PARTITIONS, counts)
        tables.append(internal[["patient_id", "diagnosis", "label"]].assign(
            repeat=repeat, seed=repeat_seed, partition=partition))
    holdout = pd.concat(tables, ignore_index=True)
    order = holdout["partition"].map({name: i for i, name in enumerate(PARTITIONS)})
    holdout = (holdout.assign(_order=order).sort_values(["repeat", "_order", "patient_id"])
               .drop(columns="_order").reset_index(drop=True))[HOLDOUT_COLUMNS]
    check_holdout(holdout, cases, ratios, repeats, cases_path)
    return holdout


def check_holdout(holdout: pd.DataFrame, cases: pd.DataFrame, ratios, repeats: int, source="holdout") -> None:
    """Invariants every hold-out must hold, whoever wrote it: each internal patient once
    per repeat, no external patient, every class in every partition (of a share > 0) of
    every repeat, and each class split within one patient of the configured ratios."""
    shares = holdout_shares(ratios)
    if set(holdout["repeat"]) != set(range(repeats)):
        raise InputError(f"{source}: repeats {sorted(set(holdout['repeat']))} != 0..{repeats - 1}; "
                         "rerun the splits stage")
    unknown = sorted(set(holdout["partition"]) - set(PARTITIONS))
    if unknown:
        raise InputError(f"{source}: unknown partition(s) {unknown}; expected {list(PARTITIONS)}")
    if holdout.duplicated(["repeat", "patient_id"]).any():
        raise InputError(f"{source}: a patient is in more than one partition of a repeat")
    refuse_external(holdout, cases, source, "the hold-out partitions")
    internal = cases[cases["cohort"] == "internal"]
    classes = sorted(set(internal["diagnosis"]))
    for repeat, rows in holdout.groupby("repeat"):
        missing = sorted(set(internal["patient_id"]) - set(rows["patient_id"]))
        if missing:
            raise InputError(f"{source}: repeat {repeat} leaves internal patient(s) {missing[:10]} out; "
                             "rerun the splits stage")
        counts = rows.groupby(["diagnosis", "partition"]).size().unstack(fill_value=0).reindex(
            index=classes, columns=list(PARTITIONS), fill_value=0)
        for name, share in zip(PARTITIONS, shares):
            if share == 0:
                if counts[name].sum():
                    raise InputError(f"{source}: repeat {repeat} has {name} patients but its ratio is 0")
                continue
            absent = [c for c in classes if counts.loc[c, name] == 0]
            if absent:
                raise InputError(
                    f"{source}: repeat {repeat}, partition {name} holds no patient of class(es) {absent}; "
                    f"add internal patients of {absent}, use another splits.seed, or give the "
                    f"partition a larger share in splits.ratios ({ratios})")
        exact = counts.sum(axis=1).to_numpy()[:, None] * shares[None, :]
        off = np.abs(counts.to_numpy() - exact) >= 1
        if off.any():
            c, k = np.argwhere(off)[0]
            raise InputError(f"{source}: repeat {repeat}: {counts.iloc[c, k]} {classes[c]} patient(s) in "
                             f"{PARTITIONS[k]}, more than one patient off the ratios {ratios}; rerun the "
                             "splits stage")


def read_splits(path: str | Path) -> pd.DataFrame:
    """Folds (k-fold) or hold-out partitions, told apart by their columns."""
    try:
        splits = pd.read_csv(path, sep="\t", dtype={"patient_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read splits: {error}") from error
    columns = HOLDOUT_COLUMNS if "partition" in splits.columns else FOLD_COLUMNS
    missing = [c for c in columns if c not in splits.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    return splits


#: The reader of either file (k-fold folds.tsv, hold-out holdout.tsv).
read_folds = read_splits


def is_holdout(splits: pd.DataFrame) -> bool:
    return "partition" in splits.columns


def model_partitions(images: pd.DataFrame, splits: pd.DataFrame, model: int, splits_path) -> np.ndarray:
    """Each image's part for model ``model`` (a fold or a hold-out repeat): ``train``,
    ``validation``, ``internal_test`` or ``external`` (any cohort but internal)."""
    internal = images["cohort"].to_numpy() == "internal"
    if is_holdout(splits):
        rows = splits[splits["repeat"] == model]
        if rows.empty:
            raise InputError(f"{splits_path}: no hold-out repeat {model}; repeats are {sorted(set(splits['repeat']))}")
        part = images["patient_id"].map(rows.set_index("patient_id")["partition"])
    else:
        if model not in set(splits["fold"]):
            raise InputError(f"{splits_path}: no fold {model}; folds are {sorted(set(splits['fold']))}")
        fold_of = images["patient_id"].map(splits.set_index("patient_id")["fold"])
        part = pd.Series(np.where(fold_of == model, "validation", "train"), index=images.index).where(fold_of.notna())
    unassigned = internal & part.isna().to_numpy()
    if unassigned.any():
        missing = sorted(set(images.loc[unassigned, "patient_id"]))[:5]
        raise InputError(f"{splits_path}: internal patient(s) {missing} have images but no split; rerun the splits stage")
    return np.where(internal, part.astype(object).to_numpy(), "external")


def split_indices(images: pd.DataFrame, splits: pd.DataFrame, model: int, splits_path) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and validation images of ``model`` (a fold, or a
    hold-out repeat: its train and validation partitions)."""
    part = model_partitions(images, splits, model, splits_path)
    training, validation = part == "train", part == "validation"
    what = f"repeat {model}" if is_holdout(splits) else f"fold {model}"
    for name, mask in (("training", training), ("validation", validation)):
        if len(set(images.loc[mask, "label"])) < 2:
            raise InputError(
                f"{splits_path}: {what}: the {name} images of this sequence hold one class "
                f"only ({int(mask.sum())} images); add patients of both classes (of every class, with "
                "more than two) with this sequence, or lower config splits.n_folds"
            )
    return np.flatnonzero(training), np.flatnonzero(validation)
