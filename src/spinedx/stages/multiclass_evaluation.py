"""Multiclass evaluation stage: the N-class tables of a study (any number of classes,
labels from cases or annotations, k-fold or hold-out, several external cohorts, fused
inputs).

The statistics are :mod:`spinedx.stats.multiclass` (per class one-vs-rest sensitivity,
specificity, PPV, NPV, F1 and AUC, micro-accuracy, macro-F1, macro-AUC, Cohen's kappa,
the N x N confusion matrix, each pathology against the reference class); this stage
chooses which predictions each row evaluates and writes the tables.

Rows are keyed by ``level, backbone, input, prediction_set, model``:

- ``level``: ``image`` (every image a row; intervals from the patient-level bootstrap,
  since a patient's images are correlated) or ``case`` (a patient's mean probability
  vector; one row per patient, so the proportions get Wilson intervals). Studies whose
  labels belong to images (``labels.source`` annotation) have no case level.
- ``input``: each sequence, each plane of config ``planes`` (its sequences' images pooled,
  at case level their mean), ``ALL`` (every image), and with clinical fusion
  ``fusion_image``, ``fusion_clinical``, ``fusion_image+clinical`` (case level).
- ``prediction_set``: ``oof`` (k-fold, internal out-of-fold), ``validation`` and
  ``internal_test`` (hold-out, per repeat model), each external cohort, and with several
  external cohorts ``external_pooled`` (all of them).
- ``model``: ``oof``, ``holdout<r>`` or ``ensemble`` (the mean probability vector of the
  fold or repeat models, which scores every external cohort).

Decisions are the task's (:mod:`spinedx.task`): the class of highest probability, or with
two classes the threshold on the positive class. Patient draws of the bootstrap are not
stratified by class (``stratify="none"``): the cohorts are consecutive patients whose
class mix is itself random (the library's recommendation; it also serves image-level
labels, where a patient has images of several classes). Every group uses the same seed.

Tables (names: :mod:`spinedx.paths`): per class, overall (one row per group), confusion
(long format: truth, decision, count, row %), reference class (each pathology against
``labels.reference_class``, when set), hold-out repeats (mean, min and max of the
overall metrics over the repeats, per internal prediction set), and with fusion the
fusion comparison (unfused ALL, image, clinical, image + clinical side by side).

The meta-analysis of the fold models (binary, k-fold) does not run for these studies:
see the README ("Study shapes").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.aggregation import ALL_INPUT, ENSEMBLE, OUT_OF_FOLD, PREDICTION_SET, image_inputs
from spinedx.errors import InputError
from spinedx.final_system import EXTERNAL_POOLED  # the prediction set of every external cohort together
from spinedx.io import read_parquets, write_csv
from spinedx.stats.fusion import FUSION_INPUTS
from spinedx.stats.multiclass import multiclass_tables, reference_class_table
from spinedx.task import Task, task_from_config

log = logging.getLogger(__name__)

KEY_COLUMNS = ["level", "backbone", "input", PREDICTION_SET, "model"]
#: Internal prediction sets, in report order.
INTERNAL_SETS = (OUT_OF_FOLD, "validation", "internal_test")
#: Overall metrics summarised over hold-out repeats.
REPEAT_METRICS = ("accuracy", "macro_f1", "macro_auc", "kappa")
REPEAT_COLUMNS = ["level", "backbone", "input", PREDICTION_SET, "metric", "n_repeats", "mean", "min", "max"]
FUSION_PREFIX = "fusion_"
FUSION_COLUMNS = ["backbone", PREDICTION_SET, "model", "input", "n", "n_patients",
                  "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "macro_f1_lo", "macro_f1_hi",
                  "macro_auc", "macro_auc_lo", "macro_auc_hi", "kappa", "kappa_lo", "kappa_hi"]


def fusion_input_name(fusion_input: str) -> str:
    """The ``input`` value of a fused model's rows."""
    return f"{FUSION_PREFIX}{fusion_input}"


