"""Subgroups stage: the final system's accuracy per level of each subgroup variable, and
a forest plot.

Variables (config ``subgroups.variables``) are columns of the cases table (sex, centre,
scanner, ...), ``age_band`` (from ``age`` and ``subgroups.age_bands``), or the DICOM
acquisition attributes ``vendor``, ``scanner_model`` and ``field_strength`` when the
cases table has no such column: read from the headers of the patient's images through
the DICOM reader's allow-list (:func:`spinedx.readers.dicom.acquisition_attributes`; no
other header value is read), the most frequent value over the patient's images. A
patient without a value is in level ``missing`` (``not DICOM`` for header variables of
non-DICOM images).

Rows (``subgroups.csv``): the final system (:mod:`spinedx.final_system`), case level,
external cohort scored by the ensemble (the internal cohort's out-of-fold predictions
when a study has no external cohort); one row for all cases, then one per variable and
level, with :data:`spinedx.stats.tables.METRIC_COLUMNS` (Wilson intervals; AUC and kappa
with the patient bootstrap, evaluation.bootstrap_replicates). A level with one class
has no AUC and only one of sensitivity and specificity.

N-class studies (more than two classes): the final system is the case-level ALL input of
``figures.final_backbone`` (else the best case-level macro-AUC on the external test set of
the N-class overall table) on every external cohort's cases (ensemble; the internal
test cases when a study has none), and each row holds
:data:`MULTICLASS_SUBGROUP_COLUMNS`: micro-accuracy (Wilson), macro-F1, macro
sensitivity, macro specificity, Cohen's kappa and macro-AUC (patient bootstrap)
from :func:`spinedx.stats.multiclass.multiclass_tables`, the same call the N-class
evaluation makes, so the "all cases" row equals that table's row of the same cases. The
forest plot shows accuracy and macro-F1. ``cohort`` is a variable like any other column of
the cases table (one level per external centre).

Studies whose labels belong to images (labels.source annotation, e.g. the canine study;
no case level): the same N-class rows on images (every image of every sequence scored
by the predictions that never saw its patient, :func:`spinedx.final_system.scoring_image_predictions`;
final backbone by the best image-level macro-AUC), every interval from the bootstrap that
resamples patients (dogs) with all their images (accuracy too: images of one dog are
correlated, so no Wilson interval). Variables may then also be columns of the image table
(``sequence``, or any column the annotations stage writes) and ``plane`` (the plane of
config ``planes`` holding the image's sequence); columns of the cases table come first.

Detection studies (:func:`detection_main_stage`): the final detection system (the model
x input of best internal out-of-fold CPM, :func:`spinedx.final_system.choose_detection_system`)
on the external cohort (fold ensemble), at its operating threshold (the detection
evaluation's): lesion-level sensitivity and false positives per case
(:func:`spinedx.stats.froc.evaluate_detection`, the detection evaluation's own call)
for all cases, per lesion-size band (``detection_evaluation.size_bands_mm``; sensitivity
only: false positives belong to cases, not to a lesion size) and per level of each
variable (columns of the cases table, ``age_band``), with percentile intervals from the
patient bootstrap (stratified by lesion-bearing patients; a patient's lesions and false
positives drawn together). Forest plot of both.
"""

from __future__ import annotations

import logging
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.detection_task import DetectionTask
from spinedx.final_system import (EVALUATED_MODEL, choose_detection_system, choose_final_backbone, evaluated_cases,
                                  multiclass_final_system)
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.readers.cases import read_cases
from spinedx.readers.detection_cases import read_cases_table
from spinedx.readers.dicom import ACQUISITION_ATTRIBUTES, acquisition_attributes, is_dicom
from spinedx.stats.detection import matches_from_tables
from spinedx.stats.froc import evaluate_detection
from spinedx.stats.multiclass import multiclass_tables
from spinedx.stats.tables import METRIC_COLUMNS, metrics_table
from spinedx.task import BinaryTask, Task, task_from_config

log = logging.getLogger(__name__)

AGE_BAND = "age_band"
PLANE = "plane"
LESION_SIZE = "lesion size"
DETECTION_METRICS = ("lesion_sensitivity", "fp_per_case")
DETECTION_SUBGROUP_COLUMNS = ["n_cases", "n_lesions", "n_detected", "n_fp",
                              *(f"{m}{s}" for m in DETECTION_METRICS for s in ("", "_lo", "_hi"))]
