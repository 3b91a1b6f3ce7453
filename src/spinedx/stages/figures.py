"""Figures stage: the study's figures and table 1 from the pipeline's own outputs.

Nothing here runs a model: the ROC curves come from the ensembling and case_level
predictions, AUCs, intervals and counts from the evaluation tables (so figures and tables
can never disagree), training curves from each fold's history.tsv, table 1 from the cases
table and the image table.

- fig3_roc_backbones: external images, 5-fold ensemble, one panel per sequence, one ROC
  per backbone, AUC (95% CI) in the legend (the study's backbone comparison).
- fig6_final_system: the final system (figures.final_backbone, ALL input, case level,
  external cohort): ROC with AUC and its interval, operating point, confusion matrix with
  counts and row percentages.
- training_curves_<backbone>_<sequence>: loss and accuracy per epoch of every fold,
  training and validation, the selected epoch marked.
- table1_cohort.csv: patients, images per sequence, age and sex per cohort and class
  (every external cohort of ``data.external_cohorts`` in its own rows).

The positive class's probability column (ROC curves) and the class names come from the
task (:mod:`spinedx.task`). Figures 3 and 6 are binary by nature: a study with more
classes gets its figures from the multiclass_figures stage instead (this stage then
draws the training curves and table 1 only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from spinedx import paths
from spinedx.aggregation import ALL_INPUT
from spinedx.errors import InputError
from spinedx.final_system import choose_final_backbone  # noqa: F401  (figures.choose_final_backbone)
from spinedx.input_modes import model_names
from spinedx.io import read_parquets, write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, colors, pyplot, save_figure
from spinedx.plotting import roc_axis as _roc_axis, roc_points  # noqa: F401  (figures.roc_points)
from spinedx.readers.cases import read_cases
from spinedx.task import BinaryTask

log = logging.getLogger(__name__)

def _metric_row(table: pd.DataFrame, backbone: str, input_: str, source: str) -> pd.Series:
    rows = table[(table["backbone"] == backbone) & (table["input"] == input_)]
    if len(rows) != 1:
        raise InputError(f"{source}: expected one row for backbone {backbone}, input {input_}, "
                         f"found {len(rows)}; rerun evaluation")
    return rows.iloc[0]


def _auc_label(row: pd.Series) -> str:
    if not np.isfinite(row["auc"]):
        return "AUC n/a"
    interval = f" ({row['auc_lo']:.2f}–{row['auc_hi']:.2f})" if np.isfinite(row["auc_lo"]) else ""
    return f"AUC {row['auc']:.3f}{interval}"


def fig3_roc_backbones(image_predictions: pd.DataFrame, table2: pd.DataFrame, config,
                       source: str = paths.table_file(paths.TABLE2_IMAGE_LEVEL), score_col: str = "prob"):
    """One panel per sequence, one ROC per backbone (external images, ensemble);
    ``score_col``: the positive class's probability."""
    plt = pyplot()
    task = BinaryTask.from_config(config, decisions=False)
    sequences, backbones = list(config["sequences"]), model_names(config)
    palette = colors(backbones)
    selected = image_predictions[(image_predictions["cohort"] != "internal")
                                 & (image_predictions["model"] == "ensemble")]
    fig, axes = plt.subplots(1, len(sequences), figsize=(PAGE_WIDTH, PAGE_WIDTH / len(sequences) + 0.6 + 0.3 * len(backbones)),
                             squeeze=False)
    for ax, sequence in zip(axes[0], sequences):
        for backbone in backbones:
            rows = selected[(selected["backbone"] == backbone) & (selected["sequence"] == sequence)]
            fpr, tpr = roc_points(rows["label"], rows[score_col])
            row = _metric_row(table2, backbone, sequence, source)
            ax.plot(fpr, tpr, color=palette[backbone], drawstyle="steps-post",
                    label=f"{backbone}\n{_auc_label(row)}")
        _roc_axis(ax, task.positive_class)
        n_images = selected[selected["sequence"] == sequence].drop_duplicates("image_id")
        ax.set_title(f"{sequence} ({len(n_images)} external images)")
        # Below the panel, never over a curve (with several backbones they cross everywhere).
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, handlelength=1.2)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
    fig.tight_layout()
    return fig