def _model_order(model: str) -> tuple:
    digits = "".join(ch for ch in model if ch.isdigit())
    return (int(digits) if digits else -1, model)


def evaluation_sets(rows: pd.DataFrame, external_cohorts) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(prediction set, model, rows) of every group to evaluate, in report order: the
    internal sets (per model), each external cohort of ``external_cohorts`` present (the
    ensemble), and with several the pooled external cohorts."""
    for name in INTERNAL_SETS:
        own = rows[rows[PREDICTION_SET] == name]
        for model in sorted(own["model"].unique(), key=_model_order):
            yield name, model, own[own["model"] == model]
    external = rows[(rows["model"] == ENSEMBLE) & (rows["cohort"] != "internal")]
    present = [c for c in external_cohorts if c in set(external["cohort"])]
    present += sorted(set(external["cohort"]) - set(present))  # e.g. audit mode's "external"
    for cohort in present:
        yield cohort, ENSEMBLE, external[external["cohort"] == cohort]
    if len(present) > 1:
        yield EXTERNAL_POOLED, ENSEMBLE, external


def _evaluate(rows: pd.DataFrame, task: Task, options: dict, proportion_intervals: str,
              reference: str | None) -> dict[str, pd.DataFrame]:
    probs = task.probabilities(rows)
    common = dict(probs=probs, decisions=task.decide(rows), n_boot=options["n_boot"], seed=options["seed"],
                  level=options["level"], proportion_intervals=proportion_intervals, stratify="none")
    labels, patients = rows["label"].to_numpy(), rows["patient_id"].to_numpy()
    tables = multiclass_tables(labels, patients, task.classes, **common)
    if reference is not None:
        tables["reference"] = reference_class_table(labels, patients, task.classes, reference, **common)
    return tables


def build_tables(image_predictions: pd.DataFrame, case_predictions: pd.DataFrame | None,
                 fusion_predictions: pd.DataFrame | None, config) -> dict[str, pd.DataFrame]:
    """Every N-class table of the study, by table name (:data:`spinedx.paths.MULTICLASS_TABLES`
    and :data:`spinedx.paths.FUSION_COMPARISON`); tables that do not apply are absent."""
    task = task_from_config(config)
    evaluation = config["evaluation"]
    options = {"n_boot": int(evaluation["bootstrap_replicates"]), "seed": int(evaluation["seed"]),
               "level": float(evaluation["ci_level"])}
    reference = config["labels"]["reference_class"]
    external_cohorts = config["data"]["external_cohorts"]
    for name, frame in (("image predictions", image_predictions), ("case predictions", case_predictions)):
        if frame is not None:
            missing = [c for c in ["backbone", "patient_id", "cohort", "label", "model", PREDICTION_SET,
                                   *task.probability_columns] if c not in frame.columns]
            if missing:
                raise InputError(f"{name} lack column(s) {missing}; rerun ensembling and case_level")

    groups: list[tuple[dict, pd.DataFrame, str]] = []  # (keys, rows, proportion intervals)
    for backbone, images in image_predictions.groupby("backbone", sort=False):
        for input_, rows in image_inputs(images, config["sequences"], config["planes"]):
            for prediction_set, model, selected in evaluation_sets(rows, external_cohorts):
                groups.append(({"level": "image", "backbone": backbone, "input": input_,
                                PREDICTION_SET: prediction_set, "model": model}, selected, "bootstrap"))
    case_frames = []
    if case_predictions is not None:
        case_frames.append(case_predictions)
    if fusion_predictions is not None:
        case_frames.append(fusion_predictions.assign(input=fusion_predictions["fusion_input"].map(fusion_input_name)))
    if case_frames:
        cases = pd.concat(case_frames, ignore_index=True)
        for (backbone, input_), rows in cases.groupby(["backbone", "input"], sort=False):
            for prediction_set, model, selected in evaluation_sets(rows, external_cohorts):
                groups.append(({"level": "case", "backbone": backbone, "input": input_,
                                PREDICTION_SET: prediction_set, "model": model}, selected, "wilson"))

    collected: dict[str, list[pd.DataFrame]] = {"per_class": [], "overall": [], "confusion": [], "reference": []}
    for keys, rows, intervals in groups:
        if rows.empty:
            continue
        tables = _evaluate(rows, task, options, intervals, reference)
        for name, table in tables.items():
            collected[name].append(table.assign(**keys)[[*KEY_COLUMNS, *table.columns]])
    names = {"per_class": paths.MULTICLASS_PER_CLASS, "overall": paths.MULTICLASS_OVERALL,
             "confusion": paths.MULTICLASS_CONFUSION, "reference": paths.MULTICLASS_REFERENCE}
    out = {names[key]: pd.concat(tables, ignore_index=True) for key, tables in collected.items() if tables}
    overall = out[paths.MULTICLASS_OVERALL]
    if config["splits"]["scheme"] == "holdout":
        out[paths.MULTICLASS_REPEATS] = repeat_summary(overall)
    if fusion_predictions is not None:
        out[paths.FUSION_COMPARISON] = fusion_comparison(overall)
    return out


def repeat_summary(overall: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max of the overall metrics over the hold-out repeats, per level,
    backbone, input and internal prediction set (validation, internal_test)."""
    internal = overall[overall[PREDICTION_SET].isin(("validation", "internal_test"))]
    rows = []
    for (level, backbone, input_, prediction_set), group in internal.groupby(
            ["level", "backbone", "input", PREDICTION_SET], sort=False):
        for metric in REPEAT_METRICS:
            values = group[metric].to_numpy(dtype=float)
            defined = values[np.isfinite(values)]
            rows.append({"level": level, "backbone": backbone, "input": input_, PREDICTION_SET: prediction_set,
                         "metric": metric, "n_repeats": len(group),
                         "mean": float(defined.mean()) if defined.size else np.nan,
                         "min": float(defined.min()) if defined.size else np.nan,
                         "max": float(defined.max()) if defined.size else np.nan})
    return pd.DataFrame(rows, columns=REPEAT_COLUMNS)


