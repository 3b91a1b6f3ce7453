"""The cases table: one row per patient, diagnosis (histopathology) and cohort.

Cohorts: ``internal`` (cross-validation or hold-out) and the external test cohorts the
config names (``data.external_cohorts``; the reference study's one is ``external``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.readers.csv_tables import read_csv_table, require_columns

INTERNAL_COHORT = "internal"
COHORTS = (INTERNAL_COHORT, "external")
CASES_REQUIRED_COLUMNS = ("patient_id", "diagnosis", "cohort")


def read_cases(path: str | Path, classes: list[str], all_external: bool = False,
               external_cohorts=("external",)) -> pd.DataFrame:
    """Read and validate the cases table (one row per patient).

    ``all_external`` (audit mode): every patient is external test data; the cohort
    column is optional and ignored. ``external_cohorts``: the names of the external
    cohorts (config ``data.external_cohorts``) the cohort column may hold besides
    ``internal``; None accepts any name (for stages that only need to know who is
    internal: the annotations stage checks the names against the config).
    """
    path = Path(path)
    cases = read_patient_table(path, CASES_REQUIRED_COLUMNS, "the cases table", all_external,
                               optional="age, sex")
    _check_values(cases, "diagnosis", list(classes), path, " (config key `classes`)")
    if external_cohorts is not None and not all_external:
        _check_values(cases, "cohort", [INTERNAL_COHORT, *external_cohorts], path,
                      " (external cohorts are named in config `data.external_cohorts`)")
    cases["label"] = cases["diagnosis"].map({name: i for i, name in enumerate(classes)})
    return cases.astype({"patient_id": str, "diagnosis": str, "cohort": str})


def read_patient_table(path: Path, required, what: str, all_external: bool = False,
                       optional: str = "") -> pd.DataFrame:
    """A one-row-per-patient CSV (``what`` names it in errors): the ``required`` columns
    present, stripped and non-empty, each patient once. ``all_external`` (audit mode):
    every patient is external, whatever the cohort column says (it may be absent)."""
    table = read_csv_table(path, what, dtype={column: str for column in required})
    if all_external and len(table.columns):
        table["cohort"] = "external"
    require_columns(table, path, required,
                    f"{what} needs {list(required)}" + (f" (optional: {optional})" if optional else ""))
    for column in required:
        table[column] = table[column].astype("string").str.strip()
        empty = table[column].isna() | (table[column] == "")
        if empty.any():
            raise InputError(f"{path}: empty {column} on line(s) {_lines(empty)}")
    duplicated = table["patient_id"].duplicated(keep=False)
    if duplicated.any():
        ids = sorted(set(table.loc[duplicated, "patient_id"]))
        raise InputError(
            f"{path}: patient(s) listed more than once: {ids}; a patient belongs to one "
            "cohort (the same patient in both cohorts would leak); keep one row per patient"
        )
    return table

def _check_values(cases: pd.DataFrame, column: str, allowed: list[str], path, hint: str = "") -> None:
    unknown = ~cases[column].isin(allowed)
    if unknown.any():
        values = sorted(set(cases.loc[unknown, column]))
        raise InputError(f"{path}: unknown {column} {values} on line(s) {_lines(unknown)}; "
                         f"expected one of {allowed}{hint}")


def _lines(mask: pd.Series) -> list[int]:
    # +2: one for the header line, one because pandas counts from zero.
    return [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())][:10]
