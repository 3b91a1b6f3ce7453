"""Detection evaluation stage: lesion-level accuracy of every model x input, and the
readers beside them (:mod:`spinedx.stats.froc`, :mod:`spinedx.stats.detection`).

Per model x input and cohort (``internal``: the out-of-fold maps of the cross-validation;
``external``: the fold ensemble), with stratified patient-bootstrap percentile intervals
(config ``evaluation``):

- ``detection_operating_points``: the candidate-score threshold of each model x input,
  chosen on the internal out-of-fold FROC as the one reaching the best sensitivity with
  at most ``detection_evaluation.operating_point.fp_per_case`` false positives per case (audit
  mode: the released bundle's, unchanged);
- ``detection_summary``: at that threshold lesion sensitivity and false positives per
  case; sensitivity at ``detection.fp_rates`` false positives per case and their mean
  (CPM); case-level detection AUC (a case's score = its best candidate's);
- ``detection_froc``: the FROC curve's points;
- ``detection_size_bands``: sensitivity at the operating point per lesion-size band;
- ``detection_readers`` (with readers' marks): each reader's sensitivity and false
  positives per case (every mark kept), the model's FROC sensitivity at the reader's
  false-positive rate on the same cases, and the difference model - reader.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.detection_task import DetectionTask
from spinedx.errors import InputError
from spinedx.io import write_csv
from spinedx.readers.detection_cases import read_cases_table
from spinedx.stats.detection import compare_with_readers, matches_from_tables
from spinedx.stats.froc import evaluate_detection, operating_point, threshold_at_fp_rate

log = logging.getLogger(__name__)

COHORTS = ("internal", "external")


def _read(path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read ({error}); rerun the stage that wrote it") from error


def _wide(summary: pd.DataFrame) -> dict:
    """metric, estimate, ci_lo, ci_hi rows -> {metric: estimate, metric_lo: ..., metric_hi: ...}."""
    row = {}
    for item in summary.itertuples():
        row[item.metric] = item.estimate
        row[f"{item.metric}_lo"], row[f"{item.metric}_hi"] = item.ci_lo, item.ci_hi
    return row


def released_thresholds(card_path) -> dict[tuple[str, str], float]:
    """(model, input) -> operating threshold recorded in a bundle's model card."""
    card = json.loads(Path(card_path).read_text())
    try:
        # JSON has no infinity: an infinite threshold (nothing kept) is stored as null.
        return {(p["model"], p["input"]): math.inf if p["threshold"] is None else float(p["threshold"])
                for p in card["detection"]["operating_points"]}
    except (KeyError, TypeError) as error:
        raise InputError(f"{card_path}: not a detection bundle's model card (no operating points); "
                         "audit.bundle must name a bundle of a detection study") from error


def main_stage(config, cases_path, candidate_paths, lesion_paths, reader_marks, reader_lesions, out_dir,
               bundle_card=None) -> None:
    task = DetectionTask.from_config(config)
    detection, reporting, bootstrap = config["detection"], config["detection_evaluation"], config["evaluation"]
    cases = read_cases_table(cases_path)
    ids = {cohort: cases.loc[cases["cohort"] == cohort, "patient_id"].tolist() for cohort in COHORTS}
    released = released_thresholds(bundle_card) if bundle_card else {}
    options = dict(fp_rates=detection["fp_rates"], size_bands_mm=reporting["size_bands_mm"],
                   n_boot=bootstrap["bootstrap_replicates"], seed=bootstrap["seed"], level=bootstrap["ci_level"])
    readers = None
    if reader_marks:
        marks, marked_lesions = _read(reader_marks), _read(reader_lesions)
        cohort = reporting["readers"]["cohort"]
        readers = {name: matches_from_tables(ids[cohort], marks[marks["reader"] == name],
                                             marked_lesions[marked_lesions["reader"] == name], reader_marks)
                   for name in sorted(set(marked_lesions["reader"]))}
    summary, froc, bands, compared, operating = [], [], [], [], []
    for (model, input_), candidates_path, lesions_path in zip(task.pairs, candidate_paths, lesion_paths):
        candidates, lesions = _read(candidates_path), _read(lesions_path)
        if set(candidates["model"]) - {model} or set(candidates["input"]) - {input_}:
            raise InputError(f"{candidates_path}: candidates of another model or input than {model} x {input_}")
        matches = {cohort: matches_from_tables(ids[cohort], candidates[candidates["cohort"] == cohort],
                                               lesions[lesions["cohort"] == cohort], candidates_path)
                   for cohort in COHORTS}
        if released:
            if (model, input_) not in released:
                raise InputError(f"{bundle_card}: no operating point of {model} x {input_}")
            threshold, chosen_on = released[(model, input_)], "released bundle"
        else:
            target = reporting["operating_point"]["fp_per_case"]
            threshold = threshold_at_fp_rate(matches["internal"], target)
            chosen_on = f"internal out-of-fold FROC, at most {target:g} FP per case"
        point = {"model": model, "input": input_, "threshold": threshold, "chosen_on": chosen_on}
        for cohort in COHORTS:
            if not ids[cohort]:
                continue
            result = evaluate_detection(matches[cohort], threshold=threshold, **options)
            settings = result.settings
            label = {"model": model, "input": input_, "cohort": cohort}
            summary.append({**label, "threshold": threshold, "n_cases": settings["n_cases"],
                            "n_positive_cases": settings["n_positive_cases"], "n_lesions": settings["n_lesions"],
                            "n_detected": settings["n_detected"], "n_fp": settings["n_fp"],
                            **_wide(result.summary)})
            froc.append(result.froc.assign(**label))
            bands.append(result.size_bands.assign(**label))
            at = operating_point(matches[cohort], threshold)
            point.update({f"{cohort}_sensitivity": at["sensitivity"], f"{cohort}_fp_per_case": at["fp_per_case"]})
        operating.append(point)
        if readers:
            cohort = reporting["readers"]["cohort"]
            table = compare_with_readers(matches[cohort], readers, n_boot=bootstrap["bootstrap_replicates"],
                                         seed=bootstrap["seed"], level=bootstrap["ci_level"])
            compared.append(table.assign(model=model, input=input_, cohort=cohort))
    first = ["model", "input", "cohort"]
    tables = {
        paths.DETECTION_SUMMARY: pd.DataFrame(summary),
        paths.DETECTION_FROC: _first(pd.concat(froc, ignore_index=True), first),
        paths.DETECTION_SIZE_BANDS: _first(pd.concat(bands, ignore_index=True), first),
        paths.DETECTION_READERS: _first(pd.concat(compared, ignore_index=True), first) if compared
        else pd.DataFrame(columns=[*first, "reader"]),
        paths.DETECTION_OPERATING_POINTS: pd.DataFrame(operating),
    }
    for name, table in tables.items():
        write_csv(table, Path(out_dir) / paths.table_file(name))
    for row in summary:
        log.info("%s %s %s: sensitivity %.3f at %.2f FP/case (threshold %.3g), CPM %.3f", row["model"],
                 row["input"], row["cohort"], row["lesion_sensitivity"], row["fp_per_case"], row["threshold"],
                 row["cpm"])
    if math.isinf(min(p["threshold"] for p in operating)):
        log.warning("an operating threshold is infinite: no FROC point within the target false-positive rate")


def _first(table: pd.DataFrame, columns) -> pd.DataFrame:
    return table[[*columns, *(c for c in table.columns if c not in columns)]]
