"""The exclusion record of an annotations stage: what the image table of a sequence
legitimately leaves out, and why, one row each (read by the participant flow).

Patients of the cases table without an image (labelme) or volume of the sequence are
recorded the same way for both study kinds (level ``patient``); files the table leaves
aside (level ``image``) are found by each kind's own tree walk, given here as a callback.
Bad input is never recorded: it stops the annotations stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from spinedx.readers.cases import read_cases

#: Columns of the exclusion record.
EXCLUSION_COLUMNS = ["patient_id", "sequence", "level", "item", "reason"]


def exclusion_row(patient_id: str, sequence: str, level: str, item: str, reason: str) -> dict:
    return {"patient_id": patient_id, "sequence": sequence, "level": level, "item": item, "reason": reason}


def exclusion_record(cases_path: str | Path, config, table: pd.DataFrame, sequence: str | None,
                     missing_reason: str, image_rows: Callable[[str], list[dict]]) -> pd.DataFrame:
    """The record of ``sequence`` (None: every sequence of the config): per sequence, a
    ``patient`` row (``missing_reason``) for each patient of the cases table without a row
    of that sequence in ``table``, then the ``image`` rows ``image_rows(sequence)`` gives."""
    sequences = [sequence] if sequence else list(config["sequences"])
    cases = read_cases(cases_path, config["classes"], all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=None)  # names checked when the table was made
    rows = []
    for name in sequences:
        have = set(table.loc[table["sequence"] == name, "patient_id"])
        rows += [exclusion_row(patient, name, "patient", "", missing_reason)
                 for patient in sorted(set(cases["patient_id"]) - have)]
        rows += image_rows(name)
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)
