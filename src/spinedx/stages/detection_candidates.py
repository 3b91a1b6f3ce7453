"""Detection candidates stage: lesion candidates of every case's probability map, matched
to the case's lesions, as two tables.

On each case's original grid (where its lesion labels were drawn): the connected
components of the map above ``detection.candidates.threshold``, scored by their max or
mean probability and filtered by size (:func:`spinedx.imaging.components.extract_candidates`),
matched to the instance-labelled lesions by ``detection.matching``
(:func:`spinedx.stats.froc.match_case`). ``candidates``: one row per candidate with its
score, outcome (true_positive, false_positive, duplicate), matched lesion, IoU, size and
position (centroid in LPS mm and as a voxel); ``lesions``: one row per lesion with the
score of the candidate that found it (NaN: missed). Every case of the cohort is listed in
the cases table, so cases without candidates still count.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from spinedx.detection_task import LESIONS_NAME
from spinedx.errors import InputError
from spinedx.imaging.components import extract_candidates, lesions_from_mask
from spinedx.imaging.detection_cache import read_maps
from spinedx.io import write_parquet
from spinedx.readers.detection_cases import path_column, read_cases_table
from spinedx.readers.volume import read_mask
from spinedx.stats.froc import match_case

log = logging.getLogger(__name__)


def _geometry(found) -> pd.DataFrame:
    rows = []
    for region in found.regions:
        rows.append({"size_voxels": region.size_voxels, "volume_mm3": region.volume_mm3,
                     "candidate_diameter_mm": region.equivalent_diameter_mm,
                     **dict(zip(("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"), region.centroid_world)),
                     **dict(zip(("centre_z", "centre_y", "centre_x"), region.centre_index)),
                     **dict(zip(("peak_z", "peak_y", "peak_x"), region.peak_voxel))})
    return pd.DataFrame(rows, columns=["size_voxels", "volume_mm3", "candidate_diameter_mm", "centroid_x_mm",
                                       "centroid_y_mm", "centroid_z_mm", "centre_z", "centre_y", "centre_x",
                                       "peak_z", "peak_y", "peak_x"])


def main_stage(config, maps_path, cases_path, out_candidates, out_lesions) -> None:
    meta, maps = read_maps(maps_path)
    cases = read_cases_table(cases_path)
    settings, matching = config["detection"]["candidates"], config["detection"]["matching"]
    max_voxels = config["data"]["max_volume_voxels"]
    candidate_tables, lesion_tables = [], []
    for case in cases.to_dict("records"):
        patient_id = case["patient_id"]
        if patient_id not in meta["maps"]:
            raise InputError(f"{maps_path}: no map of {patient_id}; rerun detection_inference")
        labels = read_mask(case[path_column(LESIONS_NAME)], max_voxels=max_voxels)
        probability = maps[patient_id].astype(np.float32)
        if probability.shape != labels.shape:
            raise InputError(f"{maps_path}: the map of {patient_id} has shape {probability.shape}, its labels "
                             f"{labels.shape}; rerun detection_inference")
        found = extract_candidates(probability, labels.spacing, affine=labels.affine, threshold=settings["threshold"],
                                   score=settings["score"], connectivity=settings["connectivity"],
                                   min_size_voxels=settings["min_size_voxels"],
                                   min_volume_mm3=settings["min_volume_mm3"])
        truth = lesions_from_mask(labels.array, labels.spacing, instances=True, affine=labels.affine)
        match = match_case(found, truth, case_id=patient_id, criterion=matching["criterion"],
                           min_iou=matching["min_iou"], duplicates=matching["duplicates"])
        context = {"model": meta["model"], "input": meta["input"], "cohort": case["cohort"],
                   "map": meta["maps"][patient_id]}
        candidate_tables.append(pd.concat([match.candidates_table(), _geometry(found)], axis=1).assign(**context))
        lesion_tables.append(match.lesions_table().assign(label=list(truth.source_values), **context))
    candidates = pd.concat(candidate_tables, ignore_index=True)
    lesions = pd.concat(lesion_tables, ignore_index=True)
    write_parquet(candidates, out_candidates)
    write_parquet(lesions, out_lesions)
    log.info("%s %s: %d candidates on %d cases (%d true positives), %d of %d lesions found -> %s", meta["model"],
             meta["input"], len(candidates), len(cases), int((candidates["outcome"] == "true_positive").sum()),
             int(lesions["detected_by_score"].notna().sum()), len(lesions), out_candidates)
