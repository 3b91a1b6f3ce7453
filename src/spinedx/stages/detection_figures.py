"""Detection figures stage: the FROC with the readers, examples of hits, misses and false
positives, training curves, and the cohort table, from the pipeline's own outputs.

- ``fig_detection_froc``: one panel per cohort (internal out-of-fold, external fold
  ensemble), one FROC curve per model x input (false positives per case on a log axis,
  1/8 to 8 as in the CPM), the operating point marked; each reader as a point with the
  bootstrap intervals of their sensitivity and false positives per case, on the
  readers' cohort (curves, points and intervals all come from the evaluation tables).
- ``fig_detection_examples_<model>_<input>``: external cases; rows = found lesions
  (hits), missed lesions and false-positive candidates at the operating threshold, a
  few each (hits: spread over lesion sizes; misses: the largest; false positives: the
  highest-scoring); each shows the axial slice through the lesion or candidate in every
  sequence of the study, the probability map over it (transparent below 0.1) and the
  lesion's outline, cropped to 50 mm around it.
- ``detection_training_curves_<model>_<input>``: training loss and the validation
  detection metric per epoch of every fold, the selected epoch marked.
- ``detection_cohort`` table: patients, patients with lesions, lesions, lesions per
  size band and lesion diameters per cohort.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.detection_task import LESIONS_NAME, DetectionTask
from spinedx.errors import InputError
from spinedx.imaging.detection_cache import read_maps
from spinedx.io import write_csv
from spinedx.plotting import HEATMAP_CMAP, PAGE_WIDTH, PALETTE, colors, pyplot, save_figure
from spinedx.readers.detection_cases import path_column, read_cases_table
from spinedx.readers.volume import read_mask, read_volume

log = logging.getLogger(__name__)

COHORT_TITLES = {"internal": "Internal cross-validation (out-of-fold)", "external": "External cohort (fold ensemble)"}
FROC_X_LIMITS = (1 / 16, 16.0)
EXAMPLE_HALF_WIDTH_MM = 25.0
MAP_FLOOR = 0.1  # map values below this are not drawn over the image
GROUPS = (("hit", "Found lesions"), ("miss", "Missed lesions"), ("false_positive", "False positives"))


# --- FROC ---------------------------------------------------------------------------------------


def _log_x(values) -> np.ndarray:
    """False positives per case on the log axis: 0 drawn at the axis' left end."""
    return np.maximum(np.asarray(values, dtype=float), FROC_X_LIMITS[0])


