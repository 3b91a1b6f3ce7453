"""Splits stage: the internal cohort's folds or hold-out partitions
(:mod:`spinedx.splitting`) as one file."""

from __future__ import annotations

import logging

from spinedx.readers.cases import read_cases
from spinedx.splitting import make_folds, make_holdout, write_folds

log = logging.getLogger(__name__)


def main_stage(config, cases_path, out) -> None:
    settings = config["splits"]
    # Any external cohort name: only who is internal matters here (annotations checks the names).
    cases = read_cases(cases_path, config["classes"], external_cohorts=None)
    if settings["scheme"] == "holdout":
        holdout = make_holdout(cases, settings["ratios"], settings["repeats"], settings["seed"], cases_path)
        write_folds(holdout, out)
        sizes = holdout.groupby(["repeat", "partition"]).size().unstack(fill_value=0).to_dict("index")
        log.info("hold-out %s, %d repeat(s), patients per partition %s -> %s", settings["ratios"],
                 settings["repeats"], sizes, out)
        return
    folds = make_folds(cases, settings["n_folds"], settings["seed"], cases_path)
    write_folds(folds, out)
    log.info("%d internal patients in %d folds -> %s", len(folds), settings["n_folds"], out)
