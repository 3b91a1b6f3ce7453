"""A reader study's ratings (``readers.csv``), checked and joined to the study's cases.

One row per reader, case and condition::

    reader,patient_id,condition,rating,decision,experience
    R1,P017,unaided,0.35,ependymoma,junior
    R1,P017,aided,0.20,ependymoma,junior

* ``reader``: who read (any name); ``experience`` (optional): e.g. junior / senior, one
  value per reader.
* ``patient_id`` (or ``case``): a patient of the cases table; the truth is the cases
  table's diagnosis, never a column of this file.
* ``condition``: one of config ``reader_study.conditions`` (e.g. unaided, aided).
* ``rating``: the reader's confidence that the case is positive: a probability in [0, 1]
  (``rating_scale: probability``) or an integer score, higher = more likely positive
  (``ordinal``). The ROC curves and AUCs use it.
* ``decision``: the reader's call, a class name (for two classes also 1 = the positive
  class, 0 = the other). Sensitivity and specificity use it.

The design must be fully crossed (every reader rates every read case in every
condition): the Obuchowski-Rockette analysis needs it. Cases of the cases table that no
reader rated are left out of the reader analysis (the participant flow records them).
Every problem is an :class:`~spinedx.errors.InputError` naming the file, the lines and
the fix.

Studies with more than two classes: the binary contrast "one of ``positive_classes``"
(default: the last class) is what ratings rate and what ``truth`` and
``called_positive`` hold; ``decision`` keeps the class the reader chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError

REQUIRED_COLUMNS = ("reader", "patient_id", "condition", "rating", "decision")
OPTIONAL_COLUMNS = ("experience",)
RATING_SCALES = ("probability", "ordinal")
#: Columns of the checked table, in order.
COLUMNS = ["reader", "experience", "patient_id", "condition", "rating", "decision", "decision_label",
           "called_positive", "diagnosis", "label", "truth", "cohort"]


def positive_set(classes: Sequence[str], positive_classes: Sequence[str] | None) -> list[str]:
    """The classes counted positive in the binary contrast (default: the last class)."""
    chosen = list(positive_classes) if positive_classes else [classes[-1]]
    unknown = [name for name in chosen if name not in classes]
    if unknown or len(chosen) >= len(classes):
        raise InputError(f"reader_study.positive_classes {chosen} must name some, not all, of the "
                         f"classes {list(classes)}")
    return chosen


def _lines(mask) -> list[int]:
    # +2: the header line, and pandas counts from zero.
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))][:10]


def read_reader_study(path: str | Path, cases: pd.DataFrame, classes: Sequence[str],
                      conditions: Sequence[str], rating_scale: str = "probability",
                      positive_classes: Sequence[str] | None = None) -> pd.DataFrame:
    """``readers.csv`` checked and joined to ``cases`` (the checked cases table: patient_id,
    diagnosis, label, cohort): columns :data:`COLUMNS`, ordered by condition (config
    order), reader, patient."""
    path = Path(path)
    if rating_scale not in RATING_SCALES:
        raise InputError(f"reader_study.rating_scale must be one of {RATING_SCALES}, got {rating_scale!r}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the reader study ({error}); give a CSV file with "
                         f"columns {list(REQUIRED_COLUMNS)}") from error
    table.columns = [str(c).strip() for c in table.columns]
    if "patient_id" not in table.columns and "case" in table.columns:
        table = table.rename(columns={"case": "patient_id"})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; a reader study has one row per reader, "
                         f"case and condition with columns {list(REQUIRED_COLUMNS)} (optional: experience)")
    if "experience" not in table.columns:
        table["experience"] = ""
    for column in (*REQUIRED_COLUMNS, "experience"):
        table[column] = table[column].astype(str).str.strip()
    empty = (table[list(REQUIRED_COLUMNS)] == "").any(axis=1)
    if empty.any():
        raise InputError(f"{path}: empty value(s) on line(s) {_lines(empty)}; every row needs "
                         f"{list(REQUIRED_COLUMNS)}")
    if table.empty:
        raise InputError(f"{path}: no ratings; add one row per reader, case and condition")

    conditions = list(conditions)
    unknown = ~table["condition"].isin(conditions)
    if unknown.any():
        raise InputError(f"{path}: unknown condition(s) {sorted(set(table.loc[unknown, 'condition']))} on "
                         f"line(s) {_lines(unknown)}; use one of config reader_study.conditions {conditions} "
                         "or add the condition there")
    absent = [c for c in conditions if c not in set(table["condition"])]
    if absent:
        raise InputError(f"{path}: condition(s) {absent} of config reader_study.conditions have no "
                         f"ratings; add the readings or remove the condition from the config")

    known = cases.set_index("patient_id")
    unknown = ~table["patient_id"].isin(known.index)
    if unknown.any():
        raise InputError(f"{path}: case(s) {sorted(set(table.loc[unknown, 'patient_id']))[:10]} on line(s) "
                         f"{_lines(unknown)} are not in the cases table; correct the patient_id or add "
                         "the patient to the cases table")

    table["rating"] = _ratings(table, path, rating_scale)
    classes = list(classes)
    positives = positive_set(classes, positive_classes)
    table["decision"] = _decisions(table, path, classes)
    table["decision_label"] = table["decision"].map({name: i for i, name in enumerate(classes)}).astype(int)
    table["called_positive"] = table["decision"].isin(positives).astype(int)

    duplicated = table.duplicated(["reader", "patient_id", "condition"], keep=False)
    if duplicated.any():
        raise InputError(f"{path}: more than one rating of the same reader, case and condition on "
                         f"line(s) {_lines(duplicated)}; keep one reading each")
    experience = table.groupby("reader")["experience"].nunique()
    if (experience > 1).any():
        raise InputError(f"{path}: reader(s) {experience.index[experience > 1].tolist()} have more than one "
                         "experience value; give each reader one")
    _check_crossed(table, path, conditions)

    joined = table.join(known[["diagnosis", "label", "cohort"]], on="patient_id")
    joined["truth"] = joined["diagnosis"].isin(positives).astype(int)
    read_cases = joined.drop_duplicates("patient_id")
    n_positive = int(read_cases["truth"].sum())
    if min(n_positive, len(read_cases) - n_positive) < 2:
        raise InputError(f"{path}: the readers rated {n_positive} positive ({positives}) and "
                         f"{len(read_cases) - n_positive} negative case(s); a reader study needs at "
                         "least 2 of each")
    joined["condition"] = pd.Categorical(joined["condition"], categories=conditions)
    joined = joined.sort_values(["condition", "reader", "patient_id"], kind="mergesort")
    joined["condition"] = joined["condition"].astype(str)
    return joined[COLUMNS].reset_index(drop=True)


def _ratings(table: pd.DataFrame, path: Path, rating_scale: str) -> pd.Series:
    values = pd.to_numeric(table["rating"], errors="coerce")
    not_numeric = values.isna() | ~np.isfinite(values.to_numpy(dtype=float))
    if not_numeric.any():
        examples = table.loc[not_numeric, "rating"].tolist()[:5]
        raise InputError(f"{path}: rating(s) {examples} on line(s) {_lines(not_numeric)} are not numbers; "
                         + ("give the reader's probability of a positive case in [0, 1]"
                            if rating_scale == "probability" else
                            "give an integer confidence score (higher = more likely positive)"))
    if rating_scale == "probability":
        outside = (values < 0) | (values > 1)
        if outside.any():
            hint = ("; they look like percentages: divide by 100" if values.max() <= 100 and values.min() >= 0
                    else "")
            raise InputError(f"{path}: rating(s) {values[outside].tolist()[:5]} on line(s) {_lines(outside)} "
                             f"are not probabilities in [0, 1]{hint} (or set reader_study.rating_scale: "
                             "ordinal for integer scores)")
    else:
        fractional = values != np.round(values)
        if fractional.any():
            raise InputError(f"{path}: rating(s) {values[fractional].tolist()[:5]} on line(s) "
                             f"{_lines(fractional)} are not integer scores (reader_study.rating_scale: "
                             "ordinal); give integers or set rating_scale: probability")
    return values.astype(float)


def _decisions(table: pd.DataFrame, path: Path, classes: list[str]) -> pd.Series:
    """Class names; for two classes also 1 (positive, the last class) and 0."""
    allowed = {name: name for name in classes}
    if len(classes) == 2:
        allowed.update({"1": classes[1], "0": classes[0]})
    decisions = table["decision"].map(allowed)
    unknown = decisions.isna()
    if unknown.any():
        raise InputError(f"{path}: decision(s) {sorted(set(table.loc[unknown, 'decision']))[:5]} on line(s) "
                         f"{_lines(unknown)} are not one of {sorted(allowed)}; write the class the reader "
                         "chose (config `classes`)")
    return decisions


def _check_crossed(table: pd.DataFrame, path: Path, conditions: list[str]) -> None:
    """Every reader rates every read case in every condition."""
    readers = sorted(set(table["reader"]))
    read_cases = sorted(set(table["patient_id"]))
    expected = len(readers) * len(read_cases) * len(conditions)
    if len(table) == expected:
        return
    counts = table.groupby(["reader", "condition"])["patient_id"].nunique()
    gaps = []
    for reader in readers:
        for condition in conditions:
            n = int(counts.get((reader, condition), 0))
            if n < len(read_cases):
                gaps.append(f"{reader}/{condition}: {len(read_cases) - n} case(s) unrated")
    raise InputError(f"{path}: the reader study is not fully crossed ({len(table)} ratings, expected "
                     f"{len(readers)} readers x {len(read_cases)} cases x {len(conditions)} conditions = "
                     f"{expected}): {gaps[:6]}; every reader must rate every case in every condition "
                     "(add the missing ratings or remove the case from every reader's list)")
