"""The folder tree of a volume study: one image and its lesion per patient and sequence.

Layout (config ``data.format: volume``)::

    <images_dir>/<patient_id>/<sequence folder>/image.nii.gz     the image (or image.nii)
    <images_dir>/<patient_id>/<sequence folder>/mask.nii.gz      the lesion (or mask.nii)

or, for DICOM, the slices of one series in the sub-folder ``image/`` beside the mask::

    <images_dir>/<patient_id>/<sequence folder>/image/<slice files>
    <images_dir>/<patient_id>/<sequence folder>/mask.nii.gz

or the slices directly in the sequence folder (the shared volume layout), the lesion then
given as a row of the boxes CSV (config ``data.boxes``). Sequence folder names map to
canonical sequences through config ``sequences`` as for labelme trees
(:mod:`spinedx.readers.tree`, whose checks of patient and sequence folders apply). The
mask is on the image's grid; every non-zero voxel is lesion. A case has a mask or a box
row, never both (which one would be meant is unknown).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import sha256_file
from spinedx.readers.csv_tables import read_csv_table, require_columns
from spinedx.readers.tree import sequence_folder_lookup
from spinedx.readers.volume import MASK_DTYPE, Volume, read_mask, read_volume

IMAGE_FILES = ("image.nii.gz", "image.nii")
SERIES_FOLDER = "image"
MASK_FILES = ("mask.nii.gz", "mask.nii")
BOX_KEYS = ("patient_id", "sequence")
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's image and lesion mask are (``mask`` None: a boxes CSV row)."""

    patient_id: str
    sequence_folder: str
    sequence: str
    image: Path
    image_format: str  # "nifti" | "dicom_series"
    mask: Path | None


def locate(folder: Path, patient_id: str, sequence: str) -> CaseFiles:
    """The image and mask of one sequence folder, or an InputError naming it and the fix."""
    entries = {p.name: p for p in folder.iterdir() if not p.name.startswith(".")}
    masks = [entries[name] for name in MASK_FILES if name in entries and entries[name].is_file()]
    images = [entries[name] for name in IMAGE_FILES if name in entries and entries[name].is_file()]
    series = entries.get(SERIES_FOLDER)
    if len(masks) > 1 or len(images) > 1:
        raise InputError(f"{folder}: holds both {' and '.join(p.name for p in [*masks, *images][:2])}; "
                         "keep one image and one mask per sequence folder")
    if images:
        if series is not None:
            raise InputError(f"{folder}: holds {images[0].name} and the folder {SERIES_FOLDER}/; keep "
                             "one image per sequence folder (NIfTI or a DICOM series)")
        image, kind = images[0], "nifti"
    elif series is not None and series.is_dir():
        image, kind = series, "dicom_series"
    else:
        others = [p for name, p in sorted(entries.items()) if p not in masks]
        if not others:
            raise InputError(f"{folder}: no image; put image.nii.gz, or the DICOM slices of the series "
                             f"(in a sub-folder {SERIES_FOLDER}/ when a mask lies beside them)")
        if masks:
            raise InputError(f"{folder}: DICOM slices and {masks[0].name} in one folder; move the "
                             f"slices into a sub-folder {SERIES_FOLDER}/ beside the mask")
        image, kind = folder, "dicom_series"
    return CaseFiles(patient_id, folder.name, sequence, image, kind, masks[0] if masks else None)


def volume_cases(images_dir: Path, sequences: dict[str, list[str]],
                 sequence: str | None = None) -> Iterator[CaseFiles]:
    """Every case (patient x sequence folder) of one sequence (None: all), sorted by path."""
    lookup = sequence_folder_lookup(sequences)
    for folder in sorted(p for p in Path(images_dir).glob("*/*") if p.is_dir()):
        if folder.name.startswith(".") or folder.parent.name.startswith("."):
            continue
        canonical = lookup.get(folder.name.lower())
        if canonical is None or (sequence and canonical != sequence):
            continue
        yield locate(folder, folder.parent.name, canonical)


def sha256_series(folder: Path) -> str:
    """One hash of a DICOM series folder: its files' names and contents, in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def sha256_image(case: CaseFiles) -> str:
    """The image's file hash (NIfTI) or series hash (DICOM), for provenance."""
    return sha256_file(case.image) if case.image_format == "nifti" else sha256_series(case.image)


def read_boxes(path, sequences) -> dict[tuple[str, str], dict]:
    """The boxes CSV as {(patient_id, sequence): row}; one row per patient and sequence,
    ``sequence`` one of config ``sequences``."""
    path = Path(path)
    table = read_csv_table(path, "the boxes table (config data.boxes)", dtype={"patient_id": str, "sequence": str})
    require_columns(table, path, BOX_KEYS, "a boxes table has patient_id, sequence and the box columns of "
                                           "config data.box_units")
    unknown = sorted(set(table["sequence"]) - set(sequences))
    if unknown:
        raise InputError(f"{path}: unknown sequence(s) {unknown}; use the canonical names of config "
                         f"`sequences` ({list(sequences)})")
    duplicated = table.duplicated(list(BOX_KEYS), keep=False)
    if duplicated.any():
        pairs = table.loc[duplicated, list(BOX_KEYS)].drop_duplicates().values.tolist()[:5]
        raise InputError(f"{path}: more than one box for {pairs}; give one box per patient and "
                         "sequence (the lesion the diagnosis is about)")
    return {(row["patient_id"], row["sequence"]): row for row in table.to_dict("records")}


def voxels_sha256(volume: Volume) -> str:
    """A hash of the voxels alone (shape and float32 values): the same image stored as
    NIfTI or as a DICOM series hashes alike, so a training image comes back recognised
    whatever its format."""
    digest = hashlib.sha256(repr(volume.shape).encode())
    digest.update(np.ascontiguousarray(volume.array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def read_case(row, images_dir, max_voxels: int) -> tuple[Volume, Volume]:
    """The image of a row of a volume annotations table and its lesion mask on the image's
    grid (the mask file, or the row's box as a mask); refuses an image that changed since
    the table was made (its voxels hash)."""
    images_dir = Path(images_dir)
    image = read_volume(images_dir / row.image_path, max_voxels=max_voxels)
    if voxels_sha256(image) != row.voxels_sha256:
        raise InputError(f"{images_dir / row.image_path}: the volume changed since the annotations stage; "
                         "rerun the workflow")
    if row.annotation_kind == "mask":
        lesion = read_mask(images_dir / row.annotation_path, max_voxels=max_voxels)
        if lesion.shape != image.shape:
            raise InputError(f"{images_dir / row.annotation_path}: the mask changed since the annotations "
                             "stage; rerun the workflow")
    else:
        mask = np.zeros(image.shape, dtype=MASK_DTYPE)
        mask[tuple(slice(getattr(row, f"box_{a}0"), getattr(row, f"box_{a}1")) for a in AXES)] = 1
        lesion = Volume(mask, image.affine)
    return image, lesion
