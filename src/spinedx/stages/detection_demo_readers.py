"""Demo readers stage: synthetic readers' lesion marks on the brain-metastasis demo
(:mod:`spinedx.demo.brain_mets_readers`), written where config
``detection_evaluation.readers.marks`` expects a real reading's CSV."""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.config import ConfigError
from spinedx.demo.brain_mets_readers import read_case, reader_skills
from spinedx.detection_task import LESIONS_NAME
from spinedx.io import write_csv
from spinedx.readers.detection_cases import locate_case, read_detection_cases
from spinedx.readers.volume import read_mask, read_volume
from spinedx.readers.tree import sequence_folder_lookup

log = logging.getLogger(__name__)


def main_stage(config, images_dir, cases_path, out) -> None:
    settings = config["demo_cohort"]["brain_mets_readers"]
    folder = config["demo_cohort"]["brain_mets"]["sequences"]["bright_blood"]
    bright_blood = sequence_folder_lookup(config["sequences"]).get(folder.lower())
    if bright_blood is None:
        raise ConfigError(f"config `sequences` maps no sequence to the demo's bright-blood folder {folder!r}")
    cohort = config["detection_evaluation"]["readers"]["cohort"]
    cases = read_detection_cases(cases_path)
    skills = reader_skills(settings)
    tables = []
    for index, patient_id in enumerate(cases.loc[cases["cohort"] == cohort, "patient_id"]):
        files = locate_case(images_dir, patient_id, config["sequences"])
        max_voxels = config["data"]["max_volume_voxels"]
        labels = read_mask(files[LESIONS_NAME], max_voxels=max_voxels)
        image = read_volume(files[bright_blood], max_voxels=max_voxels)
        tables.append(read_case(patient_id, index, labels, image, settings, skills))
    marks = pd.concat(tables, ignore_index=True)
    write_csv(marks, out)
    log.info("%d synthetic readers, %d marks on %d %s cases -> %s (skills: %s)", len(skills), len(marks),
             len(tables), cohort, out, skills.round(3).to_dict("records"))