def fig6_final_system(case_predictions: pd.DataFrame, table3: pd.DataFrame, backbone: str, config,
                      source: str = paths.table_file(paths.TABLE3_CASE_LEVEL), score_col: str = "prob"):
    """ROC (AUC and interval, operating point) and confusion matrix of the final system;
    ``score_col``: the positive class's probability."""
    plt = pyplot()
    task = BinaryTask.from_config(config)
    classes = task.classes
    row = _metric_row(table3, backbone, ALL_INPUT, source)
    cases = case_predictions[(case_predictions["backbone"] == backbone) & (case_predictions["input"] == ALL_INPUT)
                             & (case_predictions["model"] == "ensemble") & (case_predictions["cohort"] != "internal")]
    fig, (roc_ax, cm_ax) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 3.7),
                                        gridspec_kw={"width_ratios": [1, 1.05]})
    fpr, tpr = roc_points(cases["label"], cases[score_col])
    roc_ax.plot(fpr, tpr, color=PALETTE[0], drawstyle="steps-post", label=_auc_label(row))
    roc_ax.plot(1 - row["specificity"], row["sensitivity"], "o", color=PALETTE[3], ms=6,
                label=f"threshold {task.threshold:g}: "
                      f"Se {row['sensitivity']:.2f}, Sp {row['specificity']:.2f}")
    _roc_axis(roc_ax, task.positive_class)
    roc_ax.set_title(f"ROC, {int(row['n_pos'])} + {int(row['n_neg'])} external cases")
    roc_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)

    counts = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=float)  # rows: true class
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    cm_ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    cm_ax.grid(False)
    for i in range(2):
        for j in range(2):
            cm_ax.text(j, i, f"{int(counts[i, j])}\n({100 * shares[i, j]:.1f}%)", ha="center", va="center",
                       fontsize=9, color="white" if shares[i, j] > 0.6 else "black")
    cm_ax.set_xticks([0, 1], [f"{c}" for c in classes])
    cm_ax.set_yticks([0, 1], [f"{c}" for c in classes], rotation=90, va="center")
    cm_ax.set_xlabel("Predicted (case mean probability > threshold)")
    cm_ax.set_ylabel("True (histopathology)")
    cm_ax.set_title(f"Confusion matrix (% of true class), κ = {row['kappa']:.2f}")
    for spine in cm_ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(f"Final system: {backbone}, ALL sequences, case level, "
                 f"{config['splits']['n_folds']}-fold ensemble")
    fig.tight_layout()
    return fig


def read_histories(history_paths) -> pd.DataFrame:
    """Every fold's history.tsv with its job (backbone, sequence, fold) from the config.yaml beside it."""
    tables = []
    for path in map(Path, history_paths):
        job_file = path.with_name(paths.JOB_CONFIG_FILE)
        try:
            job = yaml.safe_load(job_file.read_text())["job"]
            history = pd.read_csv(path, sep="\t")
        except (OSError, KeyError, TypeError, yaml.YAMLError, pd.errors.ParserError) as error:
            raise InputError(f"{path}: cannot read the training history or {job_file.name} ({error}); "
                             "rerun training") from error
        tables.append(history.assign(backbone=job["backbone"], sequence=job["sequence"], fold=int(job["fold"])))
    return pd.concat(tables, ignore_index=True)


