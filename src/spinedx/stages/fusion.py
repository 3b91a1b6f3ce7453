"""Fusion stage: the image models' case-level probabilities and the declared clinical
covariates combined by a stacked model (:mod:`spinedx.stats.fusion`).

Per backbone, on the case-level ALL input (every sequence's images of a case):

- k-fold: the stacker is fitted on the internal out-of-fold predictions (model ``oof``)
  and predicts the external cohorts from the fold ensemble (model ``ensemble``).
- hold-out: for each repeat r, it is fitted on that repeat's validation patients (model
  ``holdout<r>``) and predicts that repeat's internal-test patients and the external
  cohorts as scored by the same model; the external cohorts' fused probability vectors
  are then averaged over the repeats (model ``ensemble``), as the image models' are.

Three stacked models side by side (``fusion_input``): image only (the same learner on the
image probabilities alone), clinical only, image + clinical. Test data never fit anything:
the library refuses test rows in a fit and fitted patients in a prediction, and this
stage takes the fitting rows by prediction set (``oof`` or ``validation``) only.
"""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.aggregation import ALL_INPUT, ENSEMBLE, OUT_OF_FOLD, PREDICTION_SET
from spinedx.errors import InputError
from spinedx.io import read_parquets, write_csv, write_parquet
from spinedx.paths import model_name
from spinedx.readers.cases import read_cases
from spinedx.splitting import model_count
from spinedx.stats.fusion import FUSION_INPUTS, FusionSpec, fit_fusion_models
from spinedx.task import task_from_config

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["backbone", "fusion_input", "model", PREDICTION_SET, "patient_id", "cohort", "label"]
COEFFICIENT_COLUMNS = ["backbone", "fitted_on", "fusion_input", "feature", "class", "coefficient"]


def spec_from_config(config) -> FusionSpec:
    fusion = config["fusion"]
    return FusionSpec(tuple(config["classes"]), tuple(fusion["numeric"]), tuple(fusion["categorical"]),
                      float(fusion["C"]), int(fusion["seed"]))


def with_covariates(rows: pd.DataFrame, cases: pd.DataFrame, spec: FusionSpec, cases_path) -> pd.DataFrame:
    """Case-level rows with the declared covariates of their patients."""
    missing = [c for c in spec.covariates if c not in cases.columns]
    if missing:
        raise InputError(f"{cases_path}: fusion covariate column(s) {missing} are not in the cases table "
                         f"(columns: {list(cases.columns)}); fix config fusion.numeric/fusion.categorical")
    return rows.merge(cases[["patient_id", *spec.covariates]], on="patient_id", how="left", validate="many_to_one")


def _fit_and_predict(training: pd.DataFrame, test: pd.DataFrame, spec: FusionSpec, backbone: str,
                     model: str, fitted_on: str) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """The three stacked models fitted on ``training``, their predictions of ``test``
    (labelled ``model``) and their coefficients."""
    models = fit_fusion_models(training, spec)
    predictions, coefficients = [], []
    cohorts = test[["cohort"]].reset_index(drop=True)
    for fusion_input, fitted in models.items():
        predicted = fitted.predict(test)
        if len(predicted.unseen_levels):
            log.warning("%s %s (%s): categorical levels unseen in fitting, given the average: %s", backbone,
                        fusion_input, fitted_on, predicted.unseen_levels.to_dict("records"))
        predictions.append(pd.concat([cohorts, predicted.probs], axis=1).assign(
            backbone=backbone, fusion_input=fusion_input, model=model))
        table = fitted.coefficients().rename_axis("feature").reset_index().melt(
            id_vars="feature", var_name="class", value_name="coefficient")
        coefficients.append(table.assign(backbone=backbone, fitted_on=fitted_on, fusion_input=fusion_input))
    return predictions, coefficients


def fuse(case_predictions: pd.DataFrame, cases: pd.DataFrame, config, cases_path="cases table"
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fused test predictions of every backbone (:data:`PREDICTION_COLUMNS` + one
    probability column per class) and the stackers' coefficients."""
    spec = spec_from_config(config)
    task = task_from_config(config, decisions=False)
    splits = config["splits"]
    rows = with_covariates(case_predictions[case_predictions["input"] == ALL_INPUT], cases, spec, cases_path)
    predictions, coefficients = [], []
    for backbone, own in rows.groupby("backbone", sort=False):
        if splits["scheme"] == "holdout":
            fits = [(model_name(r, "holdout"), own[own["model"] == model_name(r, "holdout")])
                    for r in range(model_count(splits))]
            fits = [(name, part[part[PREDICTION_SET] == "validation"], part[part[PREDICTION_SET] != "validation"])
                    for name, part in fits]
        else:
            fits = [(ENSEMBLE, own[own["model"] == OUT_OF_FOLD], own[own["model"] == ENSEMBLE])]
        repeat_predictions = []
        for name, training, test in fits:
            if training.empty or test.empty:
                raise InputError(f"{backbone}: no {'validation' if name != ENSEMBLE else 'out-of-fold'} or no test "
                                 f"case-level predictions for model {name}; rerun case_level")
            fitted_on = f"{name}:{'/'.join(sorted(set(training[PREDICTION_SET])))}"
            fused, coefs = _fit_and_predict(training, test, spec, backbone, name, fitted_on)
            repeat_predictions += fused
            coefficients += coefs
        fused = pd.concat(repeat_predictions, ignore_index=True)
        predictions.append(fused)
        if splits["scheme"] == "holdout":  # external cohorts: the mean over the repeat models
            external = fused[fused["cohort"] != "internal"]
            keys = ["backbone", "fusion_input", PREDICTION_SET, "patient_id", "cohort", "label"]
            mean = external.groupby(keys, sort=False, as_index=False)[task.probability_columns].mean()
            predictions.append(mean.assign(model=ENSEMBLE))
    table = pd.concat(predictions, ignore_index=True)[[*PREDICTION_COLUMNS, *task.probability_columns]]
    return table, pd.concat(coefficients, ignore_index=True)[COEFFICIENT_COLUMNS]


def main_stage(config, case_prediction_paths, cases_path, out, coefficients_out) -> pd.DataFrame:
    cases = read_cases(cases_path, config["classes"], external_cohorts=None)
    table, coefficients = fuse(read_parquets(case_prediction_paths), cases, config, cases_path)
    write_parquet(table, out)
    write_csv(coefficients, coefficients_out)
    log.info("fusion: %d test predictions (%s) -> %s", len(table), ", ".join(FUSION_INPUTS), out)
    return table
