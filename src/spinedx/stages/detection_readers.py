"""Detection readers stage: the readers' lesion marks matched to the lesions like the
model's candidates, as two tables.

Every reader read every case of ``detection_evaluation.readers.cohort`` (a case without a row of
theirs was read and left unmarked). A mark finds the lesion whose label voxels hold its
point (:func:`spinedx.stats.froc.match_marks`, centre criterion; coordinates as
``detection_evaluation.readers.coordinates`` says, :mod:`spinedx.readers.lesion_marks`); its score
is the reader's confidence. ``marks``: one row per mark (reader, case, confidence as
score, outcome, lesion; the point as LPS mm and voxel); ``lesions``: one row per reader
and lesion with the confidence of the mark that found it (NaN: missed).
"""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.detection_task import LESIONS_NAME
from spinedx.errors import InputError
from spinedx.imaging.components import lesions_from_mask
from spinedx.io import write_parquet
from spinedx.readers.detection_cases import path_column, read_cases_table
from spinedx.readers.lesion_marks import marks_to_voxels, read_marks
from spinedx.readers.volume import read_mask
from spinedx.stats.froc import match_marks

log = logging.getLogger(__name__)


def main_stage(config, marks_path, cases_path, out_marks, out_lesions) -> None:
    settings = config["detection_evaluation"]["readers"]
    marks = read_marks(marks_path)
    cases = read_cases_table(cases_path)
    read = cases[cases["cohort"] == settings["cohort"]]
    if read.empty:
        raise InputError(f"{cases_path}: no {settings['cohort']} cases for the readers (config "
                         "detection_evaluation.readers.cohort)")
    outside = sorted(set(marks["patient_id"]) - set(read["patient_id"]))
    if outside:
        raise InputError(f"{marks_path}: marks on patient(s) {outside[:5]}, which are not {settings['cohort']} cases "
                         f"of {cases_path}; the readers read the {settings['cohort']} cohort (config "
                         "detection_evaluation.readers.cohort)")
    readers = sorted(set(marks["reader"]))
    mark_tables, lesion_tables = [], []
    for case in read.to_dict("records"):
        patient_id = case["patient_id"]
        labels = read_mask(case[path_column(LESIONS_NAME)], max_voxels=config["data"]["max_volume_voxels"])
        truth = lesions_from_mask(labels.array, labels.spacing, instances=True, affine=labels.affine)
        of_case = marks[marks["patient_id"] == patient_id]
        for reader in readers:
            own = of_case[of_case["reader"] == reader].reset_index(drop=True)
            voxels = marks_to_voxels(own, labels, settings["coordinates"])
            match = match_marks(voxels, own["confidence"].to_numpy(), truth, case_id=patient_id)
            table = match.candidates_table().assign(reader=reader, cohort=case["cohort"])
            table[["x_mm", "y_mm", "z_mm"]] = labels.voxel_to_world(voxels).reshape(-1, 3)
            table[["voxel_z", "voxel_y", "voxel_x"]] = voxels.reshape(-1, 3)
            mark_tables.append(table)
            lesion_tables.append(match.lesions_table().assign(reader=reader, cohort=case["cohort"],
                                                              label=list(truth.source_values)))
    write_parquet(pd.concat(mark_tables, ignore_index=True), out_marks)
    write_parquet(pd.concat(lesion_tables, ignore_index=True), out_lesions)
    log.info("%d readers, %d marks on %d %s cases -> %s", len(readers), len(marks), len(read), settings["cohort"],
             out_marks)
