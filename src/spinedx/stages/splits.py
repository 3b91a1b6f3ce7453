"""Splits stage: the internal cohort's folds (:mod:`spinedx.splitting`) as one file."""

from __future__ import annotations

import logging

from spinedx.readers.cases import read_cases
from spinedx.splitting import make_folds, write_folds

log = logging.getLogger(__name__)


def main_stage(config, cases_path, out) -> None:
    settings = config["splits"]
    cases = read_cases(cases_path, config["classes"])
    folds = make_folds(cases, settings["n_folds"], settings["seed"], cases_path)
    write_folds(folds, out)
    log.info("%d internal patients in %d folds -> %s", len(folds), settings["n_folds"], out)
