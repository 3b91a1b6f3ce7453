"""Detection splits stage: the internal cohort's patient-grouped folds, stratified by
lesion load (:func:`spinedx.splitting.make_detection_folds`), persisted in the same file
and layout as the classification folds."""

from __future__ import annotations

import logging

from spinedx.readers.detection_cases import read_cases_table
from spinedx.splitting import make_detection_folds, write_folds

log = logging.getLogger(__name__)


def main_stage(config, cases_path, out) -> None:
    settings = config["splits"]
    folds = make_detection_folds(read_cases_table(cases_path), settings["n_folds"], settings["seed"], cases_path)
    write_folds(folds, out)
    log.info("%d internal patients in %d folds (strata %s) -> %s", len(folds), settings["n_folds"],
             sorted(set(folds["diagnosis"])), out)
