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

N-class studies (more than two classes; :func:`read_multiclass_reader_study`): the
reader's class ``decision`` is what is analysed, so ``rating`` is optional::

    reader,patient_id,condition,decision,experience[,rating][,prob_<class> ...]
    R1,P017,unaided,ependymoma,junior,0.60,0.05,0.10,0.20,0.60,0.05

* ``decision``: the class the reader chose (config ``classes``);
* ``rating`` (optional): the reader's confidence in that decision (a probability or an
  integer score, config ``reader_study.rating_scale``), carried into the checked table
  and not analysed;
* ``prob_<class>`` (optional, all classes or none): the reader's probability of each
  class; a row must sum to 1 within 0.02 (rounding) and is divided by its sum. With them
  the readers get a macro-AUC besides their decision metrics.
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
MULTICLASS_REQUIRED_COLUMNS = ("reader", "patient_id", "condition", "decision")
#: Columns of the checked N-class table, in order (then prob_<class> when given).
MULTICLASS_COLUMNS = ["reader", "experience", "patient_id", "condition", "decision", "decision_label", "rating",
                      "diagnosis", "label", "cohort"]
#: Largest accepted gap of a reader's probability row from 1 (two-decimal rounding of 5 classes).
PROBABILITY_SUM_GAP = 0.02


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
    table, known = _read_table(path, cases, conditions, REQUIRED_COLUMNS)
    conditions = list(conditions)

    table["rating"] = _ratings(table, path, rating_scale)
    classes = list(classes)
    positives = positive_set(classes, positive_classes)
    table["decision"] = _decisions(table, path, classes)
    table["decision_label"] = table["decision"].map({name: i for i, name in enumerate(classes)}).astype(int)
    table["called_positive"] = table["decision"].isin(positives).astype(int)

    _check_design(table, path, conditions, "rating")

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


def read_multiclass_reader_study(path: str | Path, cases: pd.DataFrame, classes: Sequence[str],
                                 conditions: Sequence[str], rating_scale: str = "probability") -> pd.DataFrame:
    """An N-class ``readers.csv`` checked and joined to ``cases``: columns
    :data:`MULTICLASS_COLUMNS` (``rating`` NaN when absent; ``label`` the true class index,
    ``decision_label`` the decided one) and ``prob_<class>`` when given, ordered by
    condition (config order), reader, patient."""
    path = Path(path)
    classes = list(classes)
    table, known = _read_table(path, cases, conditions, MULTICLASS_REQUIRED_COLUMNS)
    conditions = list(conditions)
    table["decision"] = _decisions(table, path, classes)
    table["decision_label"] = table["decision"].map({name: i for i, name in enumerate(classes)}).astype(int)
    if "rating" in table.columns and (table["rating"].astype(str).str.strip() != "").any():
        table["rating"] = _ratings(table, path, rating_scale)
    else:
        table["rating"] = np.nan
    probability_columns = [f"prob_{name}" for name in classes]
    given = [c for c in probability_columns if c in table.columns]
    if given and len(given) != len(probability_columns):
        raise InputError(f"{path}: probability columns {given} given but {sorted(set(probability_columns) - set(given))} "
                         "missing; give prob_<class> for every class of config `classes` or none")
    if given:
        values = table[probability_columns].apply(pd.to_numeric, errors="coerce")
        bad = values.isna().any(axis=1) | ((values < 0) | (values > 1)).any(axis=1)
        if bad.any():
            raise InputError(f"{path}: prob_<class> values on line(s) {_lines(bad)} are not probabilities in "
                             "[0, 1]")
        total = values.sum(axis=1)
        off = (total - 1).abs() > PROBABILITY_SUM_GAP
        if off.any():
            raise InputError(f"{path}: the class probabilities on line(s) {_lines(off)} sum to "
                             f"{total[off].round(3).tolist()[:5]}, not 1; give each reading's probability of "
                             "every class")
        table[probability_columns] = values.div(total, axis=0)
    _check_design(table, path, conditions, "reading")
    joined = table.join(known[["diagnosis", "label", "cohort"]], on="patient_id")
    if joined["patient_id"].nunique() < 2:
        raise InputError(f"{path}: the readers read {joined['patient_id'].nunique()} case(s); a reader study "
                         "needs at least 2")
    joined["condition"] = pd.Categorical(joined["condition"], categories=conditions)
    joined = joined.sort_values(["condition", "reader", "patient_id"], kind="mergesort")
    joined["condition"] = joined["condition"].astype(str)
    joined["label"] = joined["label"].astype(int)
    return joined[[*MULTICLASS_COLUMNS, *(probability_columns if given else [])]].reset_index(drop=True)


def _read_table(path: Path, cases: pd.DataFrame, conditions: Sequence[str], required: Sequence[str]):
    """readers.csv as strings, with its columns, conditions and cases checked; and the
    cases table indexed by patient_id."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the reader study ({error}); give a CSV file with "
                         f"columns {list(required)}") from error
    table.columns = [str(c).strip() for c in table.columns]
    if "patient_id" not in table.columns and "case" in table.columns:
        table = table.rename(columns={"case": "patient_id"})
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; a reader study has one row per reader, "
                         f"case and condition with columns {list(required)} (optional: experience)")
    if "experience" not in table.columns:
        table["experience"] = ""
    for column in (*required, "experience"):
        table[column] = table[column].astype(str).str.strip()
    empty = (table[list(required)] == "").any(axis=1)
    if empty.any():
        raise InputError(f"{path}: empty value(s) on line(s) {_lines(empty)}; every row needs "
                         f"{list(required)}")
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
    return table, known


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


def _check_design(table: pd.DataFrame, path, conditions, reading: str) -> None:
    """One ``reading`` per reader, case and condition, one experience value per reader,
    and every reader reading every case in every condition (:func:`_check_crossed`)."""
    duplicated = table.duplicated(["reader", "patient_id", "condition"], keep=False)
    if duplicated.any():
        raise InputError(f"{path}: more than one {reading} of the same reader, case and condition on "
                         f"line(s) {_lines(duplicated)}; keep one reading each")
    experience = table.groupby("reader")["experience"].nunique()
    if (experience > 1).any():
        raise InputError(f"{path}: reader(s) {experience.index[experience > 1].tolist()} have more than one "
                         "experience value; give each reader one")
    _check_crossed(table, path, conditions)


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
