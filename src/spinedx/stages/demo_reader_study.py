"""Demo reader-study stage: the built-in synthetic readers (:mod:`spinedx.demo.reader_study`)
rate the demo's external cases (every external cohort) without and with a model's help, written as the
``readers.csv`` a real reader study brings (README "Reader studies"). The model is
``reader_study.aiding_model`` (the vertebral CT demo: the paper's ``2.5d_resnet10t``), else
the final system, the chosen or best model (:func:`spinedx.final_system.aiding_model`): a
backbone, or in a volume study a model of one input mode."""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.config import ConfigError
from spinedx.demo.reader_study import simulate_readers
from spinedx.errors import InputError
from spinedx.final_system import aiding_model, scoring_predictions
from spinedx.io import read_parquets, write_csv
from spinedx.task import BinaryTask

log = logging.getLogger(__name__)


def main_stage(config, case_prediction_paths, table3_path, out) -> pd.DataFrame:
    task = BinaryTask.from_config(config)
    backbone = aiding_model(pd.read_csv(table3_path), config)
    predictions = read_parquets(case_prediction_paths)
    # The readers read every external cohort (the internal one when a demo has none), each
    # case scored by the prediction that never saw it (external: the ensemble).
    scored = scoring_predictions(predictions, backbone)
    cases = scored[scored["cohort"] != "internal"]
    if cases.empty:
        cases = scored
    if cases.empty:
        raise InputError(f"the demo reader study found no case-level predictions of {backbone}; rerun case_level")
    cases = cases.assign(model_probability=cases[task.positive_column]).sort_values("patient_id")
    try:
        readers = simulate_readers(cases, config["reader_study"]["demo"], task.classes,
                                   config["reader_study"]["conditions"], config["reader_study"]["rating_scale"])
    except ValueError as error:  # settings the schema allows but the simulation cannot honour
        raise ConfigError(f"reader_study.demo: {error}") from error
    write_csv(readers, out)
    log.info("demo reader study: %d readers x %d cases x %d conditions -> %s", readers["reader"].nunique(),
             readers["patient_id"].nunique(), readers["condition"].nunique(), out)
    return readers
