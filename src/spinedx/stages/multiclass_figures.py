"""Multiclass figures stage: the N-class study's figures from its own tables and
predictions (no model runs here; numbers come from the multiclass_evaluation tables, so
figures and tables cannot disagree).

All figures show the final system: backbone ``figures.final_backbone`` (null: the best
macro-AUC of the ALL input on the main external set: the pooled external cohorts, or the
one external cohort), the ALL input, at case level (labels from the cases table) or image
level (labels from the annotation), on each test set: the internal one (k-fold: the
out-of-fold predictions; hold-out: the first repeat's internal test set, or its
validation set when the study has no internal test set), each external cohort and, with
several, the pooled ones.

- fig_multiclass_roc: one panel per class, its one-vs-rest ROC curve on each test set,
  AUC with its interval in the legend.
- fig_multiclass_confusion: the N x N confusion matrix of each test set (row % shaded,
  counts and row % written).
- fig_multiclass_f1: per-class F1 with intervals, forest style, one marker per test set,
  and the macro-F1.
- fig_fusion_comparison (with clinical fusion): accuracy, macro-F1 and macro-AUC with
  intervals of the unfused ALL input, image only, clinical only and image + clinical.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.aggregation import ALL_INPUT, ENSEMBLE, OUT_OF_FOLD, PREDICTION_SET
from spinedx.errors import InputError
from spinedx.input_modes import model_names
from spinedx.io import read_parquets
from spinedx.plotting import PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.stats.fusion import FUSION_INPUTS

log = logging.getLogger(__name__)

ROC_AXIS_X = "1 − specificity (false-positive rate)"
#: Display names of prediction sets that are not cohort names.
SET_NAMES = {OUT_OF_FOLD: "internal CV (out-of-fold)", "validation": "validation", "internal_test": "internal test",
             "external_pooled": "external, pooled"}
FUSION_NAMES = {ALL_INPUT: "image, unfused (ALL)", "fusion_image": "image only (stacked)",
                "fusion_clinical": "clinical only", "fusion_image+clinical": "image + clinical"}


def figure_level(config) -> str:
    return "case" if config["labels"]["source"] == "cases" else "image"


def test_sets(overall: pd.DataFrame, backbone: str, level: str) -> list[tuple[str, str]]:
    """(prediction set, model) shown in the figures, in order: one internal set, the
    external cohorts, the pooled ones."""
    rows = overall[(overall["backbone"] == backbone) & (overall["level"] == level) & (overall["input"] == ALL_INPUT)]
    keys = list(dict.fromkeys(zip(rows[PREDICTION_SET], rows["model"])))
    internal = [k for k in keys if k[0] == OUT_OF_FOLD] or [k for k in keys if k[0] == "internal_test"][:1] \
        or [k for k in keys if k[0] == "validation"][:1]
    return internal + [k for k in keys if k[1] == ENSEMBLE]


def set_label(prediction_set: str, model: str) -> str:
    name = SET_NAMES.get(prediction_set, prediction_set)
    return f"{name} ({model})" if prediction_set in ("validation", "internal_test") else name


def choose_backbone(overall: pd.DataFrame, config, level: str) -> str:
    """figures.final_backbone, or the best macro-AUC of the ALL input on the main external
    set (ties: the first model in the config's order)."""
    if config["figures"]["final_backbone"]:
        return config["figures"]["final_backbone"]
    rows = overall[(overall["level"] == level) & (overall["input"] == ALL_INPUT) & (overall["model"] == ENSEMBLE)]
    main = "external_pooled" if (rows[PREDICTION_SET] == "external_pooled").any() else None
    if main is not None:
        rows = rows[rows[PREDICTION_SET] == main]
    # the backbones, or a volume study's models (2.5d_resnet10t; the rule passes VOLUME_SECTIONS)
    models = model_names(config)
    ranked = [(rows.loc[rows["backbone"] == b, "macro_auc"].mean(), -i, b) for i, b in enumerate(models)]
    ranked = [r for r in ranked if np.isfinite(r[0])]
    return max(ranked)[2] if ranked else models[0]


def _roc_points(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    if len(np.unique(truth)) < 2:
        return np.array([np.nan]), np.array([np.nan])
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return fpr, tpr


def _selection(predictions: pd.DataFrame, backbone: str, prediction_set: str, model: str) -> pd.DataFrame:
    rows = predictions[(predictions["backbone"] == backbone) & (predictions["model"] == model)]
    if prediction_set == "external_pooled":
        return rows[rows["cohort"] != "internal"]
    return rows[rows[PREDICTION_SET] == prediction_set]


def _grid(plt, n: int, width: float = PAGE_WIDTH, columns: int = 3, height: float = 2.45):
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width, height * rows + 0.7), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def roc_figure(predictions: pd.DataFrame, per_class: pd.DataFrame, classes, backbone: str, level: str,
               sets: list[tuple[str, str]]):
    """One-vs-rest ROC of every class on every test set; each panel lists its AUCs
    (95% interval) below it, one colour per test set (legend at the bottom)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    columns = min(3, len(classes))
    rows_n = int(np.ceil(len(classes) / columns))
    fig, grid = plt.subplots(rows_n, columns, figsize=(PAGE_WIDTH, (2.35 + 0.14 * len(sets)) * rows_n + 0.6),
                             squeeze=False, layout="constrained")
    axes = list(grid.flat)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    table = per_class[(per_class["backbone"] == backbone) & (per_class["level"] == level)
                      & (per_class["input"] == ALL_INPUT)]
    for k, (ax, name) in enumerate(zip(axes, classes)):
        handles = []
        for colour, (prediction_set, model) in zip(PALETTE, sets):
            rows = _selection(predictions, backbone, prediction_set, model)
            fpr, tpr = _roc_points(rows["label"].to_numpy() == k, rows[f"prob_{name}"].to_numpy(dtype=float))
            ax.plot(fpr, tpr, color=colour, drawstyle="steps-post", lw=1.2)
            metric = table[(table[PREDICTION_SET] == prediction_set) & (table["model"] == model)
                           & (table["class"] == name)]
            auc = metric.iloc[0] if len(metric) else None
            text = "AUC n/a" if auc is None or not np.isfinite(auc["auc"]) else (
                f"AUC {auc['auc']:.2f}" + (f" ({auc['auc_lo']:.2f}–{auc['auc_hi']:.2f})"
                                          if np.isfinite(auc["auc_lo"]) else ""))
            handles.append(Line2D([], [], color=colour, lw=1.6, label=text))
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", zorder=0)
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
        ax.set_title(f"{name} vs rest", fontsize=8)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.set_xlabel("1 − specificity", fontsize=7)
        ax.set_ylabel("Sensitivity", fontsize=7)
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=6, frameon=False,
                  handlelength=1.2, borderaxespad=0)
    legend = [Line2D([], [], color=colour, lw=1.6, label=set_label(*key)) for colour, key in zip(PALETTE, sets)]
    fig.legend(handles=legend, loc="outside lower center", ncol=min(len(legend), 4), frameon=False, fontsize=7)
    fig.suptitle(f"One-vs-rest ROC per class: {backbone}, ALL sequences, {level} level")
    return fig


def confusion_figure(confusion: pd.DataFrame, classes, backbone: str, level: str, sets: list[tuple[str, str]]):
    """The N x N confusion matrix of each test set: rows true class, columns decided class."""
    plt = pyplot()
    n = len(classes)
    columns = min(len(sets), 2 if n > 4 else 3)
    side = PAGE_WIDTH / columns
    fig, axes = _grid(plt, len(sets), columns=columns, height=side * 0.95)
    table = confusion[(confusion["backbone"] == backbone) & (confusion["level"] == level)
                      & (confusion["input"] == ALL_INPUT)]
    for ax, (prediction_set, model) in zip(axes, sets):
        rows = table[(table[PREDICTION_SET] == prediction_set) & (table["model"] == model)]
        counts = rows.pivot(index="truth", columns="decision", values="count").reindex(index=classes, columns=classes)
        shares = rows.pivot(index="truth", columns="decision", values="row_percent").reindex(
            index=classes, columns=classes).to_numpy(dtype=float)
        ax.imshow(np.nan_to_num(shares) / 100, cmap="Blues", vmin=0, vmax=1)
        ax.grid(False)
        size = 6 if n <= 5 else 5
        for i in range(n):
            for j in range(n):
                share, count = shares[i, j], int(counts.iloc[i, j])
                text = f"{count}" + (f"\n{share:.0f}%" if np.isfinite(share) and count else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if np.isfinite(share) and share > 60 else "black")
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(n), classes, fontsize=6)
        ax.set_xlabel("Decided class", fontsize=7)
        ax.set_ylabel("True class", fontsize=7)
        total = int(rows["count"].sum())
        ax.set_title(f"{set_label(prediction_set, model)}, n = {total}", fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(f"Confusion matrices (% of the true class): {backbone}, ALL sequences, {level} level")
    fig.tight_layout()
    return fig


def f1_figure(per_class: pd.DataFrame, overall: pd.DataFrame, classes, backbone: str, level: str,
              sets: list[tuple[str, str]]):
    """Per-class F1 (and macro-F1) with intervals, forest style."""
    plt = pyplot()
    labels = [*classes, "macro-F1"]
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH * 0.75, 0.42 * len(labels) * max(1, len(sets) / 3) + 1.2))
    step = 0.8 / max(len(sets), 1)
    def select(table, prediction_set, model):
        return table[(table["backbone"] == backbone) & (table["level"] == level) & (table["input"] == ALL_INPUT)
                     & (table[PREDICTION_SET] == prediction_set) & (table["model"] == model)]

    for s, (colour, (prediction_set, model)) in enumerate(zip(PALETTE, sets)):
        rows = select(per_class, prediction_set, model).set_index("class").reindex(classes)
        total = select(overall, prediction_set, model)
        points = np.r_[rows["f1"].to_numpy(float), total["macro_f1"].to_numpy(float)[:1]]
        lows = np.r_[rows["f1_lo"].to_numpy(float), total["macro_f1_lo"].to_numpy(float)[:1]]
        highs = np.r_[rows["f1_hi"].to_numpy(float), total["macro_f1_hi"].to_numpy(float)[:1]]
        y = np.arange(len(labels)) - 0.4 + step * (s + 0.5)
        ax.errorbar(points, y[:len(points)], xerr=[np.clip(points - lows, 0, None), np.clip(highs - points, 0, None)],
                    fmt="o", color=colour, ms=3.5, lw=1, capsize=2, label=set_label(prediction_set, model))
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.axhline(len(classes) - 0.5, color="0.7", lw=0.6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("F1 (95% interval: patient-level bootstrap)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(len(sets), 3), frameon=False)
    ax.set_title(f"F1 per class: {backbone}, ALL sequences, {level} level")
    fig.tight_layout()
    return fig


def fusion_figure(comparison: pd.DataFrame, backbone: str, n_classes: int):
    """Accuracy, macro-F1 and macro-AUC of the fusion inputs side by side, per test set;
    dotted: chance (accuracy 1/N of uniform guessing, AUC 0.5)."""
    plt = pyplot()
    rows = comparison[comparison["backbone"] == backbone]
    sets = list(dict.fromkeys(zip(rows[PREDICTION_SET], rows["model"])))
    inputs = [name for name in FUSION_NAMES if name in set(rows["input"])]
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH, 0.5 * len(sets) * len(inputs) / 2.5 + 1.6), sharey=True)
    step = 0.8 / len(inputs)
    for ax, (metric, title) in zip(axes, (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"),
                                          ("macro_auc", "Macro-AUC"))):
        for i, (colour, name) in enumerate(zip(PALETTE, inputs)):
            for s, (prediction_set, model) in enumerate(sets):
                row = rows[(rows[PREDICTION_SET] == prediction_set) & (rows["model"] == model) & (rows["input"] == name)]
                if row.empty:
                    continue
                row = row.iloc[0]
                y = s - 0.4 + step * (i + 0.5)
                low, high = row[f"{metric}_lo"], row[f"{metric}_hi"]
                error = None if not np.isfinite(low) else [[max(row[metric] - low, 0)], [max(high - row[metric], 0)]]
                ax.errorbar([row[metric]], [y], xerr=error, fmt="o", color=colour, ms=3.5, lw=1, capsize=2,
                            label=FUSION_NAMES[name] if s == 0 else None)
        chance = {"accuracy": 1 / n_classes, "macro_auc": 0.5}.get(metric)
        if chance is not None:
            ax.axvline(chance, color="0.5", lw=0.8, ls=":", zorder=0)
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(title)
        ax.set_yticks(range(len(sets)), [set_label(*k) for k in sets])
    axes[0].invert_yaxis()  # shared: the first test set on top in every panel
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(inputs), frameon=False)
    fig.suptitle(f"Clinical fusion: {backbone}, case level (95% intervals; dotted: chance)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def main_stage(config, tables_dir, image_prediction_paths, case_prediction_paths, out_dir,
               fusion: bool = False) -> list[Path]:
    """The workflow stage: the N-class figures (PDF + PNG) into ``out_dir``; ``fusion``:
    also the fusion comparison (the fusion stage ran)."""
    tables_dir, out_dir = Path(tables_dir), Path(out_dir)

    def table(name):
        try:
            return pd.read_csv(tables_dir / paths.table_file(name))
        except OSError as error:
            raise InputError(f"{tables_dir / paths.table_file(name)}: cannot read ({error}); rerun "
                             "multiclass_evaluation") from error

    classes = list(config["classes"])
    level = figure_level(config)
    per_class, overall = table(paths.MULTICLASS_PER_CLASS), table(paths.MULTICLASS_OVERALL)
    backbone = choose_backbone(overall, config, level)
    sets = test_sets(overall, backbone, level)
    predictions = read_parquets(case_prediction_paths if level == "case" else image_prediction_paths)
    if level == "case":
        predictions = predictions[predictions["input"] == ALL_INPUT]
    written = save_figure(roc_figure(predictions, per_class, classes, backbone, level, sets),
                          out_dir / paths.MULTICLASS_ROC_FIGURE)
    written += save_figure(confusion_figure(table(paths.MULTICLASS_CONFUSION), classes, backbone, level, sets),
                           out_dir / paths.MULTICLASS_CONFUSION_FIGURE)
    written += save_figure(f1_figure(per_class, overall, classes, backbone, level, sets),
                           out_dir / paths.MULTICLASS_F1_FIGURE)
    if fusion:
        written += save_figure(fusion_figure(table(paths.FUSION_COMPARISON), backbone, len(classes)),
                               out_dir / paths.FUSION_FIGURE)
    log.info("N-class figures of %s (%s level, %d test sets): %d files", backbone, level, len(sets), len(written))
    return written
