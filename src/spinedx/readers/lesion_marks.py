"""Readers' lesion marks: one CSV row per mark a reader set on a case.

Columns ``reader``, ``patient_id``, ``x``, ``y``, ``z``, ``confidence`` (any number; a
higher one = surer; it orders a reader's marks, e.g. a 1-5 scale). Coordinates
(config ``detection_evaluation.readers.coordinates``):

- ``mm_lps``: world millimetres in DICOM patient coordinates (what DICOM viewers show):
  +x toward the patient's left, +y posterior, +z superior;
- ``mm_ras``: world millimetres in RAS (NIfTI, 3D Slicer, ITK-SNAP's world display):
  x and y negated with respect to LPS;
- ``voxel``: voxel indices of the canonical array (:mod:`spinedx.readers.volume`:
  x = column toward the patient's left, y = row toward posterior, z = slice toward
  superior), whole or fractional.

A mark finds the lesion whose label voxels hold its point (the voxel nearest to it):
:func:`spinedx.stats.froc.match_marks`. A case a reader read without marking anything has
no row; which cases each reader read is the study's setting (``detection_evaluation.readers.cohort``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.readers.csv_tables import read_csv_table, require_columns
from spinedx.readers.volume import Volume, ras_to_lps

MARK_COLUMNS = ("reader", "patient_id", "x", "y", "z", "confidence")
COORDINATES = ("mm_lps", "mm_ras", "voxel")


def read_marks(path) -> pd.DataFrame:
    """The marks table, checked (columns present, numbers finite, names plain)."""
    path = Path(path)
    marks = read_csv_table(path, "the readers' marks", dtype={"reader": str, "patient_id": str})
    require_columns(marks, path, MARK_COLUMNS, f"the readers' marks need {list(MARK_COLUMNS)} (one row per mark)")
    for column in ("reader", "patient_id"):
        empty = marks[column].isna() | (marks[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(f"{path}: empty {column} on line(s) {_lines(empty)}")
        marks[column] = marks[column].astype(str).str.strip()
    for column in ("x", "y", "z", "confidence"):
        values = pd.to_numeric(marks[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            raise InputError(f"{path}: {column} on line(s) {_lines(pd.Series(bad))} is not a finite number")
        marks[column] = values.astype(float)
    return marks[list(MARK_COLUMNS)].reset_index(drop=True)


def _lines(mask: pd.Series) -> list[int]:
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))][:10]


def marks_to_voxels(marks: pd.DataFrame, volume: Volume, coordinates: str) -> np.ndarray:
    """Continuous canonical indices ``(n, 3)`` in (z, y, x) order of marks on ``volume``'s grid."""
    if coordinates not in COORDINATES:
        raise InputError(f"coordinates must be one of {COORDINATES}; got {coordinates!r}")
    points = marks[["x", "y", "z"]].to_numpy(dtype=np.float64).reshape(-1, 3)
    if coordinates == "voxel":
        return points[:, ::-1].copy()
    if coordinates == "mm_ras":
        points = ras_to_lps(points)
    return volume.world_to_voxel(points)
