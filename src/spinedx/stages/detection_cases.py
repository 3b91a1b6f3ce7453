"""Detection cases stage: the cases table and every patient's volumes, read and checked
once, as two tables.

``cases``: one row per patient with cohort, lesion count, the original grid (shape and
affine, for bringing probability maps back onto it), each sequence's volume path and
sha256 and the lesion labels' (provenance, audit), plus the cases table's other columns
(age, sex, ...). ``lesions``: one row per ground-truth lesion (instance label) with its
voxel count, volume, equivalent diameter and centroid (LPS mm). Every sequence and the
labels of a patient must lie on one grid; ``n_lesions`` in the cases table, when given,
must equal the labels' count.
"""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.detection_task import LESIONS_NAME
from spinedx.errors import InputError
from spinedx.imaging.components import lesions_from_mask
from spinedx.imaging.lesions import check_aligned
from spinedx.io import write_parquet
from spinedx.readers.detection_cases import (
    locate_case,
    path_column,
    read_detection_cases,
    sha256_column,
    volume_sha256,
)
from spinedx.readers.volume import read_mask, read_volume

log = logging.getLogger(__name__)

LESION_COLUMNS = ["patient_id", "cohort", "lesion", "label", "size_voxels", "volume_mm3", "equivalent_diameter_mm",
                  "centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]


def main_stage(config, images_dir, cases_path, out_cases, out_lesions) -> None:
    sequences = list(config["sequences"])
    cases = read_detection_cases(cases_path, all_external=bool(config["audit"]["bundle"]))
    max_voxels = config["data"]["max_volume_voxels"]
    rows, lesion_rows = [], []
    for case in cases.to_dict("records"):
        patient_id = case["patient_id"]
        files = locate_case(images_dir, patient_id, config["sequences"])
        reference = None
        row = {}
        for sequence in sequences:
            volume = read_volume(files[sequence], max_voxels=max_voxels)
            if reference is None:
                reference = volume
            else:
                check_aligned(reference, volume, source=files[sequence])
            row[path_column(sequence)] = str(files[sequence])
            row[sha256_column(sequence)] = volume_sha256(files[sequence])
        labels = read_mask(files[LESIONS_NAME], max_voxels=max_voxels)
        check_aligned(reference, labels, source=files[LESIONS_NAME])
        lesions = lesions_from_mask(labels.array, labels.spacing, instances=True, affine=labels.affine)
        if "n_lesions" in case and int(case["n_lesions"]) != len(lesions):
            raise InputError(f"{files[LESIONS_NAME]}: {len(lesions)} lesion label(s), the cases table "
                             f"{cases_path} says n_lesions {case['n_lesions']} for {patient_id}; check the "
                             "file (labels must be instance values 1, 2, ...) or the table")
        row[path_column(LESIONS_NAME)] = str(files[LESIONS_NAME])
        row[sha256_column(LESIONS_NAME)] = volume_sha256(files[LESIONS_NAME])
        shape, spacing = reference.shape, reference.spacing
        rows.append({**{k: v for k, v in case.items() if k not in ("n_lesions",)},
                     "n_lesions": len(lesions), "has_lesions": bool(len(lesions)),
                     **{f"shape_{a}": int(n) for a, n in zip("zyx", shape)},
                     **{f"spacing_{a}": float(s) for a, s in zip("zyx", spacing)},
                     "affine": [float(v) for v in reference.affine.ravel()], **row})
        for index, (region, value) in enumerate(zip(lesions.regions, lesions.source_values)):
            lesion_rows.append([patient_id, case["cohort"], index, int(value), region.size_voxels, region.volume_mm3,
                                region.equivalent_diameter_mm, *region.centroid_world])
    table = pd.DataFrame(rows)
    write_parquet(table, out_cases)
    write_parquet(pd.DataFrame(lesion_rows, columns=LESION_COLUMNS), out_lesions)
    log.info("%d cases (%d internal, %d external), %d lesions -> %s", len(table),
             int((table["cohort"] == "internal").sum()), int((table["cohort"] == "external").sum()),
             len(lesion_rows), out_cases)