def training_curves(histories: pd.DataFrame, backbone: str, sequence: str, model_prefix: str = "fold"):
    """Loss and accuracy per epoch, every fold (colour), training dashed, validation solid;
    ``model_prefix``: what a model is called (fold, or holdout for hold-out repeats)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    rows = histories[(histories["backbone"] == backbone) & (histories["sequence"] == sequence)]
    folds = sorted(rows["fold"].unique())
    palette = colors(folds)
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 2.7))
    for ax, measure, label in ((axes[0], "loss", "Cross-entropy loss"), (axes[1], "accuracy", "Accuracy")):
        for fold in folds:
            history = rows[rows["fold"] == fold].sort_values("epoch")
            ax.plot(history["epoch"], history[f"train_{measure}"], color=palette[fold], ls="--", lw=1)
            ax.plot(history["epoch"], history[f"val_{measure}"], color=palette[fold], lw=1.4)
            chosen = history[history["selected"].astype(bool)]
            ax.plot(chosen["epoch"], chosen[f"val_{measure}"], "*", color=palette[fold], ms=9, mec="k", mew=0.5)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(label)
        if measure == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=palette[f], lw=1.4, label=f"{model_prefix} {f}") for f in folds] + [
        Line2D([], [], color="0.3", lw=1.4, label="validation"),
        Line2D([], [], color="0.3", lw=1, ls="--", label="training"),
        Line2D([], [], color="0.3", marker="*", ls="", ms=9, mec="k", mew=0.5,
               label="selected epoch (best val. accuracy)")]
    fig.suptitle(f"Training curves: {backbone}, {sequence}")
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False)
    fig.tight_layout(rect=(0, 0.14 if len(handles) <= 5 else 0.2, 1, 1))
    return fig


def cohort_table(cases: pd.DataFrame, images: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Table 1: patients, images per sequence, age (mean ± SD) and sex per cohort x class
    (class: the cases table's diagnosis)."""
    classes, sequences = list(config["classes"]), list(config["sequences"])
    external = [c for c in config["data"]["external_cohorts"] if c in set(cases["cohort"])] or ["external"]
    rows = []
    for cohort in ("internal", *external, "all"):
        for diagnosis in [*classes, "all"]:
            chosen = cases
            if cohort != "all":
                chosen = chosen[chosen["cohort"] == cohort]
            if diagnosis != "all":
                chosen = chosen[chosen["diagnosis"] == diagnosis]
            ids = set(chosen["patient_id"])
            their_images = images[images["patient_id"].isin(ids)]
            row = {"cohort": cohort, "diagnosis": diagnosis, "patients": len(ids)}
            for sequence in sequences:
                row[f"images_{sequence}"] = int((their_images["sequence"] == sequence).sum())
            row["images_total"] = len(their_images)
            age = pd.to_numeric(chosen["age"], errors="coerce") if "age" in chosen else pd.Series(dtype=float)
            row["age_mean"] = float(age.mean()) if age.notna().any() else np.nan
            row["age_sd"] = float(age.std()) if age.notna().sum() > 1 else np.nan
            row["age"] = (f"{row['age_mean']:.0f} ± {row['age_sd']:.0f}" if np.isfinite(row["age_sd"])
                          else "n/a")
            sex = chosen["sex"].astype(str).str.strip().str.upper().str[:1] if "sex" in chosen else pd.Series(dtype=str)
            row["male"], row["female"] = int((sex == "M").sum()), int((sex == "F").sum())
            row["sex_unknown"] = len(chosen) - row["male"] - row["female"]
            row["male:female"] = f"{row['male']}:{row['female']}"
            rows.append(row)
    return pd.DataFrame(rows)


def main_stage(image_prediction_paths, case_prediction_paths, table2_path, table3_path, history_paths,
               cases_path, images_path, config, out_dir, table1_path) -> list[Path]:
    """The workflow stage: fig3, fig6, training curves (PDF + PNG) and the cohort table."""
    out_dir = Path(out_dir)
    written, backbone = [], None
    if len(config["classes"]) == 2:  # figures 3 and 6 are binary by nature
        score_col = BinaryTask.from_config(config).positive_column
        table2, table3 = pd.read_csv(table2_path), pd.read_csv(table3_path)
        written += save_figure(fig3_roc_backbones(read_parquets(image_prediction_paths), table2, config,
                                                  str(table2_path), score_col), out_dir / paths.ROC_BACKBONES_FIGURE)
        backbone = choose_final_backbone(table3, config)
        written += save_figure(fig6_final_system(read_parquets(case_prediction_paths), table3, backbone, config,
                                                 str(table3_path), score_col), out_dir / paths.FINAL_SYSTEM_FIGURE)
    if history_paths:  # none in audit mode: the released models were trained elsewhere
        histories = read_histories(history_paths)
        prefix = paths.MODEL_PREFIX[config["splits"]["scheme"]]
        for backbone_name in model_names(config):
            for sequence in config["sequences"]:
                written += save_figure(training_curves(histories, backbone_name, sequence, prefix),
                                       out_dir / paths.training_curves_figure(backbone_name, sequence))
    cases = read_cases(cases_path, config["classes"], all_external=bool(config["audit"]["bundle"]),
                       external_cohorts=None)
    written.append(write_csv(cohort_table(cases, pd.read_parquet(images_path), config),
                             table1_path))
    log.info("figures: final system %s; %d files written", backbone, len(written))
    return written