def fusion_comparison(overall: pd.DataFrame) -> pd.DataFrame:
    """Image only, clinical only and image + clinical (and the unfused ALL input) side by
    side on every test set (case level; test sets in order of appearance)."""
    inputs = [ALL_INPUT, *map(fusion_input_name, FUSION_INPUTS)]
    rows = overall[(overall["level"] == "case") & overall["input"].isin(inputs)
                   & ~overall[PREDICTION_SET].isin((OUT_OF_FOLD, "validation"))]
    test_set = rows.groupby(["backbone", PREDICTION_SET, "model"], sort=False).ngroup()
    fused = rows["input"].str.startswith(FUSION_PREFIX).groupby(test_set).transform("any")
    rows = rows.assign(_set=test_set, _order=rows["input"].map(inputs.index))[fused]
    return rows.sort_values(["_set", "_order"], kind="stable")[FUSION_COLUMNS].reset_index(drop=True)


def main_stage(config, image_prediction_paths, case_prediction_paths, fusion_prediction_path,
               out_dir) -> dict[str, Path]:
    """The workflow stage: every N-class table into ``out_dir`` (the tables folder)."""
    image_predictions = read_parquets(image_prediction_paths)
    case_predictions = read_parquets(case_prediction_paths) if case_prediction_paths else None
    fusion_predictions = pd.read_parquet(fusion_prediction_path) if fusion_prediction_path else None
    tables = build_tables(image_predictions, case_predictions, fusion_predictions, config)
    written = {name: write_csv(table, Path(out_dir) / paths.table_file(name)) for name, table in tables.items()}
    log.info("N-class tables: %s", ", ".join(f"{name} ({len(table)} rows)" for name, table in tables.items()))
    return written