MISSING, NOT_DICOM = "missing", "not DICOM"
ALL_CASES = "all cases"
DICOM_VARIABLES = tuple(ACQUISITION_ATTRIBUTES.values())
MULTICLASS_METRICS = ("accuracy", "macro_f1", "macro_sensitivity", "macro_specificity", "kappa", "macro_auc")
MULTICLASS_SUBGROUP_COLUMNS = ["n", *(f"{m}{s}" for m in MULTICLASS_METRICS for s in ("", "_lo", "_hi"))]


def age_bands(ages: pd.Series, cuts) -> pd.Series:
    """Age band labels: cuts [50, 65] give "<50", "50 to <65", ">=65"; no age: missing."""
    cuts = [float(c) for c in cuts]
    if sorted(cuts) != cuts or len(set(cuts)) != len(cuts):
        raise InputError(f"subgroups.age_bands must be ascending distinct cut points, got {cuts}")

    def fmt(value: float) -> str:
        return f"{value:g}"

    labels = [f"<{fmt(cuts[0])}"] + [f"{fmt(a)} to <{fmt(b)}" for a, b in zip(cuts, cuts[1:])] + [f">={fmt(cuts[-1])}"]
    values = pd.to_numeric(ages, errors="coerce").to_numpy(dtype=float)
    index = np.searchsorted(cuts, values, side="right")
    return pd.Series(np.where(np.isnan(values), MISSING, np.asarray(labels, dtype=object)[index]), index=ages.index)


def _dicom_file(path: Path) -> Path | None:
    """The DICOM file an image row stands for: the file itself, or for a volume study's
    DICOM series (a folder of slices) its first DICOM file by name (the acquisition
    attributes are the same for every slice of a series); None when not DICOM."""
    if path.is_dir():
        return next((p for p in sorted(path.iterdir()) if p.is_file() and is_dicom(p)), None)
    return path if path.is_file() and is_dicom(path) else None


def dicom_values(images: pd.DataFrame, images_dir: Path, variables) -> pd.DataFrame:
    """Per patient, the most frequent value of each DICOM acquisition variable over their
    images or DICOM series (ties: the alphabetically first); NOT_DICOM for patients without
    DICOM images."""
    counts: dict[str, dict[str, Counter]] = {}
    for row in images[["patient_id", "image_path"]].drop_duplicates().itertuples(index=False):
        path = _dicom_file(images_dir / row.image_path)
        per_patient = counts.setdefault(row.patient_id, {name: Counter() for name in variables})
        if path is None:
            continue
        attributes = acquisition_attributes(path)
        for name in variables:
            per_patient[name][attributes[name] or MISSING] += 1
    rows = []
    for patient_id, per_variable in counts.items():
        row = {"patient_id": patient_id}
        for name, counter in per_variable.items():
            row[name] = (min(counter, key=lambda value: (-counter[value], value)) if counter else NOT_DICOM)
        rows.append(row)
    return pd.DataFrame(rows, columns=["patient_id", *variables])


def subgroup_values(cases: pd.DataFrame, variables, age_cuts, images: pd.DataFrame | None, images_dir,
                    cases_path) -> pd.DataFrame:
    """patient_id and one text column per variable (its level for each patient)."""
    values = cases[["patient_id"]].copy()
    from_dicom = [v for v in variables if v not in cases.columns and v in DICOM_VARIABLES]
    for variable in variables:
        if variable in cases.columns:
            column = cases[variable].astype("string").str.strip()
            values[variable] = column.fillna(MISSING).replace("", MISSING).astype(str).to_numpy()
        elif variable == AGE_BAND:
            if "age" not in cases.columns:
                raise InputError(f"{cases_path}: subgroup variable {AGE_BAND} needs an `age` column; add it "
                                 "or remove age_band from config subgroups.variables")
            values[variable] = age_bands(cases["age"], age_cuts).to_numpy()
        elif variable not in from_dicom:
            raise InputError(f"{cases_path}: subgroup variable {variable!r} is not a column of the cases table "
                             f"(columns: {list(cases.columns)}) nor one of {AGE_BAND}, {', '.join(DICOM_VARIABLES)}; "
                             "add the column or correct config subgroups.variables")
    if from_dicom:
        if images is None:
            raise InputError(f"subgroup variable(s) {from_dicom} come from DICOM headers: give the image table")
        read = dicom_values(images, Path(images_dir), from_dicom)
        values = values.merge(read, on="patient_id", how="left")
        values[from_dicom] = values[from_dicom].fillna(NOT_DICOM)
    return values


