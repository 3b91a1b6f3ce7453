"""Annotations stage of a volume study: one row per case x sequence (``spinedx annotations``
with config ``data.format: volume``).

Walks the volume tree (:mod:`spinedx.readers.volume_tree`), reads each image and its
lesion mask through the volume readers (:mod:`spinedx.readers.volume`: canonical
orientation, LPS millimetres, de-identified DICOM), or takes the lesion's box from the
boxes CSV, and tabulates geometry, hashes and the lesion's box and centroid. Only voxels
and geometry come out of the readers: no header value reaches the table or the log.
The diagnosis comes from the cases table, as for labelme studies.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.imaging.lesions import box_from_row, check_aligned, lesion_box, lesion_centroid
from spinedx.io import sha256_file, write_csv, write_parquet
from spinedx.readers.cases import read_cases
from spinedx.readers.exclusions import exclusion_record, exclusion_row
from spinedx.readers.tree import check_tree
from spinedx.readers.volume import read_mask, read_volume
from spinedx.readers.volume_tree import read_boxes, sha256_image, volume_cases, voxels_sha256

log = logging.getLogger(__name__)

AXES = ("z", "y", "x")
VOLUME_COLUMNS = [
    "image_id", "patient_id", "sequence", "sequence_folder", "diagnosis", "label", "cohort",
    "image_path", "image_format", "image_sha256", "voxels_sha256",
    "annotation_path", "annotation_kind", "annotation_sha256",
    *(f"shape_{a}" for a in AXES), *(f"spacing_{a}" for a in AXES),
    *(f"box_{a}{end}" for a in AXES for end in ("0", "1")),
    *(f"centroid_{a}" for a in AXES), "centroid_lps_x", "centroid_lps_y", "centroid_lps_z",
    "lesion_voxels", "lesion_ml",
]


def case_row(case, images_dir: Path, data: dict, boxes: dict) -> dict:
    """The table row of one case: geometry, hashes, lesion box and centroid."""
    max_voxels = data["max_volume_voxels"]
    image = read_volume(case.image, max_voxels=max_voxels)
    key = (case.patient_id, case.sequence)
    if case.mask is not None:
        if key in boxes:
            raise InputError(f"{case.mask}: this case also has a row in the boxes table {data['boxes']}; "
                             "give its lesion once (a mask or a box)")
        mask = read_mask(case.mask, max_voxels=max_voxels)
        check_aligned(image, mask, source=case.mask)
        box = lesion_box(mask.array, source=case.mask)
        centroid = lesion_centroid(mask.array, source=case.mask)
        voxels = int(np.count_nonzero(mask.array))
        annotation = {"annotation_path": case.mask.relative_to(images_dir).as_posix(), "annotation_kind": "mask",
                      "annotation_sha256": sha256_file(case.mask)}
    elif key in boxes:
        box = box_from_row(boxes[key], image, units=data["box_units"], source=f"{data['boxes']} ({case.patient_id}, "
                           f"{case.sequence})")
        centroid = np.array([(a + b - 1) / 2 for a, b in zip(box.start, box.stop)])
        voxels = int(np.prod(box.shape))
        annotation = {"annotation_path": str(data["boxes"]), "annotation_kind": "box",
                      "annotation_sha256": sha256_file(data["boxes"])}
    else:
        raise InputError(f"{case.image}: no lesion for patient {case.patient_id}, sequence {case.sequence}; "
                         "put mask.nii.gz beside the image or a row in the boxes table (config data.boxes)")
    lps = image.voxel_to_world(centroid)
    return {
        "image_id": f"{case.patient_id}/{case.sequence_folder}",
        "image_path": case.image.relative_to(images_dir).as_posix(),
        "image_format": case.image_format, "image_sha256": sha256_image(case),
        "voxels_sha256": voxels_sha256(image), **annotation,
        **{f"shape_{a}": n for a, n in zip(AXES, image.shape)},
        **{f"spacing_{a}": s for a, s in zip(AXES, image.spacing)},
        **{f"box_{a}0": int(start) for a, start in zip(AXES, box.start)},
        **{f"box_{a}1": int(stop) for a, stop in zip(AXES, box.stop)},
        **{f"centroid_{a}": float(c) for a, c in zip(AXES, centroid)},
        "centroid_lps_x": float(lps[0]), "centroid_lps_y": float(lps[1]), "centroid_lps_z": float(lps[2]),
        "lesion_voxels": voxels, "lesion_ml": voxels * float(np.prod(image.spacing)) / 1000.0,
    }


def tabulate(images_dir, cases_path, config, sequence: str | None = None) -> pd.DataFrame:
    """One row per case (patient x sequence) of one sequence (or all)."""
    images_dir = Path(images_dir)
    sequences, data = config["sequences"], config["data"]
    if sequence is not None and sequence not in sequences:
        raise InputError(f"unknown sequence {sequence!r}; use one of config `sequences`: {list(sequences)}")
    cases = read_cases(cases_path, config["classes"], all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=config["data"]["external_cohorts"])
    check_tree(images_dir, sequences, cases, cases_path)
    boxes = read_boxes(data["boxes"], sequences) if data["boxes"] else {}
    by_patient = cases.set_index("patient_id")
    rows = []
    for case in volume_cases(images_dir, sequences, sequence):
        patient = by_patient.loc[case.patient_id]
        rows.append({"patient_id": case.patient_id, "sequence": case.sequence,
                     "sequence_folder": case.sequence_folder, "diagnosis": patient["diagnosis"],
                     "label": int(patient["label"]), "cohort": patient["cohort"],
                     **case_row(case, images_dir, data, boxes)})
    table = pd.DataFrame(rows, columns=VOLUME_COLUMNS)
    what = f"sequence {sequence}" if sequence else "any sequence"
    if table.empty:
        raise InputError(f"{images_dir}: no volumes found for {what}; lay them out as "
                         "<patient_id>/<sequence folder>/image.nii.gz + mask.nii.gz (README, Volumes)")
    check_duplicates(table, images_dir)
    missing = sorted(set(cases["patient_id"]) - set(table["patient_id"]))
    if missing:
        log.warning("%d patient(s) of %s have no volume for %s: %s", len(missing), cases_path, what, missing[:10])
    return table


def check_duplicates(table: pd.DataFrame, images_dir: Path) -> None:
    """The same voxels under two patients (whatever the file format) leak between folds or cohorts."""
    for column in ("image_sha256", "voxels_sha256"):
        owners = table.groupby(column)["patient_id"].nunique()
        shared = table[table[column].isin(owners[owners > 1].index)].sort_values(column)
        if not shared.empty:
            raise InputError(f"the same image ({column}) appears under different patients: "
                             f"{[str(images_dir / p) for p in shared['image_path']][:6]}; remove the copies "
                             "so no image is both trained and tested on")


# The participant flow's exclusion record (spinedx.readers.exclusions).
NO_VOLUME = "no volume of this sequence"
NOT_READ = "file beside the volume and its lesion, not read"


def exclusions(images_dir, cases_path, config, sequence: str | None, table: pd.DataFrame) -> pd.DataFrame:
    """What the volume table of ``sequence`` (None: all) legitimately leaves out, one row
    each: patients of the cases table without a volume of it (level ``patient``), and
    files in a case's sequence folder that are neither its image (file or DICOM series
    folder) nor its mask (level ``image``, e.g. an old segmentation or a report). A volume
    that cannot be read, a missing lesion or a second image is bad input: it stops the
    stage (:func:`tabulate`) and is never recorded here. Read by the participant flow."""
    images_dir = Path(images_dir)

    def unread(name: str) -> list[dict]:
        rows = []
        for case in volume_cases(images_dir, config["sequences"], name):
            folder = images_dir / case.patient_id / case.sequence_folder
            if case.image == folder:  # a DICOM series in the sequence folder itself: every file is a slice
                continue
            used = {case.image, *([case.mask] if case.mask is not None else [])}
            rows += [exclusion_row(case.patient_id, name, "image", path.relative_to(images_dir).as_posix(), NOT_READ)
                     for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if path not in used]
        return rows

    return exclusion_record(cases_path, config, table, sequence, NO_VOLUME, unread)


def main_stage(config, images_dir, cases_path, sequence, out, exclusions_out=None) -> pd.DataFrame:
    table = tabulate(images_dir, cases_path, config, sequence)
    if exclusions_out is not None:
        excluded = exclusions(images_dir, cases_path, config, sequence, table)
        write_csv(excluded, exclusions_out)
        log.info("%d exclusion(s) recorded -> %s", len(excluded), exclusions_out)
    write_parquet(table, out)
    log.info("%d volumes of %d patients -> %s", len(table), table["patient_id"].nunique(), out)
    return table
