"""Evaluation stage: the study's diagnostic-accuracy tables.

The statistics are :mod:`spinedx.stats` (2x2 counts, Wilson intervals, kappa, AUC, the
patient-level bootstrap); this stage selects which predictions each table evaluates and
writes the tables. The task (:mod:`spinedx.task`) names the positive class's probability
column and the decision threshold (a decision is positive when that probability is
strictly greater).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.errors import InputError
from spinedx.io import read_parquets, write_csv
from spinedx.stats.tables import fold_2x2_table, metrics_table, validate_predictions
from spinedx.task import BinaryTask

#: Columns that :func:`build_tables` reads from each input besides the score column
#: (other columns are ignored).
IMAGE_PREDICTION_COLUMNS: tuple[str, ...] = ("backbone", "sequence", "patient_id", "cohort", "label", "model")
CASE_PREDICTION_COLUMNS: tuple[str, ...] = ("backbone", "input", "patient_id", "cohort", "label", "model")
#: The settings :func:`build_tables` needs: config ``decision.threshold`` and ``evaluation``.
SETTINGS = ("threshold", "bootstrap_replicates", "seed", "ci_level")

# (cohort, model) whose predictions each table evaluates: the external cohort is scored
# by the ensemble of fold models, the internal cohort by its out-of-fold predictions.
# "external" selects every cohort but the internal one (config data.external_cohorts;
# several are pooled here; the N-class tables keep them apart).
_EXTERNAL_ENSEMBLE = ("external", "ensemble")
_INTERNAL_OOF = ("internal", "oof")


def _checked_settings(settings: Mapping) -> dict:
    """The settings of :data:`SETTINGS`, their ranges checked (no defaults: the schema's)."""
    missing = [key for key in SETTINGS if key not in settings]
    if missing:
        raise InputError(f"evaluation settings lack {missing} (config decision.threshold and evaluation)")
    resolved = {key: settings[key] for key in SETTINGS}
    if not 0 <= resolved["threshold"] <= 1:
        raise InputError(f"settings['threshold'] must lie in [0, 1], got {resolved['threshold']}")
    replicates = resolved["bootstrap_replicates"]
    if int(replicates) != replicates or replicates < 0:
        raise InputError(
            f"settings['bootstrap_replicates'] must be a non-negative integer, got {replicates}"
        )
    if not 0 < resolved["ci_level"] < 1:
        raise InputError(f"settings['ci_level'] must lie in (0, 1), got {resolved['ci_level']}")
    return resolved


def build_tables(
    image_predictions: pd.DataFrame,
    case_predictions: pd.DataFrame,
    settings: Mapping,
    score_col: str = "prob",
) -> dict[str, pd.DataFrame]:
    """The study's tables from image- and case-level predictions, by table name
    (:data:`spinedx.paths.EVALUATION_TABLES`):

    * table 2: external cohort, ensemble model, per backbone and input sequence
      (``sequence`` is renamed ``input``);
    * table 3: external cohort, ensemble model, per backbone and case-level input;
    * fold 2x2: see :func:`spinedx.stats.tables.fold_2x2_table`;
    * internal cross-validation, image and case level: internal cohort, out-of-fold
      predictions (the cross-validation performance).

    ``settings`` holds ``threshold``, ``bootstrap_replicates``, ``seed`` and
    ``ci_level`` (other keys are ignored); ``score_col`` is the column of the positive
    class's probability. A selection without rows (e.g. a study without external cohort)
    gives an empty table. Raises ValueError for missing columns, labels other than 0/1 or
    probabilities outside [0, 1].
    """
    options = _checked_settings(settings)
    validate_predictions(image_predictions, IMAGE_PREDICTION_COLUMNS, "image_predictions", score_col)
    validate_predictions(case_predictions, CASE_PREDICTION_COLUMNS, "case_predictions", score_col)
    images = image_predictions.rename(columns={"sequence": "input"})

    def table(predictions: pd.DataFrame, cohort_model: tuple[str, str]) -> pd.DataFrame:
        cohort, model = cohort_model
        in_cohort = (predictions["cohort"] != "internal") if cohort == "external" else (predictions["cohort"] == cohort)
        selected = predictions[in_cohort & (predictions["model"] == model)]
        return metrics_table(
            selected, ["backbone", "input"],
            threshold=options["threshold"], n_boot=int(options["bootstrap_replicates"]),
            seed=int(options["seed"]), level=options["ci_level"], score_col=score_col,
        )

    return {
        paths.TABLE2_IMAGE_LEVEL: table(images, _EXTERNAL_ENSEMBLE),
        paths.TABLE3_CASE_LEVEL: table(case_predictions, _EXTERNAL_ENSEMBLE),
        paths.FOLD_2X2: fold_2x2_table(case_predictions, threshold=options["threshold"], score_col=score_col),
        paths.INTERNAL_CV_IMAGE_LEVEL: table(images, _INTERNAL_OOF),
        paths.INTERNAL_CV_CASE_LEVEL: table(case_predictions, _INTERNAL_OOF),
    }


def write_tables(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table as :func:`spinedx.paths.table_file` of its name into ``out_dir``
    (no index); return the paths.

    Floats are written at full (round-trip) precision so that downstream steps, such as
    the meta-analysis, do not inherit rounding; rounding is left to presentation.
    """
    return {name: write_csv(table, Path(out_dir) / paths.table_file(name)) for name, table in tables.items()}


def main_stage(config, image_prediction_paths, case_prediction_paths, out_dir) -> dict[str, Path]:
    """The workflow stage: every evaluation table into ``out_dir`` (the tables folder)."""
    task = BinaryTask.from_config(config)
    settings = {"threshold": task.threshold, **config["evaluation"]}
    tables = build_tables(read_parquets(image_prediction_paths), read_parquets(case_prediction_paths),
                          settings, score_col=task.positive_column)
    return write_tables(tables, out_dir)
