"""The study's final system and the case-level predictions every evaluation reads.

The final system is one backbone (config ``figures.final_backbone``, else the best
external case-level AUC of the ALL input in table 3; ties: the first in ``backbones``)
with the ALL input at case level. Each cohort is scored by the predictions that never
saw it: the external cohort by the ensemble of the fold models, the internal cohort by
the out-of-fold predictions. Figures, reader study, calibration, subgroups and the
paired comparisons select their rows through :func:`evaluated_cases`, so they all read
the same predictions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.aggregation import ALL_INPUT, ENSEMBLE, OUT_OF_FOLD, PREDICTION_SET
from spinedx.config import ConfigError
from spinedx.errors import InputError
from spinedx.input_modes import model_names

#: The hold-out partition whose predictions score internal patients (never trained or validated on).
INTERNAL_TEST = "internal_test"
#: The prediction set of the N-class tables that pools every external cohort.
EXTERNAL_POOLED = "external_pooled"
#: The model whose predictions score each cohort (ensembling stage's ``model`` column).
EVALUATED_MODEL = {"external": "ensemble", "internal": "oof"}


def choose_final_backbone(table3: pd.DataFrame, config: Mapping) -> str:
    """figures.final_backbone, or the best external case-level ALL AUC (ties: config order)."""
    if config["figures"]["final_backbone"]:
        return config["figures"]["final_backbone"]
    all_rows = table3[table3["input"] == ALL_INPUT].set_index("backbone")
    ranked = [(all_rows.loc[b, "auc"] if b in all_rows.index else np.nan, -i, b)
              for i, b in enumerate(model_names(config))]
    ranked = [r for r in ranked if np.isfinite(r[0])]
    if not ranked:
        raise InputError(f"{paths.table_file(paths.TABLE3_CASE_LEVEL)}: no finite AUC of the ALL input "
                         "for any backbone; set figures.final_backbone")
    return max(ranked)[2]


def aiding_model(table3: pd.DataFrame, config: Mapping) -> str:
    """The model a two-class reader study's readers were aided by and are compared with:
    config ``reader_study.aiding_model`` (one of the study's models), else the final system
    (:func:`choose_final_backbone`)."""
    chosen = config["reader_study"]["aiding_model"]
    if not chosen:
        return choose_final_backbone(table3, config)
    models = model_names(config)
    if chosen not in models:
        raise ConfigError(f"reader_study.aiding_model {chosen!r} is not a model of this study; choose one of "
                          f"{models} (or null for the final system)")
    return chosen


def evaluated_cases(case_predictions: pd.DataFrame, backbone: str | None = None,
                    input_: str | None = ALL_INPUT, cohorts=("external", "internal")) -> pd.DataFrame:
    """Case-level rows of ``cohorts`` scored by their evaluated model (:data:`EVALUATED_MODEL`),
    of one backbone and input (None: all of them), in the table's order."""
    keep = np.zeros(len(case_predictions), dtype=bool)
    for cohort in cohorts:
        keep |= ((case_predictions["cohort"] == cohort)
                 & (case_predictions["model"] == EVALUATED_MODEL[cohort])).to_numpy()
    if backbone is not None:
        keep &= (case_predictions["backbone"] == backbone).to_numpy()
    if input_ is not None:
        keep &= (case_predictions["input"] == input_).to_numpy()
    return case_predictions[keep].reset_index(drop=True)


def choose_final_backbone_multiclass(overall: pd.DataFrame, config: Mapping, test_set: str,
                                     level: str = "case") -> str:
    """N-class studies: figures.final_backbone, or the best macro-AUC of the ALL input at
    ``level`` (``case``; ``image`` where labels belong to images) on ``test_set`` (a
    prediction set of the N-class overall table; ties: config order)."""
    if config["figures"]["final_backbone"]:
        return config["figures"]["final_backbone"]
    rows = overall[(overall["level"] == level) & (overall["input"] == ALL_INPUT)
                   & (overall[PREDICTION_SET] == test_set)].set_index("backbone")
    ranked = [(rows.loc[b, "macro_auc"] if b in rows.index else np.nan, -i, b)
              for i, b in enumerate(model_names(config))]
    ranked = [r for r in ranked if np.isfinite(r[0])]
    if not ranked:
        raise InputError(f"{paths.table_file(paths.MULTICLASS_OVERALL)}: no finite {level}-level macro-AUC of the "
                         f"ALL input on {test_set} for any backbone; set figures.final_backbone")
    return max(ranked)[2]


def scoring_predictions(case_predictions: pd.DataFrame, backbone: str, input_: str = ALL_INPUT) -> pd.DataFrame:
    """One case-level row per patient: the prediction that never saw the patient, in the
    table's order. External cohorts: the ensemble; internal: the out-of-fold prediction
    (k-fold) or, with a hold-out split, the internal-test prediction of the first repeat
    that tests the patient (validation patients chose the epoch: not a test)."""
    rows = case_predictions[(case_predictions["backbone"] == backbone) & (case_predictions["input"] == input_)]
    return _never_seen(rows, "patient_id")


def scoring_image_predictions(image_predictions: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Studies whose labels belong to images (labels.source annotation; no case level):
    one row per image of every sequence (the ALL input), the prediction whose model never
    saw the image's patient, chosen as :func:`scoring_predictions` chooses case rows
    (external cohorts: the ensemble; internal: out-of-fold, or the internal-test
    prediction of the first repeat testing the patient; validation images chose the
    epoch and score nothing)."""
    return _never_seen(image_predictions[image_predictions["backbone"] == backbone], "image_id")


def _never_seen(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    external = rows[(rows["cohort"] != "internal") & (rows["model"] == ENSEMBLE)]
    internal = rows[(rows["cohort"] == "internal") & rows[PREDICTION_SET].isin((OUT_OF_FOLD, INTERNAL_TEST))]
    internal = internal.assign(_repeat=internal["model"].str.extract(r"(\d+)$", expand=False).fillna("-1").astype(int))
    internal = internal.sort_values("_repeat", kind="stable").drop_duplicates(key).drop(columns="_repeat")
    return pd.concat([external, internal.sort_index()]).reset_index(drop=True)


def choose_detection_system(summary: pd.DataFrame, pairs) -> tuple[str, str]:
    """Detection studies: the model x input of best internal (out-of-fold) CPM in the
    detection summary table (ties: the study's order, ``pairs``); chosen on the internal
    cohort so that the external cohort stays a test set."""
    internal = summary[summary["cohort"] == "internal"].set_index(["model", "input"])
    ranked = [(internal.loc[pair, "cpm"] if pair in internal.index else np.nan, -i, pair)
              for i, pair in enumerate(map(tuple, pairs))]
    ranked = [r for r in ranked if np.isfinite(r[0])]
    if not ranked:
        raise InputError(f"{paths.table_file(paths.DETECTION_SUMMARY)}: no finite internal CPM of any model x "
                         "input; rerun detection_evaluation")
    return max(ranked)[2]


def multiclass_final_system(overall: pd.DataFrame, config: Mapping, case_predictions: pd.DataFrame | None = None,
                            image_predictions: pd.DataFrame | None = None) -> tuple[str, pd.DataFrame, str, str]:
    """N-class studies and studies whose labels belong to images: (backbone, its scoring
    rows, unit, test set). ``image_predictions`` (labels of images) or
    ``case_predictions``; the test set is the external cohort, or with several the pooled
    ones; the unit is ``image`` or ``case`` (the level whose macro-AUC chooses the backbone)."""
    external = list(config["data"]["external_cohorts"])
    test_set = EXTERNAL_POOLED if len(external) > 1 else external[0]
    unit = "image" if image_predictions is not None else "case"
    backbone = choose_final_backbone_multiclass(overall, config, test_set, level=unit)
    if image_predictions is not None:
        return backbone, scoring_image_predictions(image_predictions, backbone), unit, test_set
    return backbone, scoring_predictions(case_predictions, backbone), unit, test_set


def evaluated_sets(scored: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(name, rows) of :func:`scoring_predictions` rows: the internal test set
    (:data:`INTERNAL_TEST`), each external cohort, and with several the pooled external
    ones (:data:`EXTERNAL_POOLED`); empty sets left out."""
    sets = [(INTERNAL_TEST, scored[scored["cohort"] == "internal"])]
    external = scored[scored["cohort"] != "internal"]
    cohorts = list(dict.fromkeys(external["cohort"]))
    sets += [(cohort, external[external["cohort"] == cohort]) for cohort in cohorts]
    if len(cohorts) > 1:
        sets.append((EXTERNAL_POOLED, external))
    return [(name, rows) for name, rows in sets if len(rows)]
