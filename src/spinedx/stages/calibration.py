"""Calibration and clinical-utility stage: are the probabilities right, and is acting on
them worth it?

* ``calibration.csv``: per cohort (external: ensemble; internal: out-of-fold) x backbone
  x input (one sequence: ALL only, the same predictions), case level: Brier and scaled Brier score, calibration intercept
  (calibration-in-the-large) and slope with patient-bootstrap percentile intervals
  (:func:`spinedx.stats.calibration.calibration_summary`, evaluation.bootstrap_replicates
  and seed); ``final_system`` marks the final system's rows.
* ``calibration_curve.csv``: the final system's reliability curve per cohort: binned
  (config calibration.n_bins, strategy; Wilson intervals of the observed fraction) and
  LOWESS-smoothed (calibration.lowess_frac) on a grid of probabilities.
* ``decision_curve.csv``: net benefit of every backbone x input on the external cohort's
  cases that every one of them scored, against treat all and treat none
  (:func:`spinedx.stats.decision_curve.decision_curve`, i.e. dcurves), thresholds from
  0.01 to calibration.dca_max_threshold in steps of calibration.dca_step.
* Figures ``calibration_curve`` (final system, a panel per cohort) and ``decision_curve``
  (the final backbone's inputs, the final system highlighted; a study of one sequence,
  whose input and ALL coincide, e.g. a volume study: every model's ALL input).

N-class studies (:func:`multiclass_main_stage`; more than two classes, labels per case;
also two-class studies of another shape than the reference: hold-out, several external
cohorts, fusion, planes, whose rows are those of the positive class only, without the
multi-class Brier row, and whose decision curves are the positive class's by default):
the final system (case-level ALL input of the backbone the N-class overall table chooses)
on each test set (the internal test set, each external cohort, and the pooled external
cohorts): ``calibration.csv`` one row per class (one-vs-rest: ``prob_<class>`` against
"is that class": Brier, scaled Brier, calibration intercept and slope with patient-bootstrap
intervals, as above) and one row ``class = all`` with the multi-class Brier score
(:func:`spinedx.stats.calibration.multiclass_brier`); ``calibration_curve.csv`` the binned
one-vs-rest reliability curve of every class on the pooled external cohorts; the figure a
panel per class. ``decision_curve.csv``: per class of calibration.dca_classes (empty: every
class) the one-vs-rest net benefit (that class's probability against "is that class", the
treatment decision for that class) of every backbone x input on the pooled external
cohorts' cases every one of them scored (:func:`multiclass_decision_curve_table`), against
treat all / treat none of that class; the figure a panel per class (the final backbone's
inputs, the final system highlighted).

Studies whose labels belong to images (labels.source annotation, e.g. the canine study;
no case level): the same N-class calibration on images (every image of every sequence,
the ALL input, the backbone of the best image-level macro-AUC; rows chosen by
:func:`spinedx.final_system.scoring_image_predictions`), with intervals from the
bootstrap that resamples patients (dogs) with all their images, since images of one
patient are correlated. ``decision_curve.csv`` there: the one-vs-rest net benefit per
class of every backbone's ALL input per image (net benefit per image) on the same test
set, against treat all / treat none of that class (no interval: as for cases).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.aggregation import ALL_INPUT, distinct_inputs
from spinedx.final_system import (EVALUATED_MODEL, choose_final_backbone, evaluated_cases,
                                  evaluated_sets, multiclass_final_system, scoring_image_predictions,
                                  scoring_predictions)
from spinedx.input_modes import model_names
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import COLUMN_WIDTH, PAGE_WIDTH, PALETTE, colors, pyplot, save_figure
from spinedx.stats.calibration import (calibration_summary, multiclass_brier, reliability_curve,
                                      smoothed_calibration)
from spinedx.stats.decision_curve import COLUMNS as DECISION_CURVE_COLUMNS, TREAT_ALL, TREAT_NONE, decision_curve
from spinedx.task import BinaryTask, task_from_config

log = logging.getLogger(__name__)

COHORTS = tuple(EVALUATED_MODEL)
SUMMARY_KEYS = ["n", "n_positive", "brier", "brier_lo", "brier_hi", "scaled_brier", "scaled_brier_lo",
                "scaled_brier_hi", "intercept", "intercept_lo", "intercept_hi", "slope", "slope_lo", "slope_hi",
                "intercept_se", "slope_se", "interval", "n_boot_valid"]
CURVE_COLUMNS = ["cohort", "curve", "bin", "lower", "upper", "n", "n_positive", "predicted", "observed",
                 "observed_lo", "observed_hi"]


def calibration_table(case_predictions: pd.DataFrame, backbones, score_col: str, final_backbone: str,
                      n_boot: int, seed: int, level: float) -> pd.DataFrame:
    rows = []
    inputs = distinct_inputs(case_predictions["input"])  # one sequence: ALL only (the same predictions)
    for cohort in COHORTS:
        cases = evaluated_cases(case_predictions, input_=None, cohorts=(cohort,))
        for (backbone, input_), group in cases.groupby(["backbone", "input"], sort=False):
            if backbone not in backbones or input_ not in inputs or group["label"].nunique() < 2:
                continue  # one class: calibration slope and scaled Brier undefined
            summary = calibration_summary(group["label"].to_numpy(), group[score_col].to_numpy(),
                                          group["patient_id"].to_numpy(), n_boot=n_boot, seed=seed, level=level)
            rows.append({"cohort": cohort, "backbone": backbone, "input": input_,
                         "final_system": backbone == final_backbone and input_ == ALL_INPUT,
                         **{key: summary[key] for key in SUMMARY_KEYS}})
    return pd.DataFrame(rows, columns=["cohort", "backbone", "input", "final_system", *SUMMARY_KEYS])


def curve_table(final_cases: pd.DataFrame, score_col: str, settings: dict, level: float) -> pd.DataFrame:
    parts = []
    for cohort, group in final_cases.groupby("cohort", sort=False):
        labels, probs = group["label"].to_numpy(), group[score_col].to_numpy()
        n_bins = min(int(settings["n_bins"]), len(group))
        binned = reliability_curve(labels, probs, n_bins=n_bins, strategy=settings["strategy"], level=level)
        parts.append(binned.rename(columns={"mean_predicted": "predicted"}).assign(cohort=cohort, curve="binned"))
        grid = np.linspace(probs.min(), probs.max(), 50)
        smooth = smoothed_calibration(labels, probs, frac=settings["lowess_frac"], grid=grid)
        parts.append(smooth.assign(cohort=cohort, curve="lowess"))
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True).reindex(columns=CURVE_COLUMNS)


def decision_curve_table(case_predictions: pd.DataFrame, backbones, score_col: str, settings: dict) -> pd.DataFrame:
    """Net benefit of every backbone x input on the external cases all of them scored."""
    cases = evaluated_cases(case_predictions, input_=None, cohorts=("external",))
    cases = cases[cases["backbone"].isin(backbones) & cases["input"].isin(distinct_inputs(case_predictions["input"]))]
    if cases.empty:
        return pd.DataFrame()
    wide = cases.pivot_table(index=["patient_id", "label"], columns=["backbone", "input"], values=score_col)
    wide = wide.dropna()
    thresholds = decision_thresholds(settings)
    models = {f"{backbone}/{input_}": wide[(backbone, input_)].to_numpy()
              for backbone, input_ in cases[["backbone", "input"]].drop_duplicates().itertuples(index=False)}
    return decision_curve(wide.index.get_level_values("label").to_numpy(), models, thresholds)


def _summary_text(row: pd.Series) -> str:
    def interval(name):
        lo, hi = row[f"{name}_lo"], row[f"{name}_hi"]
        return f" ({lo:.2f} to {hi:.2f})" if np.isfinite(lo) and np.isfinite(hi) else ""

    return (f"intercept {row['intercept']:.2f}{interval('intercept')}\n"
            f"slope {row['slope']:.2f}{interval('slope')}\n"
            f"Brier {row['brier']:.3f}{interval('brier')}")


def calibration_figure(final_cases: pd.DataFrame, curves: pd.DataFrame, summary: pd.DataFrame, score_col: str,
                       backbone: str, positive: str):
    plt = pyplot()
    cohorts = [c for c in COHORTS if c in set(final_cases["cohort"])]
    fig, axes = plt.subplots(2, max(len(cohorts), 1), figsize=(PAGE_WIDTH if len(cohorts) > 1 else COLUMN_WIDTH * 1.25,
                                                                4.6), squeeze=False,
                             gridspec_kw={"height_ratios": [4, 1]}, sharex="col")
    for column, cohort in enumerate(cohorts):
        ax, rug = axes[0][column], axes[1][column]
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="ideal")
        binned = curves[(curves["cohort"] == cohort) & (curves["curve"] == "binned")]
        smooth = curves[(curves["cohort"] == cohort) & (curves["curve"] == "lowess")]
        ax.plot(smooth["predicted"], smooth["observed"].clip(0, 1), color=PALETTE[0], label="LOWESS")
        ax.errorbar(binned["predicted"], binned["observed"],
                    yerr=[binned["observed"] - binned["observed_lo"], binned["observed_hi"] - binned["observed"]],
                    fmt="o", color=PALETTE[1], ms=4, capsize=2, lw=1, label="binned (Wilson 95% CI)")
        row = summary[(summary["cohort"] == cohort) & summary["final_system"]]
        if len(row):
            ax.text(0.03, 0.97, _summary_text(row.iloc[0]), transform=ax.transAxes, va="top", ha="left", fontsize=7)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal", adjustable="box")
        ax.set_ylabel(f"Observed fraction {positive}")
        group = final_cases[final_cases["cohort"] == cohort]
        ax.set_title(f"{cohort} cohort ({EVALUATED_MODEL[cohort]}), {int(group['label'].sum())} + "
                     f"{int((1 - group['label']).sum())} cases")
        if column == 0:
            ax.legend(loc="lower right", frameon=False)
        for label, color in ((0, PALETTE[2]), (1, PALETTE[3])):
            values = group.loc[group["label"] == label, score_col]
            rug.hist(values, bins=np.linspace(0, 1, 21), color=color, alpha=0.6,
                     label=positive if label else f"not {positive}")
        rug.set_xlabel("Predicted probability (case mean)")
        rug.set_ylabel("Cases")
        rug.legend(loc="upper center", frameon=False, ncol=2, fontsize=6)
    fig.suptitle(f"Calibration of the final system ({backbone}, {ALL_INPUT} input, case level)")
    fig.tight_layout()
    return fig


def decision_curve_figure(curve: pd.DataFrame, backbone: str, inputs, backbones=()):
    """The final backbone's inputs; with one sequence (its input and ALL are the same
    predictions) every model's ALL input instead, e.g. a volume study's input modes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.5, COLUMN_WIDTH * 1.1))
    one_sequence = _draw_decision_curves(ax, curve, backbone, inputs, backbones)
    ax.set_title(f"Decision curves, {ALL_INPUT} input, external cohort" if one_sequence and backbones
                 else f"Decision curves, {backbone}, external cohort")
    ax.legend(loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


def _draw_decision_curves(ax, curve: pd.DataFrame, backbone: str, inputs, backbones=()) -> bool:
    """Net benefit of the final backbone's inputs (one sequence: every model's ALL input),
    treat all and treat none on ``ax``; True when the study has one sequence."""
    one_sequence = len([i for i in inputs if i != ALL_INPUT]) <= 1
    if one_sequence and backbones:
        names = [f"{name}/{ALL_INPUT}" for name in backbones]
    else:
        names = [f"{backbone}/{input_}" for input_ in inputs]
    names = [name for name in names if name in set(curve["model"])]
    palette = colors(names)
    prevalence = float(curve["prevalence"].iloc[0]) if len(curve) else 0.5
    for name in names:
        rows = curve[curve["model"] == name]
        final = name == f"{backbone}/{ALL_INPUT}"
        label = name.split("/", 1)[0 if one_sequence and backbones else 1]
        ax.plot(rows["threshold"], rows["net_benefit"], color=palette[name], lw=2.0 if final else 1.0,
                label=label + (" (final system)" if final else ""), zorder=3 if final else 2)
    for strategy, style in ((TREAT_ALL, dict(color="0.4", ls="--")), (TREAT_NONE, dict(color="0.2", ls="-", lw=0.8))):
        rows = curve[curve["model"] == strategy]
        ax.plot(rows["threshold"], rows["net_benefit"], label=strategy, **style)
    ax.set_ylim(-0.05, max(prevalence, 0.05) * 1.15)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit")
    return one_sequence


def main_stage(config, case_prediction_paths, table3_path, out_summary, out_curve, out_decision_curve,
               calibration_stem, decision_curve_stem) -> dict:
    task = BinaryTask.from_config(config)
    settings, evaluation = config["calibration"], config["evaluation"]
    predictions = read_parquets(case_prediction_paths)
    backbones = model_names(config)  # the backbones, or a volume study's models (2.5d_resnet10t)
    backbone = choose_final_backbone(pd.read_csv(table3_path), config)
    score_col = task.positive_column
    summary = calibration_table(predictions, backbones, score_col, backbone, int(evaluation["bootstrap_replicates"]),
                                int(evaluation["seed"]), evaluation["ci_level"])
    final_cases = evaluated_cases(predictions, backbone)
    final_cases = final_cases[final_cases.groupby("cohort")["label"].transform("nunique") == 2]
    curves = curve_table(final_cases, score_col, settings, evaluation["ci_level"])
    curve = decision_curve_table(predictions, backbones, score_col, settings)
    write_csv(summary, out_summary)
    write_csv(curves, out_curve)
    write_csv(curve, out_decision_curve)
    written = save_figure(calibration_figure(final_cases, curves, summary, score_col, backbone, task.positive_class),
                          Path(calibration_stem))
    inputs = list(dict.fromkeys(predictions["input"]))
    written += save_figure(decision_curve_figure(curve, backbone, inputs, backbones), Path(decision_curve_stem))
    for row in summary[summary["final_system"]].itertuples():
        log.info("calibration of the final system, %s cohort: intercept %.2f, slope %.2f, Brier %.3f",
                 row.cohort, row.intercept, row.slope, row.brier)
    return {"summary": summary, "curves": curves, "decision_curve": curve, "figures": written}


# --- N-class studies ------------------------------------------------------------------

ALL_CLASSES = "all"
MULTICLASS_SUMMARY_COLUMNS = ["test_set", "backbone", "input", "class", *SUMMARY_KEYS]
def decision_thresholds(settings) -> np.ndarray:
    """The decision curves' threshold grid: 0.01 to calibration.dca_max_threshold in steps
    of calibration.dca_step (rounded, so that grid values print as set)."""
    return np.round(np.arange(0.01, settings["dca_max_threshold"] + 1e-9, settings["dca_step"]), 6)


MULTICLASS_CURVE_COLUMNS = ["test_set", "class", "bin", "lower", "upper", "n", "n_positive", "predicted", "observed",
                            "observed_lo", "observed_hi"]


def one_vs_rest_classes(task) -> list[str]:
    """The classes whose one-vs-rest calibration and (by default) decision curves are
    reported: every class, or of two classes (a :class:`~spinedx.task.BinaryTask`) the
    positive one: the other's curves mirror it, and the multi-class Brier score would be
    twice its Brier score."""
    return [task.positive_class] if isinstance(task, BinaryTask) else list(task.classes)


def multiclass_calibration_table(scored: pd.DataFrame, task, backbone: str, n_boot: int, seed: int,
                                 level: float, unit: str = "case") -> pd.DataFrame:
    """``unit``: ``case`` (one row per patient) or ``image`` (rows are images; the bootstrap
    still draws patients, with all their images). Two classes: the positive class's rows
    only (:func:`one_vs_rest_classes`), no multi-class Brier row."""
    reported = one_vs_rest_classes(task)
    rows = []
    interval = (f"patient bootstrap (percentile, {n_boot} replicates"
                + (", a patient's images drawn together)" if unit == "image" else ")"))
    for name, group in evaluated_sets(scored):
        labels, patients = group["label"].to_numpy(dtype=int), group["patient_id"].to_numpy()
        probs = task.probabilities(group)
        if not isinstance(task, BinaryTask):
            brier = multiclass_brier(labels, probs, patients, n_boot=n_boot, seed=seed, level=level)
            rows.append({"test_set": name, "backbone": backbone, "input": ALL_INPUT, "class": ALL_CLASSES,
                         "n": brier["n"], "brier": brier["brier"], "brier_lo": brier["brier_lo"],
                         "brier_hi": brier["brier_hi"], "interval": interval})
        for k, class_name in enumerate(task.classes):
            if class_name not in reported:
                continue
            outcome = (labels == k).astype(int)
            if outcome.min() == outcome.max():
                continue  # the class absent (or alone): intercept, slope and scaled Brier undefined
            summary = calibration_summary(outcome, probs[:, k], patients, n_boot=n_boot, seed=seed, level=level)
            rows.append({"test_set": name, "backbone": backbone, "input": ALL_INPUT, "class": class_name,
                         **{key: summary[key] for key in SUMMARY_KEYS},
                         **({"interval": interval} if unit == "image" and n_boot > 0 else {})})
    return pd.DataFrame(rows, columns=MULTICLASS_SUMMARY_COLUMNS)


def multiclass_curve_table(name: str, group: pd.DataFrame, task, settings: dict, level: float) -> pd.DataFrame:
    parts = []
    labels, probs = group["label"].to_numpy(dtype=int), task.probabilities(group)
    for k, class_name in enumerate(task.classes):
        if class_name not in one_vs_rest_classes(task):
            continue
        outcome = (labels == k).astype(int)
        binned = reliability_curve(outcome, probs[:, k], n_bins=min(int(settings["n_bins"]), len(group)),
                                   strategy=settings["strategy"], level=level)
        parts.append(binned.rename(columns={"mean_predicted": "predicted"}).assign(test_set=name, **{"class": class_name}))
    return pd.concat(parts, ignore_index=True).reindex(columns=MULTICLASS_CURVE_COLUMNS)


def multiclass_calibration_figure(curves: pd.DataFrame, summary: pd.DataFrame, classes, backbone: str, name: str,
                                  unit: str = "case"):
    plt = pyplot()
    columns = min(len(classes), 3)
    rows = int(np.ceil(len(classes) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH, 2.3 * rows + 0.4), squeeze=False)
    for index, class_name in enumerate(classes):
        ax = axes[index // columns][index % columns]
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
        binned = curves[curves["class"] == class_name]
        ax.errorbar(binned["predicted"], binned["observed"],
                    yerr=[binned["observed"] - binned["observed_lo"], binned["observed_hi"] - binned["observed"]],
                    fmt="o-", color=PALETTE[index % len(PALETTE)], ms=3.5, capsize=2, lw=1)
        row = summary[(summary["test_set"] == name) & (summary["class"] == class_name)]
        if len(row):
            ax.text(0.03, 0.97, f"Brier {row['brier'].iloc[0]:.3f}", transform=ax.transAxes, va="top", fontsize=7)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(f"{class_name} vs rest")
        ax.set_xlabel("Predicted probability")
        ax.set_ylabel("Observed fraction")
    for index in range(len(classes), rows * columns):
        axes[index // columns][index % columns].axis("off")
    overall = summary[(summary["test_set"] == name) & (summary["class"] == ALL_CLASSES)]
    brier = f", multi-class Brier {overall['brier'].iloc[0]:.3f}" if len(overall) else ""
    fig.suptitle(f"One-vs-rest calibration of the final system ({backbone}, {ALL_INPUT}, {unit} level, {name}{brier})")
    fig.tight_layout()
    return fig


MULTICLASS_DECISION_CURVE_COLUMNS = ["test_set", "class", *DECISION_CURVE_COLUMNS]


def multiclass_decision_curve_table(predictions: pd.DataFrame, backbones, task, dca_classes, test_set: str,
                                    settings: dict, unit: str = "case") -> pd.DataFrame:
    """One-vs-rest net benefit per class of ``dca_classes`` (empty: every class) on
    ``test_set`` (an :func:`spinedx.final_system.evaluated_sets` name), on the units every
    model scored there. ``unit`` ``case``: every backbone x input of the case-level
    ``predictions``, one row per patient. ``image`` (labels of images; ``predictions`` the
    ensembling stage's rows): every backbone's ALL input, one row per image (each scored by
    its own sequence's model); a sequence's or plane's models score other images than one
    another, so their curves would not share the treat-all line and are not drawn."""
    scored = []
    if unit == "image":
        key = "image_id"
        for backbone in backbones:
            rows = dict(evaluated_sets(scoring_image_predictions(predictions, backbone))).get(test_set)
            if rows is not None:
                scored.append(rows.assign(_model=f"{backbone}/{ALL_INPUT}"))
    else:
        key = "patient_id"
        for backbone in backbones:
            for input_ in distinct_inputs(predictions["input"]):
                rows = dict(evaluated_sets(scoring_predictions(predictions, backbone, input_))).get(test_set)
                if rows is not None:
                    scored.append(rows.assign(_model=f"{backbone}/{input_}"))
    if not scored:
        return pd.DataFrame(columns=MULTICLASS_DECISION_CURVE_COLUMNS)
    scored = pd.concat(scored, ignore_index=True)
    thresholds = decision_thresholds(settings)
    parts = []
    for class_name in dca_classes or one_vs_rest_classes(task):
        column = task.probability_columns[list(task.classes).index(class_name)]
        wide = scored.pivot_table(index=[key, "label"], columns="_model", values=column).dropna()
        models = {name: wide[name].to_numpy() for name in dict.fromkeys(scored["_model"])}
        is_class = (wide.index.get_level_values("label").to_numpy() == list(task.classes).index(class_name))
        parts.append(decision_curve(is_class.astype(int), models, thresholds).assign(
            test_set=test_set, **{"class": class_name}))
    return pd.concat(parts, ignore_index=True)[MULTICLASS_DECISION_CURVE_COLUMNS]


def multiclass_decision_curve_figure(curve: pd.DataFrame, backbone: str, inputs, backbones, test_set: str,
                                     unit: str = "case"):
    plt = pyplot()
    classes = list(dict.fromkeys(curve["class"]))
    columns = min(len(classes), 3)
    rows = int(np.ceil(len(classes) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH if columns > 1 else COLUMN_WIDTH * 1.5,
                                                     2.6 * rows + 0.4), squeeze=False)
    for index, class_name in enumerate(classes):
        ax = axes[index // columns][index % columns]
        _draw_decision_curves(ax, curve[curve["class"] == class_name], backbone, inputs, backbones)
        ax.set_title(f"{class_name} vs rest")
    for index in range(len(classes), rows * columns):
        axes[index // columns][index % columns].axis("off")
    # One legend for all panels, where it hides no curve: in a spare panel, else below them.
    handles, labels = axes[0][0].get_legend_handles_labels()
    spare = len(classes) < rows * columns
    if spare:
        axes[-1][-1].legend(handles, labels, loc="center", frameon=False)
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    fig.suptitle(f"One-vs-rest decision curves{' per image' if unit == 'image' else ''}, {backbone}, {test_set}")
    fig.tight_layout(rect=(0, 0 if spare else 0.1, 1, 1))
    return fig


def multiclass_main_stage(config, case_prediction_paths, overall_path, out_summary, out_curve,
                          calibration_stem, out_decision_curve=None, decision_curve_stem=None,
                          image_prediction_paths=()) -> dict:
    """``image_prediction_paths`` (the ensembling stage's tables) instead of
    ``case_prediction_paths`` where labels belong to images (calibration and decision
    curves on images)."""
    task = task_from_config(config)
    settings, evaluation = config["calibration"], config["evaluation"]
    predictions = read_parquets(image_prediction_paths or case_prediction_paths)
    backbone, scored, unit, pooled = multiclass_final_system(
        pd.read_csv(overall_path), config, case_predictions=None if image_prediction_paths else predictions,
        image_predictions=predictions if image_prediction_paths else None)
    summary = multiclass_calibration_table(scored, task, backbone, int(evaluation["bootstrap_replicates"]),
                                           int(evaluation["seed"]), evaluation["ci_level"], unit=unit)
    sets = dict(evaluated_sets(scored))
    name = pooled if pooled in sets else next(iter(sets))
    curves = multiclass_curve_table(name, sets[name], task, settings, evaluation["ci_level"])
    write_csv(summary, out_summary)
    write_csv(curves, out_curve)
    written = save_figure(multiclass_calibration_figure(curves, summary, one_vs_rest_classes(task), backbone, name,
                                                        unit),
                          Path(calibration_stem))
    # the multi-class Brier score; two classes: the positive class's
    shown = task.positive_class if isinstance(task, BinaryTask) else ALL_CLASSES
    for test_set, brier, lo, hi in summary.loc[summary["class"] == shown,
                                               ["test_set", "brier", "brier_lo", "brier_hi"]].itertuples(index=False):
        log.info("calibration of the final system, %s: %s Brier %.3f (%.3f to %.3f)", test_set,
                 "multi-class" if shown == ALL_CLASSES else shown, brier, lo, hi)
    result = {"summary": summary, "curves": curves, "figures": written}
    if out_decision_curve:
        backbones = model_names(config)
        curve = multiclass_decision_curve_table(predictions, backbones, task, settings["dca_classes"], name, settings,
                                                unit=unit)
        write_csv(curve, out_decision_curve)
        # images: only the ALL input is drawn (each backbone's; see multiclass_decision_curve_table)
        inputs = [ALL_INPUT] if unit == "image" else list(dict.fromkeys(predictions["input"]))
        written += save_figure(multiclass_decision_curve_figure(curve, backbone, inputs, backbones, name, unit),
                               Path(decision_curve_stem))
        log.info("one-vs-rest decision curves (%s level) of %d class(es) on %s -> %s", unit,
                 curve["class"].nunique(), name, out_decision_curve)
        result["decision_curve"] = curve
    return result
