"""The inputs of a detection study: the cases table and each patient's volumes.

Layout (config ``data.images_dir``)::

    <images_dir>/<patient_id>/<sequence folder>/   one NIfTI file (.nii, .nii.gz) or the
                                                  DICOM files of one series, per sequence
    <images_dir>/<patient_id>/lesions.nii.gz        instance labels: 0 background, one value
                                                  per lesion (or lesions.nii, or a lesions/
                                                  folder holding a NIfTI file or a DICOM series)

Sequence folders map to canonical sequences through config ``sequences`` (matched
case-insensitively, as for the annotation tree). Every sequence and the lesion labels of a
patient must lie on one voxel grid (co-registered, as the 3D VISIBLE sequence's two
images are). The cases table has one row per patient: ``patient_id``, ``cohort``
(internal | external) and optionally ``n_lesions``, which is then checked against the
label volume (a mismatch means the wrong file).

Volumes are read by :mod:`spinedx.readers.volume` (canonical orientation, LPS mm, no
header value kept). Locating files needs the standard library and pandas only, so the
workflow can declare them as inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.detection_task import LESIONS_NAME
from spinedx.errors import InputError
from spinedx.readers.cases import COHORTS, read_patient_table

DETECTION_CASES_REQUIRED = ("patient_id", "cohort")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def read_detection_cases(path, all_external: bool = False) -> pd.DataFrame:
    """The cases table of a detection study (one row per patient), checked.

    ``all_external`` (audit mode): every patient is external; the cohort column is optional.
    """
    path = Path(path)
    cases = read_patient_table(path, DETECTION_CASES_REQUIRED, "a detection study's cases table", all_external,
                               optional="n_lesions, age, sex, ...")
    unknown = ~cases["cohort"].isin(COHORTS)
    if unknown.any():
        raise InputError(f"{path}: unknown cohort {sorted(set(cases.loc[unknown, 'cohort']))} on line(s) "
                         f"{_lines(unknown)}; expected one of {list(COHORTS)}")
    bad_id = ~cases["patient_id"].str.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
    if bad_id.any():
        raise InputError(f"{path}: patient_id on line(s) {_lines(bad_id)} is not a plain folder name "
                         "(letters, digits, _ . -); rename the patient folders and the rows")
    if "n_lesions" in cases.columns:
        counts = pd.to_numeric(cases["n_lesions"], errors="coerce")
        bad = counts.isna() | (counts < 0) | (counts != counts.round())
        if bad.any():
            raise InputError(f"{path}: n_lesions on line(s) {_lines(bad)} is not a count >= 0")
        cases["n_lesions"] = counts.astype(int)
    return cases.astype({"patient_id": str, "cohort": str}).reset_index(drop=True)


def _lines(mask: pd.Series) -> list[int]:
    return [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())][:10]


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _volume_in(folder: Path) -> Path:
    """The volume a folder holds: its one NIfTI file, or the folder itself (a DICOM series)."""
    files = [p for p in _children(folder) if p.is_file()]
    niftis = [p for p in files if p.name.lower().endswith(NIFTI_SUFFIXES)]
    if len(niftis) == 1 and len(files) == 1:
        return niftis[0]
    if niftis:
        raise InputError(f"{folder}: holds {len(niftis)} NIfTI file(s) among {len(files)} files; a sequence "
                         "folder holds exactly one volume (one .nii/.nii.gz file, or the DICOM files of one series)")
    if not files:
        raise InputError(f"{folder}: empty; put the sequence's volume in it (a .nii.gz file or a DICOM series)")
    return folder


def locate_case(images_dir, patient_id: str, sequences: dict[str, list[str]]) -> dict[str, Path]:
    """``{sequence: volume path, "lesions": label volume path}`` of one patient."""
    patient_dir = Path(images_dir) / patient_id
    if not patient_dir.is_dir():
        raise InputError(f"{patient_dir}: no folder for patient {patient_id} of the cases table; add "
                         "<patient>/<sequence>/ volumes and <patient>/lesions.nii.gz, or remove the row")
    found: dict[str, Path] = {}
    folders = {p.name.lower(): p for p in _children(patient_dir)}
    for sequence, names in sequences.items():
        matches = [folders[n.lower()] for n in names if n.lower() in folders and folders[n.lower()].is_dir()]
        if not matches:
            raise InputError(f"{patient_dir}: no folder for sequence {sequence} (looked for {names}, "
                             "case-insensitively); add it or map the folder in config `sequences`")
        if len(matches) > 1:
            raise InputError(f"{patient_dir}: folders {[m.name for m in matches]} all hold sequence {sequence}; "
                             "keep one")
        found[sequence] = _volume_in(matches[0])
    candidates = [patient_dir / f"{LESIONS_NAME}{suffix}" for suffix in NIFTI_SUFFIXES] + [patient_dir / LESIONS_NAME]
    present = [c for c in candidates if c.exists()]
    if not present:
        raise InputError(f"{patient_dir}: no lesion labels; add {LESIONS_NAME}.nii.gz (0 = background, one "
                         "value per lesion; all zero for a patient without lesions)")
    if len(present) > 1:
        raise InputError(f"{patient_dir}: several lesion label files {[p.name for p in present]}; keep one")
    found[LESIONS_NAME] = _volume_in(present[0]) if present[0].is_dir() else present[0]
    return found


def input_files(images_dir, sequences: dict[str, list[str]], cases_path, all_external: bool = False) -> list[str]:
    """Every file of every patient's volumes (DICOM series: every file of the folder), for
    the workflow's DAG; empty when the cases table does not exist yet. ``all_external``
    (audit mode): the cohort column is optional, as in :func:`read_detection_cases`."""
    if not Path(cases_path).is_file() or not Path(images_dir).is_dir():
        return []
    files: list[str] = []
    for patient_id in read_detection_cases(cases_path, all_external)["patient_id"]:
        for path in locate_case(images_dir, patient_id, sequences).values():
            files.extend(str(p) for p in (_children(path) if path.is_dir() else [path]))
    return files


def volume_sha256(path) -> str:
    """sha256 of a volume: its file, or for a DICOM series the hash of its files' names
    and hashes (sorted), so a copied series hashes the same."""
    import hashlib

    from spinedx.io import sha256_file

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in (p for p in _children(path) if p.is_file()):
        digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


# --- the cases table of the detection_cases stage ---------------------------------------------


def path_column(name: str) -> str:
    """Column of a sequence's (or the lesion labels') volume path."""
    return f"path_{name}"


def sha256_column(name: str) -> str:
    return f"sha256_{name}"


def case_grid(row) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape, affine) of a case's original grid from its row of the cases table."""
    shape = tuple(int(row[f"shape_{axis}"]) for axis in "zyx")
    return shape, np.asarray(row["affine"], dtype=np.float64).reshape(4, 4)


def read_cases_table(path) -> pd.DataFrame:
    """The cases table the detection_cases stage wrote (parquet), in its order."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the detection cases table ({error}); rerun detection_cases") from error