def froc_figure(froc: pd.DataFrame, summary: pd.DataFrame, readers: pd.DataFrame, pairs, stem) -> None:
    plt = pyplot()
    cohorts = [c for c in COHORT_TITLES if c in set(froc["cohort"])]
    fig, axes = plt.subplots(1, len(cohorts), figsize=(PAGE_WIDTH, 3.3), squeeze=False, sharey=True)
    palette = colors([f"{m} / {i}" for m, i in pairs])
    for ax, cohort in zip(axes[0], cohorts):
        for model, input_ in pairs:
            label = f"{model} / {input_}"
            curve = froc[(froc["model"] == model) & (froc["input"] == input_) & (froc["cohort"] == cohort)]
            curve = curve.sort_values(["fp_per_case", "sensitivity"])
            row = summary[(summary["model"] == model) & (summary["input"] == input_) & (summary["cohort"] == cohort)]
            if row.empty:
                continue
            row = row.iloc[0]
            ax.plot(_log_x(curve["fp_per_case"]), curve["sensitivity"], drawstyle="steps-post", color=palette[label],
                    label=f"{label}: CPM {row['cpm']:.2f}, {row['lesion_sensitivity']:.2f} at {row['fp_per_case']:.2f}")
            ax.plot(_log_x([row["fp_per_case"]]), [row["lesion_sensitivity"]], "o", color=palette[label], ms=5,
                    mec="white", mew=0.8, zorder=4)
        shown = readers[readers["cohort"] == cohort].drop_duplicates("reader") if not readers.empty else readers
        for k, reader in enumerate(shown.itertuples()):
            x, y = _log_x([reader.reader_fp_per_case])[0], reader.reader_sensitivity
            xerr = [[x - _log_x([reader.reader_fp_per_case_lo])[0]], [_log_x([reader.reader_fp_per_case_hi])[0] - x]]
            yerr = [[y - reader.reader_sensitivity_lo], [reader.reader_sensitivity_hi - y]]
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="s", ms=4, color="0.25", mfc="white", elinewidth=0.7,
                        capsize=1.5, zorder=5, label="readers (95% CI)" if k == 0 else None)
            ax.annotate(reader.reader, (x, y), textcoords="offset points", xytext=(4, -8), fontsize=6, color="0.25")
        ax.set_xscale("log", base=2)
        ax.set_xlim(*FROC_X_LIMITS)
        ax.set_xticks([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8], ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("False positives per case")
        ax.set_title(COHORT_TITLES[cohort])
        ax.legend(loc="lower right", frameon=False)
    axes[0][0].set_ylabel("Lesion sensitivity")
    fig.tight_layout()
    save_figure(fig, stem)


# --- examples -----------------------------------------------------------------------------------


def _pick(rows: pd.DataFrame, n: int, group: str) -> pd.DataFrame:
    if rows.empty:
        return rows
    if group == "hit":  # spread over sizes: evenly spaced ranks by diameter
        rows = rows.sort_values(["equivalent_diameter_mm", "case_id", "lesion"]).reset_index(drop=True)
        index = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
        return rows.iloc[index]
    if group == "miss":
        return rows.sort_values(["equivalent_diameter_mm", "case_id", "lesion"], ascending=[False, True, True]).head(n)
    return rows.sort_values(["score", "case_id", "candidate"], ascending=[False, True, True]).head(n)


def example_rows(candidates, lesions, lesion_table, threshold: float, n: int) -> dict[str, pd.DataFrame]:
    """The external examples of each group: (case, centre voxel (z, y, x), label, text)."""
    external = candidates[candidates["cohort"] == "external"]
    hits = lesions[(lesions["cohort"] == "external") & (lesions["detected_by_score"] > threshold)]
    misses = lesions[(lesions["cohort"] == "external") & ~(lesions["detected_by_score"] > threshold)]
    false = external[(external["outcome"] == "false_positive") & (external["score"] > threshold)]
    out = {}
    for group, rows in (("hit", hits), ("miss", misses), ("false_positive", false)):
        picked = _pick(rows, n, group)
        items = []
        for row in picked.to_dict("records"):
            if group == "false_positive":
                centre = (row["centre_z"], row["centre_y"], row["centre_x"])
                text = f"{row['case_id']}  score {row['score']:.2f}, {row['candidate_diameter_mm']:.1f} mm"
                label = None
            else:
                where = lesion_table[(lesion_table["patient_id"] == row["case_id"]) & (lesion_table["lesion"] == row["lesion"])]
                label = int(row["label"])
                centre = None if where.empty else tuple(where.iloc[0][["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]])
                score = "" if math.isnan(row["detected_by_score"]) else f", score {row['detected_by_score']:.2f}"
                text = f"{row['case_id']}  {row['equivalent_diameter_mm']:.1f} mm{score}"
            items.append({"case_id": row["case_id"], "centre": centre, "label": label, "text": text,
                          "world": group != "false_positive"})
        out[group] = pd.DataFrame(items)
    return out


def examples_figure(groups: dict, cases: pd.DataFrame, maps, sequences, max_voxels: int, stem, title: str) -> None:
    plt = pyplot()
    n = max([len(g) for g in groups.values()] + [1])
    columns = n * len(sequences)
    fig, axes = plt.subplots(len(GROUPS), columns, figsize=(PAGE_WIDTH, 1.25 * len(GROUPS) + 0.5),
                             squeeze=False)
    by_id = cases.set_index("patient_id")
    for r, (group, group_title) in enumerate(GROUPS):
        rows = groups[group]
        for c in range(n):
            for s, sequence in enumerate(sequences):
                ax = axes[r][c * len(sequences) + s]
                ax.set_axis_off()
                if c >= len(rows):
                    if c == 0 and s == 0:
                        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="0.4")
                    continue
                item = rows.iloc[c]
                case = by_id.loc[item["case_id"]]
                image = read_volume(case[path_column(sequence)], max_voxels=max_voxels)
                labels = read_mask(case[path_column(LESIONS_NAME)], max_voxels=max_voxels)
                centre = image.world_to_voxel(np.asarray(item["centre"], float)) if item["world"] else np.asarray(item["centre"], float)
                k, j, i = (int(np.clip(round(v), 0, n_ - 1)) for v, n_ in zip(centre, image.shape))
                half = [int(round(EXAMPLE_HALF_WIDTH_MM / sp)) for sp in image.spacing[1:]]
                rows_, cols_ = (slice(max(j - half[0], 0), j + half[0] + 1), slice(max(i - half[1], 0), i + half[1] + 1))
                view = image.array[k][rows_, cols_]
                low, high = np.percentile(image.array[k], [1, 99.5])
                aspect = image.spacing[1] / image.spacing[2]
                ax.imshow(view, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
                probability = np.ma.masked_less(maps[item["case_id"]][k][rows_, cols_].astype(float), MAP_FLOOR)
                ax.imshow(probability, cmap=HEATMAP_CMAP, vmin=0, vmax=1, alpha=0.55, aspect=aspect,
                          interpolation="nearest")
                outline = labels.array[k][rows_, cols_] > 0 if item["label"] is None else \
                    labels.array[k][rows_, cols_] == item["label"]
                if outline.any():
                    ax.contour(outline.astype(float), levels=[0.5], colors=[PALETTE[2]], linewidths=0.8)
                if s == 0:
                    ax.set_title(item["text"], fontsize=6, loc="left")
                if r == 0:
                    ax.text(0.02, 0.02, sequence, transform=ax.transAxes, fontsize=6, color="white", va="bottom")
        axes[r][0].text(-0.08, 0.5, group_title, transform=axes[r][0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, stem)


# --- training curves, cohort table ------------------------------------------------------------------


def curves_figure(histories: list[pd.DataFrame], metric: str, stem, title: str) -> None:
    plt = pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 2.4))
    for k, history in enumerate(histories):
        color = PALETTE[k % len(PALETTE)]
        loss_ax.plot(history["epoch"], history["train_loss"], color=color, label=f"fold {k}")
        validated = history.dropna(subset=["val_metric"])
        metric_ax.plot(validated["epoch"], validated["val_metric"], "o-", ms=2.5, color=color, label=f"fold {k}")
        chosen = history[history["selected"]]
        metric_ax.plot(chosen["epoch"], chosen["val_metric"], "*", ms=9, color=color, mec="black", mew=0.5)
    loss_ax.set_xlabel("Epoch")
    loss_ax.set_ylabel("Training loss")
    metric_ax.set_xlabel("Epoch")
    metric_ax.set_ylabel(f"Validation {metric} (★ selected)")
    metric_ax.set_ylim(-0.02, 1.02)
    loss_ax.legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, stem)


def cohort_table(cases: pd.DataFrame, lesions: pd.DataFrame, edges) -> pd.DataFrame:
    rows = []
    for cohort in ("internal", "external", "all"):
        in_cohort = cases if cohort == "all" else cases[cases["cohort"] == cohort]
        if in_cohort.empty:
            continue
        sizes = lesions[lesions["patient_id"].isin(in_cohort["patient_id"])]["equivalent_diameter_mm"]
        row = {"cohort": cohort, "patients": len(in_cohort), "patients_with_lesions": int(in_cohort["has_lesions"].sum()),
               "lesions": len(sizes)}
        for low, high in zip(edges[:-1], edges[1:]):
            row[f"lesions_{low:g}_to_{high:g}_mm"] = int(((sizes >= low) & (sizes < high)).sum())
        row["diameter_median_mm"] = float(sizes.median()) if len(sizes) else math.nan
        row["diameter_min_mm"] = float(sizes.min()) if len(sizes) else math.nan
        row["diameter_max_mm"] = float(sizes.max()) if len(sizes) else math.nan
        if "age" in in_cohort:
            row["age_median"] = float(pd.to_numeric(in_cohort["age"], errors="coerce").median())
        if "sex" in in_cohort:
            row["female"] = int((in_cohort["sex"].astype(str).str.upper() == "F").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def main_stage(config, cases_path, lesions_path, tables_dir, candidate_paths, lesion_paths, map_paths, histories,
               figures_dir, cohort_out) -> None:
    task = DetectionTask.from_config(config)
    detection = config["detection"]
    cases = read_cases_table(cases_path)
    lesion_table = pd.read_parquet(lesions_path)
    tables = Path(tables_dir)
    summary = pd.read_csv(tables / paths.table_file(paths.DETECTION_SUMMARY))
    froc = pd.read_csv(tables / paths.table_file(paths.DETECTION_FROC))
    readers = pd.read_csv(tables / paths.table_file(paths.DETECTION_READERS))
    operating = pd.read_csv(tables / paths.table_file(paths.DETECTION_OPERATING_POINTS)).set_index(["model", "input"])
    figures = Path(figures_dir)
    froc_figure(froc, summary, readers, task.pairs, figures / paths.DETECTION_FROC_FIGURE)
    for (model, input_), candidates_path, lesions_hits, maps_path in zip(task.pairs, candidate_paths, lesion_paths,
                                                                        map_paths):
        threshold = float(operating.loc[(model, input_), "threshold"])
        groups = example_rows(pd.read_parquet(candidates_path), pd.read_parquet(lesions_hits), lesion_table, threshold,
                              config["detection_evaluation"]["examples_per_group"])
        _, maps = read_maps(maps_path)
        examples_figure(groups, cases, maps, task.sequences, config["data"]["max_volume_voxels"],
                        figures / paths.detection_examples_figure(model, input_),
                        f"{model} / {input_}: external cases at threshold {threshold:.3g}")
    # histories: every fold of the first model x input, then of the next (none in audit mode)
    n_folds = config["splits"]["n_folds"]
    if histories and len(histories) != len(task.pairs) * n_folds:
        raise InputError(f"{len(histories)} training histories for {len(task.pairs)} model x input pairs of "
                         f"{n_folds} folds; pass every fold's {paths.HISTORY_FILE}, pair by pair")
    for index, (model, input_) in enumerate(task.pairs if histories else []):
        items = [pd.read_csv(path, sep="\t") for path in histories[index * n_folds:(index + 1) * n_folds]]
        curves_figure(items, detection["selection"]["metric"], figures / paths.detection_curves_figure(model, input_),
                      f"{model} / {input_}")
    write_csv(cohort_table(cases, lesion_table, config["detection_evaluation"]["size_bands_mm"]), cohort_out)
    log.info("detection figures -> %s", figures)