def subgroup_table(cases: pd.DataFrame, values: pd.DataFrame, variables, score_col: str, threshold: float,
                   evaluation: dict) -> pd.DataFrame:
    """One row for all cases, then one per variable x level (levels sorted, missing last)."""
    options = dict(threshold=threshold, n_boot=int(evaluation["bootstrap_replicates"]), seed=int(evaluation["seed"]),
                   level=evaluation["ci_level"], score_col=score_col)
    frame = cases.merge(values, on="patient_id", how="left")
    parts = [metrics_table(frame.assign(variable=ALL_CASES, level=ALL_CASES), ["variable", "level"], **options)]
    for variable in variables:
        levels = sorted(set(frame[variable]), key=lambda v: (v in (MISSING, NOT_DICOM), _natural(v)))
        frame["level"] = pd.Categorical(frame[variable], categories=levels)
        part = metrics_table(frame.sort_values("level").assign(variable=variable, level=lambda f: f["level"].astype(str)),
                             ["variable", "level"], **options)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def image_subgroup_values(images: pd.DataFrame, variables, planes) -> pd.DataFrame:
    """image_id and one text column per image-level variable: a column of the image table,
    or ``plane`` (the plane of config ``planes`` holding the image's sequence; none: missing)."""
    values = images[["image_id"]].copy()
    plane_of = {sequence: plane for plane, members in (planes or {}).items() for sequence in members}
    for variable in variables:
        column = images["sequence"].map(plane_of) if variable == PLANE else images[variable]
        values[variable] = column.astype("string").str.strip().fillna(MISSING).replace("", MISSING).astype(str)
    return values


def multiclass_subgroup_table(cases: pd.DataFrame, values: pd.DataFrame, variables, task: Task,
                              evaluation: dict, proportion_intervals: str = "wilson") -> pd.DataFrame:
    """N classes: one row for all cases, then one per variable x level (levels sorted,
    missing last), :data:`MULTICLASS_SUBGROUP_COLUMNS` (rows keep the predictions' order,
    so the bootstrap draws the N-class evaluation's patients). ``cases``: case rows, or
    image rows whose image-level variables are already columns (``values`` then holds the
    patient-level ones); ``proportion_intervals``: ``bootstrap`` for image rows."""
    options = dict(n_boot=int(evaluation["bootstrap_replicates"]), seed=int(evaluation["seed"]),
                   level=float(evaluation["ci_level"]), proportion_intervals=proportion_intervals, stratify="none")
    frame = cases.merge(values, on="patient_id", how="left", sort=False)

    def row(variable, level, rows):
        overall = multiclass_tables(rows["label"].to_numpy(), rows["patient_id"].to_numpy(), task.classes,
                                    probs=task.probabilities(rows), decisions=task.decide(rows),
                                    **options)["overall"].iloc[0]
        return {"variable": variable, "level": level, **{c: overall[c] for c in MULTICLASS_SUBGROUP_COLUMNS}}

    out = [row(ALL_CASES, ALL_CASES, frame)]
    for variable in variables:
        levels = sorted(set(frame[variable]), key=lambda v: (v in (MISSING, NOT_DICOM), _natural(v)))
        out += [row(variable, level, frame[frame[variable] == level]) for level in levels]
    return pd.DataFrame(out, columns=["variable", "level", *MULTICLASS_SUBGROUP_COLUMNS])


