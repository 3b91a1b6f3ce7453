"""Reporting-checklist stage: STARD 2015, TRIPOD+AI and CLAIM items mapped to the files
of this study that answer them (:mod:`spinedx.checklists`).

``reporting_checklist.csv``: guideline, item, topic, paraphrase of the item, status
(``answered`` when the study's files answer it, ``partly: ...`` when the author must add
something, ``author must state`` or ``not applicable``) and the answering files, relative
to the results folder. An item whose evidence the run did not produce (e.g. no reader
study, no audit) falls back to the author; a study designed without a reader study
(``reader_study=False``: labels of images) states so for the items only readers answer
(:data:`spinedx.checklists.WITHOUT_READER_STUDY`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.checklists import AUTHOR, ITEMS, NOT_APPLICABLE, WITHOUT_READER_STUDY
from spinedx.io import write_csv

log = logging.getLogger(__name__)

COLUMNS = ["guideline", "item", "topic", "paraphrase", "status", "files"]


def evidence_files(results_dir: str, outputs) -> dict[str, list[str]]:
    """Evidence key -> the study files (relative to ``results_dir``) among ``outputs``."""
    study = paths.StudyPaths(results_dir)
    outputs = {Path(p).as_posix() for p in outputs}

    def tables(*names):
        return [study.table(name) for name in names]

    def figures(*stems):
        return [paths.figure_files(study.figure(stem))[1] for stem in stems]

    def prefixed(prefix):
        return sorted(p for p in outputs if Path(p).name.startswith(prefix) and p.endswith(paths.FIGURE_SUFFIXES[1]))

    nclass_tables = (paths.MULTICLASS_OVERALL, paths.MULTICLASS_PER_CLASS, paths.MULTICLASS_CONFUSION)
    nclass_figures = (paths.MULTICLASS_ROC_FIGURE, paths.MULTICLASS_CONFUSION_FIGURE, paths.MULTICLASS_F1_FIGURE)
    # Detection studies: lesion-level FROC tables and figure (the readers' points on it).
    froc = figures(paths.DETECTION_FROC_FIGURE)
    wanted = {
        "config": [study.report_config], "versions": [study.software_versions], "model_card": [study.bundle.card_md],
        "annotations": [study.images_table], "splits": [study.folds, study.holdout],
        "cohort": tables(paths.COHORT_TABLE, paths.DETECTION_COHORT),
        "flow": tables(paths.FLOW_TABLE) + figures(paths.FLOW_FIGURE),
        "training": prefixed(paths.training_curves_figure("", "")[:-1])
        + prefixed(paths.detection_curves_figure("", "")[:-1]),
        "internal_cv": tables(paths.INTERNAL_CV_IMAGE_LEVEL, paths.INTERNAL_CV_CASE_LEVEL),
        # N-class studies: their tables hold the image and the case level.
        "image_level": tables(paths.TABLE2_IMAGE_LEVEL, *nclass_tables, paths.DETECTION_FROC, paths.DETECTION_SIZE_BANDS)
        + figures(paths.ROC_BACKBONES_FIGURE, *nclass_figures) + froc,
        "case_level": tables(paths.TABLE3_CASE_LEVEL, *nclass_tables, paths.DETECTION_SUMMARY,
                             paths.DETECTION_OPERATING_POINTS) + figures(paths.FINAL_SYSTEM_FIGURE, *nclass_figures) + froc,
        "fold_2x2": tables(paths.FOLD_2X2),
        "meta_analysis": tables(paths.META_ANALYSIS_TABLE) + figures(paths.SROC_FIGURE),
        # Volume studies also compare their input modes (2d, 2.5d, 3d) on the same cases.
        "comparisons": tables(paths.COMPARISONS_TABLE, paths.INPUT_MODES_TABLE, paths.INPUT_MODES_TESTS_TABLE)
        + figures(paths.ROC_INPUT_MODES_FIGURE),
        "calibration": tables(paths.CALIBRATION_TABLE, paths.CALIBRATION_CURVE_TABLE) + figures(paths.CALIBRATION_FIGURE),
        "decision_curve": tables(paths.DECISION_CURVE_TABLE) + figures(paths.DECISION_CURVE_FIGURE),
        "subgroups": tables(paths.SUBGROUP_TABLE) + figures(paths.SUBGROUP_FIGURE),
        "reader_study": tables(paths.READER_METRICS_TABLE, paths.READER_PER_CLASS_TABLE, paths.READER_GAIN_TABLE,
                               paths.READER_MRMC_TABLE, paths.DETECTION_READERS)
        + figures(paths.READER_ROC_FIGURE, paths.READER_ACCURACY_FIGURE) + froc,
        "gradcam": prefixed(paths.gradcam_figure("", "")[:-1]),
        "shift": tables(paths.SHIFT_SUMMARY_TABLE, paths.SHIFT_TABLE) + figures(paths.SHIFT_FIGURE),
    }
    found = {key: [p for p in files if p in outputs] for key, files in wanted.items()}
    # The provenance record is the run's last file (it hashes this table): always there.
    found["provenance"] = [study.provenance]
    root = Path(results_dir)
    return {key: [Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else p for p in files]
            for key, files in found.items()}


def checklist_table(results_dir: str, outputs, reader_study: bool = True) -> pd.DataFrame:
    """``reader_study``: False for a study designed without one (module docstring)."""
    evidence = evidence_files(results_dir, outputs)
    rows = []
    for guideline, item, topic, paraphrase, keys, author_part in ITEMS:
        files = list(dict.fromkeys(f for key in keys for f in evidence[key]))
        if not reader_study and (guideline, item) in WITHOUT_READER_STUDY:
            status = WITHOUT_READER_STUDY[(guideline, item)]
        elif files:
            status = f"partly: {author_part}" if author_part else "answered"
            if author_part.startswith((AUTHOR, NOT_APPLICABLE)):
                status = f"partly: {author_part}"
        elif keys and not author_part:
            status = f"{AUTHOR} (this run produced none of: {', '.join(keys)})"
        elif author_part.startswith((AUTHOR, NOT_APPLICABLE)):
            status = author_part
        else:
            status = f"{AUTHOR}: {author_part}" if author_part else AUTHOR
        rows.append({"guideline": guideline, "item": item, "topic": topic, "paraphrase": paraphrase,
                     "status": status, "files": "; ".join(files)})
    return pd.DataFrame(rows, columns=COLUMNS)


def main_stage(results_dir, outputs, out, reader_study: bool = True) -> pd.DataFrame:
    table = checklist_table(results_dir, outputs, reader_study)
    write_csv(table, out)
    answered = table["status"].str.startswith(("answered", "partly"))
    log.info("reporting checklist: %d of %d items answered (fully or in part) by the study's files -> %s",
             int(answered.sum()), len(table), out)
    return table