def _forest(table: pd.DataFrame, panels, counts, title: str, note: str, width: float):
    """The forest plot of every subgroup figure: one row per level (labelled with
    ``counts``), one panel per (metric, panel title, right end of the axis), the estimate
    with its interval, the all-cases value dashed, "n/a" where undefined."""
    plt = pyplot()
    rows = table.reset_index(drop=True)
    labels = [ALL_CASES if r.variable == ALL_CASES else f"{r.variable}: {r.level}" for r in rows.itertuples()]
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 1.2 + 0.24 * len(rows)), sharey=True)
    y = np.arange(len(rows))[::-1]
    for ax, (metric, panel_title, right), color in zip(axes, panels, PALETTE):
        estimate = rows[metric].to_numpy(dtype=float)
        lo, hi = rows[f"{metric}_lo"].to_numpy(dtype=float), rows[f"{metric}_hi"].to_numpy(dtype=float)
        shown = np.isfinite(estimate)
        err = np.vstack([np.where(np.isfinite(lo), estimate - lo, 0), np.where(np.isfinite(hi), hi - estimate, 0)])
        ax.errorbar(estimate[shown], y[shown], xerr=err[:, shown], fmt="s", color=color, ms=4, capsize=2, lw=1)
        if np.isfinite(estimate[0]):
            ax.axvline(estimate[0], color="0.5", lw=0.8, ls="--", zorder=0)
        for yy in y[~shown]:
            ax.text(right / 2, yy, "n/a", ha="center", va="center", fontsize=6, color="0.4")
        ax.set_xlim(-0.02 * right, right)
        ax.set_title(panel_title)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, [f"{label}  ({count})" for label, count in zip(labels, counts)])
    axes[0].set_ylim(-0.7, len(rows) - 0.3)
    # Wrapped to the figure's width: a long system name (detection) ran past both edges.
    fig.suptitle("\n".join(textwrap.wrap(title, width=int(width * 10))))
    fig.text(0.01, 0.0, note, fontsize=6, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def multiclass_forest_figure(table: pd.DataFrame, backbone: str, cohort: str, unit: str = "case"):
    """Accuracy and macro-F1 with their intervals, one row per subgroup level."""
    intervals = ("patient bootstrap, a patient's images drawn together" if unit == "image"
                 else "accuracy: Wilson; macro-F1: patient bootstrap")
    return _forest(table, (("accuracy", "Accuracy (micro)", 1.02), ("macro_f1", "Macro-F1", 1.02)),
                   [f"n = {int(n)}" for n in table["n"]],
                   f"Subgroups of the final system ({backbone}, {unit} level, {cohort})",
                   f"95% intervals ({intervals}); dashed line: all {unit}s", PAGE_WIDTH * 0.8)


def _multiclass_stage(config, cases_path, images_path, images_dir, case_prediction_paths, overall_path, out,
                      figure_stem, image_prediction_paths=()) -> pd.DataFrame:
    task = task_from_config(config)
    settings = config["subgroups"]
    variables = list(settings["variables"])
    cases = read_cases(cases_path, list(task.classes), all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=None)
    backbone, scored, unit, test_set = multiclass_final_system(
        pd.read_csv(overall_path), config,
        case_predictions=None if image_prediction_paths else read_parquets(case_prediction_paths),
        image_predictions=read_parquets(image_prediction_paths) if image_prediction_paths else None)
    final = scored[scored["cohort"] != "internal"]
    cohort = f"{test_set} (ensemble)"
    if final.empty:
        final, cohort = scored, "internal (internal test)"
    images = pd.read_parquet(images_path) if images_path else None
    per_image = []
    if image_prediction_paths:
        per_image = [v for v in variables if v not in cases.columns and (v == PLANE or v in images.columns)]
        unknown = [v for v in variables if v not in per_image and v not in cases.columns and v != AGE_BAND]
        if unknown:
            raise InputError(f"{cases_path}, {images_path}: subgroup variable(s) {unknown} are columns of neither "
                             f"the cases table ({list(cases.columns)}) nor the image table ({list(images.columns)}) "
                             f"and not {PLANE} or {AGE_BAND}; add the column or correct config subgroups.variables")
    per_patient = [v for v in variables if v not in per_image]
    values = subgroup_values(cases, per_patient, settings["age_bands"], images, images_dir, cases_path)
    final = final.drop(columns=[v for v in variables if v in final.columns])
    if per_image:
        final = final.merge(image_subgroup_values(images, per_image, config["planes"]), on="image_id", how="left",
                            sort=False)
    table = multiclass_subgroup_table(final, values, variables, task, config["evaluation"],
                                      proportion_intervals="bootstrap" if unit == "image" else "wilson")
    table.insert(0, "cohort", cohort)
    table.insert(1, "backbone", backbone)
    write_csv(table, out)
    save_figure(multiclass_forest_figure(table, backbone, cohort, unit), Path(figure_stem))
    log.info("subgroups (N classes): %d levels of %s -> %s", len(table) - 1, variables, out)
    return table


def _natural(value: str):
    """Numbers by value (age bands, field strengths), text alphabetically."""
    head = value.lstrip("<>=").split(" ")[0]
    side = 0 if value.startswith("<") else 2 if value.startswith(">") else 1  # "<50" before "50 to <65"
    try:
        return (0, float(head), side, value)
    except ValueError:
        return (1, 0.0, 0, value)


def forest_figure(table: pd.DataFrame, backbone: str, cohort: str):
    """Sensitivity, specificity and AUC with their intervals, one row per subgroup level."""
    return _forest(table, (("sensitivity", "Sensitivity", 1.02), ("specificity", "Specificity", 1.02),
                           ("auc", "AUC", 1.02)),
                   [f"{int(r.n_pos)}/{int(r.n_neg)}" for r in table.itertuples()],
                   f"Subgroups of the final system ({backbone}, case level, {cohort} cohort)",
                   "(positive/negative cases) per level; 95% intervals; dashed line: all cases; "
                   "n/a: the level lacks a class", PAGE_WIDTH)


def main_stage(config, cases_path, images_path, images_dir, case_prediction_paths, table3_path, out,
               figure_stem, overall_path=None, image_prediction_paths=()) -> pd.DataFrame:
    """``table3_path`` chooses the final backbone of a two-class study, ``overall_path``
    (the N-class overall table) that of an N-class one or of a study whose labels belong
    to images (``image_prediction_paths``, the ensembling stage's tables, instead of
    ``case_prediction_paths``; any number of classes)."""
    if len(config["classes"]) > 2 or image_prediction_paths:
        if not overall_path:
            raise InputError("subgroups of an N-class study or of image labels need the N-class overall table "
                             "(--overall)")
        return _multiclass_stage(config, cases_path, images_path, images_dir, case_prediction_paths, overall_path,
                                 out, figure_stem, image_prediction_paths)
    task = BinaryTask.from_config(config)
    settings = config["subgroups"]
    variables = list(settings["variables"])
    cases = read_cases(cases_path, task.classes, all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=None)
    backbone = choose_final_backbone(pd.read_csv(table3_path), config)
    predictions = read_parquets(case_prediction_paths)
    cohort = "external"
    final = evaluated_cases(predictions, backbone, cohorts=(cohort,))
    if final.empty:
        cohort = "internal"
        final = evaluated_cases(predictions, backbone, cohorts=(cohort,))
    images = pd.read_parquet(images_path) if images_path else None
    values = subgroup_values(cases, variables, settings["age_bands"], images, images_dir, cases_path)
    table = subgroup_table(final, values, variables, task.positive_column, task.threshold, config["evaluation"])
    table.insert(0, "cohort", f"{cohort} ({EVALUATED_MODEL[cohort]})")
    table.insert(1, "backbone", backbone)
    write_csv(table[["cohort", "backbone", "variable", "level", *METRIC_COLUMNS]], out)
    save_figure(forest_figure(table, backbone, cohort), Path(figure_stem))
    log.info("subgroups: %d levels of %s -> %s", len(table) - 1, variables, out)
    return table


# --- Detection studies --------------------------------------------------------------------


def detection_subgroup_table(matches, values: pd.DataFrame, variables, threshold: float, size_bands_mm,
                             evaluation: dict) -> pd.DataFrame:
    """All cases, each lesion-size band, then each variable x level (levels sorted,
    missing last): :data:`DETECTION_SUBGROUP_COLUMNS`. ``matches``: the cohort's
    :class:`~spinedx.stats.froc.CaseMatch` list; ``values``: patient_id and one column per
    variable, for every case of ``matches``."""
    options = dict(threshold=threshold, n_boot=int(evaluation["bootstrap_replicates"]), seed=int(evaluation["seed"]),
                   level=float(evaluation["ci_level"]))
    by_case = values.set_index("patient_id")

    def row(variable, level, chosen, with_bands=False):
        result = evaluate_detection(chosen, size_bands_mm=size_bands_mm if with_bands else None, **options)
        wide = {m.metric: (m.estimate, m.ci_lo, m.ci_hi) for m in result.summary.itertuples()}
        settings = result.settings
        out = {"variable": variable, "level": level, "n_cases": settings["n_cases"],
               "n_lesions": settings["n_lesions"], "n_detected": settings["n_detected"], "n_fp": settings["n_fp"]}
        for metric in DETECTION_METRICS:
            out[metric], out[f"{metric}_lo"], out[f"{metric}_hi"] = wide[metric]
        return out, result.size_bands

    first, bands = row(ALL_CASES, ALL_CASES, matches, with_bands=bool(size_bands_mm))
    rows = [first]
    for band in ([] if bands is None else bands.itertuples()):
        rows.append({"variable": LESION_SIZE, "level": band.band, "n_cases": first["n_cases"],
                     "n_lesions": band.n_lesions, "n_detected": band.n_detected, "n_fp": np.nan,
                     "lesion_sensitivity": band.sensitivity, "lesion_sensitivity_lo": band.ci_lo,
                     "lesion_sensitivity_hi": band.ci_hi, "fp_per_case": np.nan, "fp_per_case_lo": np.nan,
                     "fp_per_case_hi": np.nan})
    case_values = by_case.loc[[m.case_id for m in matches]]
    for variable in variables:
        column = case_values[variable].to_numpy()
        levels = sorted(set(column), key=lambda v: (v in (MISSING, NOT_DICOM), _natural(v)))
        for level in levels:
            rows.append(row(variable, level, [m for m, v in zip(matches, column) if v == level])[0])
    return pd.DataFrame(rows, columns=["variable", "level", *DETECTION_SUBGROUP_COLUMNS])


def detection_forest_figure(table: pd.DataFrame, system: str, cohort: str):
    """Lesion sensitivity and false positives per case with their intervals, one row per level."""
    fp_right = max(1.0, float(np.nanmax(np.r_[table["fp_per_case_hi"].to_numpy(dtype=float),
                                              table["fp_per_case"].to_numpy(dtype=float), 0])) * 1.1)
    return _forest(table, (("lesion_sensitivity", "Lesion sensitivity", 1.02),
                           ("fp_per_case", "False positives per case", fp_right)),
                   [f"{int(r.n_cases)} cases, {int(r.n_lesions)} lesions" for r in table.itertuples()],
                   f"Subgroups of the detection system ({system}, lesion level, {cohort})",
                   "95% intervals: patient bootstrap; dashed line: all cases; lesion-size bands: "
                   "sensitivity only (false positives belong to cases)", PAGE_WIDTH * 0.8)


def detection_main_stage(config, cases_path, candidate_paths, lesion_paths, summary_path, operating_points_path,
                         out, figure_stem) -> pd.DataFrame:
    """Detection studies (module docstring): ``cases_path`` the detection_cases stage's
    cases table (it keeps the cases table's columns), ``candidate_paths`` /
    ``lesion_paths`` the candidates stage's tables of every model x input (the study's
    order), the detection summary (chooses the system) and operating points (its threshold)."""
    task = DetectionTask.from_config(config)
    settings = config["subgroups"]
    variables = list(settings["variables"])
    cases = read_cases_table(cases_path)
    model, input_ = choose_detection_system(pd.read_csv(summary_path), task.pairs)
    index = [tuple(pair) for pair in task.pairs].index((model, input_))
    points = pd.read_csv(operating_points_path).set_index(["model", "input"])
    threshold = float(points.loc[(model, input_), "threshold"])
    cohort = "external" if (cases["cohort"] == "external").any() else "internal"
    ids = cases.loc[cases["cohort"] == cohort, "patient_id"].tolist()
    candidates, lesions = pd.read_parquet(candidate_paths[index]), pd.read_parquet(lesion_paths[index])
    matches = matches_from_tables(ids, candidates[candidates["cohort"] == cohort], lesions[lesions["cohort"] == cohort],
                                  candidate_paths[index])
    unknown = [v for v in variables if v not in cases.columns and v != AGE_BAND]
    if unknown:
        raise InputError(f"{cases_path}: subgroup variable(s) {unknown} are not columns of the detection cases table "
                         f"(the cases table's columns: {list(cases.columns)}) nor {AGE_BAND}; add the column to "
                         "cases.csv or correct config subgroups.variables")
    values = subgroup_values(cases, variables, settings["age_bands"], None, None, cases_path)
    table = detection_subgroup_table(matches, values, variables, threshold,
                                     config["detection_evaluation"]["size_bands_mm"], config["evaluation"])
    scorer = "fold ensemble" if cohort == "external" else "out-of-fold"
    table.insert(0, "cohort", f"{cohort} ({scorer})")
    table.insert(1, "model", model)
    table.insert(2, "input", input_)
    table.insert(3, "threshold", threshold)
    write_csv(table, out)
    save_figure(detection_forest_figure(table, f"{model} x {input_}", f"{cohort} cohort, {scorer}"),
                Path(figure_stem))
    log.info("subgroups (detection): %d levels of %s -> %s", len(table) - 1, variables, out)
    return table
