"""Grad-CAM stage (figure 7): where the fold models of one backbone x sequence look.

Every external image gets one heat map: Grad-CAM (pytorch-grad-cam) of each fold model
for the class the 5-fold ensemble predicted for the case, each map scaled to [0, 1] by
the package, then averaged over the fold models (:mod:`spinedx.models.gradcam`). The map
is computed on the model's input (the cached crop) and mapped back onto the uncropped
original slice through the crop window (:mod:`spinedx.imaging.slice_view`); outside the
window (what the model never saw) it is 0.

This stage decides which class each case's map explains (the task's decision: the
threshold on the positive class, or with more classes the class of highest probability),
writes a table of every external image (peak position, whether the peak lies inside the
labelme box, the chance level of that), and draws figure 7: a selection of cases per
(true class x correct/incorrect), the map over the slice with the box drawn. Where labels
belong to images (config ``labels.source`` annotation) the decision is the image's own
(each image is a case of its own class); an image without a lesion has no box, so its
box columns are empty. ``case_prob`` is the positive class's probability (two classes) or
the decided class's probability (more classes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.aggregation import aggregate
from spinedx.errors import InputError
from spinedx.imaging.cache import align, read_cache
from spinedx.imaging.gray import to_grayscale_uint8
from spinedx.imaging.slice_view import to_original, view_window
from spinedx.io import write_csv
from spinedx.models.checkpoints import load_checkpoint
from spinedx.models.device import set_up
from spinedx.models.gradcam import fold_mean_cams
from spinedx.plotting import HEATMAP_CMAP, PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.readers import open_image
from spinedx.task import BinaryTask, Task, task_from_config

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["image_id", "patient_id", "sequence", "label", "case_prob", "predicted",
                   "correct", "target_class", "peak_x", "peak_y", "peak_in_box",
                   "box_fraction_of_image", "box_fraction_of_view", "cam_mass_in_box"]


def peak_statistics(full_cam: np.ndarray, row, settings: dict) -> dict:
    """Peak position, whether it lies in the labelme box, and the chance levels of that.

    A flat map (e.g. a 1 x 1 feature map of a tiny input) has no peak: position and
    ``peak_in_box`` are then missing rather than the first pixel. An image without a
    lesion box (image-level labels) has a peak but no box: the box columns are missing.
    """
    if not np.isfinite([row.x0, row.y0, row.x1, row.y1]).all():
        flat = float(full_cam.max() - full_cam.min()) < 1e-6
        peak_y, peak_x = np.unravel_index(int(np.argmax(full_cam)), full_cam.shape)
        return {"peak_x": pd.NA if flat else int(peak_x), "peak_y": pd.NA if flat else int(peak_y),
                "peak_in_box": pd.NA, "box_fraction_of_image": float("nan"),
                "box_fraction_of_view": float("nan"), "cam_mass_in_box": float("nan")}
    if float(full_cam.max() - full_cam.min()) < 1e-6:
        peak = {"peak_x": pd.NA, "peak_y": pd.NA, "peak_in_box": pd.NA}
    else:
        peak_y, peak_x = np.unravel_index(int(np.argmax(full_cam)), full_cam.shape)
        # Pixel (x, y) covers [x, x + 1): its centre is inside the box when x0 <= x + 0.5 <= x1.
        peak = {"peak_x": int(peak_x), "peak_y": int(peak_y),
                "peak_in_box": bool(row.x0 <= peak_x + 0.5 <= row.x1 and row.y0 <= peak_y + 0.5 <= row.y1)}
    box_area = (row.x1 - row.x0) * (row.y1 - row.y0)
    x0, y0, x1, y1 = view_window(row, settings)
    view_area = (min(x1, row.width) - max(x0, 0)) * (min(y1, row.height) - max(y0, 0))
    ys, xs = np.mgrid[0:full_cam.shape[0], 0:full_cam.shape[1]] + 0.5
    in_box = (xs >= row.x0) & (xs <= row.x1) & (ys >= row.y0) & (ys <= row.y1)
    mass = float(full_cam.sum())
    return {**peak, "box_fraction_of_image": float(box_area / (row.width * row.height)),
            "box_fraction_of_view": float(min(box_area / view_area, 1.0)),
            "cam_mass_in_box": float(full_cam[in_box].sum() / mass) if mass > 0 else float("nan")}


def _decision_probability(task: Task, rows: pd.DataFrame) -> np.ndarray:
    """Two classes: the positive class's probability (as the binary tables); more: the
    decided class's."""
    if isinstance(task, BinaryTask):
        return rows[task.positive_column].to_numpy(dtype=float)
    return task.decision_probability(rows)


def case_decisions(image_predictions: pd.DataFrame, sequence: str, task: Task) -> pd.DataFrame:
    """External cases' ensemble probability (binary: of the positive class) for this
    sequence and the task's decision.

    From this sequence's ensembling output through the case level's own aggregation
    (:func:`spinedx.aggregation.aggregate`), so that a change in another sequence does not
    rerun this job.
    """
    case_predictions = aggregate(image_predictions, task.probability_columns)
    cases = case_predictions[(case_predictions["input"] == sequence) & (case_predictions["model"] == "ensemble")
                             & (case_predictions["cohort"] != "internal")]
    predicted = task.decide(cases)
    probability = _decision_probability(task, cases)
    cases = cases[["patient_id", "label"]].assign(case_prob=probability)
    return cases.assign(predicted=predicted, correct=predicted == cases["label"])


def image_decisions(image_predictions: pd.DataFrame, task: Task) -> pd.DataFrame:
    """External images' own ensemble decisions (labels that belong to images)."""
    rows = image_predictions[(image_predictions["model"] == "ensemble") & (image_predictions["cohort"] != "internal")]
    predicted = task.decide(rows)
    return rows[["image_id", "label"]].assign(case_prob=_decision_probability(task, rows), predicted=predicted,
                                               correct=predicted == rows["label"].to_numpy())


def compute(checkpoint_paths, cache_path, images_path, ensemble_predictions_path, config: dict,
            images_dir) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Fold-mean Grad-CAM of every external image on its original slice, and the summary table."""
    images = pd.read_parquet(images_path)
    external = images[images["cohort"] != "internal"].sort_values("image_id").reset_index(drop=True)
    if external.empty:
        raise InputError(f"{images_path}: no external images; Grad-CAM needs the external cohort "
                         "(or set gradcam.enabled: false)")
    sequence = str(external["sequence"].iloc[0])
    task = task_from_config(config)
    predictions = pd.read_parquet(ensemble_predictions_path)
    if config["labels"]["source"] == "annotation":  # each image is decided on its own
        decisions = image_decisions(predictions, task)
        external = external.merge(decisions.drop(columns="label"), on="image_id", how="left", validate="one_to_one")
    else:
        cases = case_decisions(predictions, sequence, task)
        external = external.merge(cases.drop(columns="label"), on="patient_id", how="left", validate="many_to_one")
    if external["case_prob"].isna().any():
        missing = external.loc[external["case_prob"].isna(), "patient_id"].unique()[:5].tolist()
        raise InputError(f"{ensemble_predictions_path}: no {sequence} ensemble prediction for external "
                         f"patients {missing}; rerun ensembling")
    # The jobs' one set-up; Grad-CAM needs gradients of exact activations from eager
    # modules: fp32 (pytorch-grad-cam runs the model itself, outside autocast) and no
    # torch.compile (its hooks need the uncompiled modules). Layout and backend switches
    # (channels_last, cuDNN autotuning, TF32) apply as configured.
    device, acceleration = set_up(config["training"], precision="fp32", compile=False)
    checkpoints = [load_checkpoint(path) for path in checkpoint_paths]
    cams = fold_mean_cams(checkpoints, align(read_cache(cache_path), external, cache_path),
                          external["predicted"].to_numpy(), device, config["inference"]["batch_size"],
                          config["gradcam"]["target_layers"], acceleration)
    settings = config["preprocessing"]
    full_maps, rows = {}, []
    for cam, row in zip(cams, external.itertuples(index=False)):
        full = to_original(cam, row, settings)
        full_maps[row.image_id] = full
        rows.append({"image_id": row.image_id, "patient_id": row.patient_id, "sequence": row.sequence,
                     "label": int(row.label), "case_prob": float(row.case_prob),
                     "predicted": int(row.predicted), "correct": bool(row.correct),
                     "target_class": task.classes[int(row.predicted)],
                     **peak_statistics(full, row, settings)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(
        {"peak_x": "Int64", "peak_y": "Int64", "peak_in_box": "boolean"})
    return summary, full_maps


def select_cases(summary: pd.DataFrame, per_group: int, task: Task, unit: str = "patient_id") -> pd.DataFrame:
    """Per (true class, correct) group, the cases the ensemble was most sure of (right or
    wrong: binary, the case probability farthest from the decision threshold; more
    classes, the highest probability of the decided class), one image each: the case's
    first image by id (``unit`` image_id: every image is a case). The choice never looks
    at the CAM, so the figure cannot pick flattering maps."""
    confidence = task.confidence if isinstance(task, BinaryTask) else (lambda p: np.asarray(p, dtype=float))
    cases = summary.drop_duplicates(unit).assign(confidence=lambda t: confidence(t["case_prob"]))
    chosen = (cases.sort_values(["label", "correct", "confidence", "patient_id"], ascending=[True, False, False, True])
              .groupby(["label", "correct"], sort=False).head(per_group))
    return chosen.drop(columns="confidence")


def _bare(ax) -> None:
    ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_case(ax, slice_, cam, meta, settings, zoom: bool):
    """The slice, the map over what the model saw, the labelme box; ``zoom``: the crop
    window and a quarter of its size around it."""
    import matplotlib.patches as patches

    ax.imshow(slice_, cmap="gray", interpolation="nearest")
    x0, y0, x1, y1 = view_window(meta, settings)
    outside = np.ones(cam.shape, bool)
    outside[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = False
    mappable = ax.imshow(np.ma.masked_array(cam, outside), cmap=HEATMAP_CMAP, vmin=0, vmax=1,
                         alpha=0.5, interpolation="bilinear")
    if np.isfinite([meta["x0"], meta["y0"], meta["x1"], meta["y1"]]).all():  # no box: no lesion
        ax.add_patch(patches.Rectangle((meta["x0"], meta["y0"]), meta["x1"] - meta["x0"], meta["y1"] - meta["y0"],
                                       fill=False, edgecolor=PALETTE[5], lw=1.0, ls="--"))
    if zoom:
        pad = 0.25 * max(x1 - x0, y1 - y0)
        ax.set_xlim(x0 - pad, x1 + pad)
        ax.set_ylim(y1 + pad, y0 - pad)
    _bare(ax)
    return mappable


def figure(summary: pd.DataFrame, maps: dict, images: pd.DataFrame, images_dir, config: dict,
           title: str):
    """Figure 7: columns = (true class x correct/incorrect); per case the whole slice
    (where the lesion sits) above a zoom on the region the model saw."""
    plt = pyplot()
    task = task_from_config(config)
    classes = task.classes
    per_group = config["gradcam"]["cases_per_group"]
    unit = "image_id" if config["labels"]["source"] == "annotation" else "patient_id"
    chosen = select_cases(summary, per_group, task, unit)
    if len(classes) > 2:
        return _figure_by_class(plt, chosen, maps, images, images_dir, config, task, title)
    groups = [(label, correct) for label in range(len(classes)) for correct in (True, False)]
    by_id = images.set_index("image_id")
    fig, axes = plt.subplots(2 * per_group, len(groups), figsize=(PAGE_WIDTH, 3.9 * per_group + 0.6),
                             squeeze=False, gridspec_kw={"height_ratios": [1.4, 1] * per_group},
                             layout="constrained")
    mappable = None
    for column, (label, correct) in enumerate(groups):
        picked = chosen[(chosen["label"] == label) & (chosen["correct"] == correct)]
        heading = f"{classes[label]}, {'correct' if correct else 'incorrect'}"
        for row_index in range(per_group):
            slice_ax, zoom_ax = axes[2 * row_index, column], axes[2 * row_index + 1, column]
            _bare(slice_ax), _bare(zoom_ax)
            if row_index >= len(picked):
                if row_index == 0:
                    slice_ax.text(0.5, 0.5, "no such case", ha="center", va="center",
                                  transform=slice_ax.transAxes, color="0.4")
                    slice_ax.set_title(heading.replace(", ", "\n"))
                continue
            case = picked.iloc[row_index]
            meta = by_id.loc[case["image_id"]]
            slice_ = to_grayscale_uint8(open_image(Path(images_dir) / meta["image_path"],
                                                   config["data"]["max_image_pixels"]))
            cam = maps[case["image_id"]]
            for ax, zoom in ((slice_ax, False), (zoom_ax, True)):
                mappable = _draw_case(ax, slice_, cam, meta, config["preprocessing"], zoom)
            if row_index == 0:
                slice_ax.set_title(heading.replace(", ", "\n"))
            zoom_ax.set_xlabel(f"{case['patient_id']}\np({task.positive_class}) = {case['case_prob']:.2f}", fontsize=7)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes, shrink=0.6)
        bar.set_label("Grad-CAM, mean of the fold models (0–1)")
    fig.suptitle(title)
    return fig


def _figure_by_class(plt, chosen, maps, images, images_dir, config, task: Task, title: str):
    """Figure 7 with more than two classes: one column per true class, the correct case
    above the incorrect one (the first case of each group; each the whole slice, and with
    box crops a zoom on the crop), so that N classes fit a page width."""
    classes = task.classes
    by_id = images.set_index("image_id")
    zoom = config["preprocessing"]["crop"] == "box"  # whole-image inputs: the slice is the view
    rows_per_case = 2 if zoom else 1
    ratios = [1.4, 1] if zoom else [1]
    fig, axes = plt.subplots(2 * rows_per_case, len(classes), figsize=(PAGE_WIDTH, 2.8 * rows_per_case + 0.6),
                             squeeze=False, gridspec_kw={"height_ratios": ratios * 2}, layout="constrained")
    mappable = None
    for column, name in enumerate(classes):
        for block, correct in enumerate((True, False)):
            case_axes = [axes[rows_per_case * block + k, column] for k in range(rows_per_case)]
            for ax in case_axes:
                _bare(ax)
            case_axes[0].set_title(f"{name}\n{'correct' if correct else 'incorrect'}", fontsize=7)
            picked = chosen[(chosen["label"] == column) & (chosen["correct"] == correct)]
            if picked.empty:
                case_axes[0].text(0.5, 0.5, "no such case", ha="center", va="center",
                                  transform=case_axes[0].transAxes, color="0.4", fontsize=7)
                continue
            case = picked.iloc[0]
            meta = by_id.loc[case["image_id"]]
            slice_ = to_grayscale_uint8(open_image(Path(images_dir) / meta["image_path"],
                                                   config["data"]["max_image_pixels"]))
            for ax, zoomed in zip(case_axes, (False, True)):
                mappable = _draw_case(ax, slice_, maps[case["image_id"]], meta, config["preprocessing"], zoomed)
            decided = classes[int(case["predicted"])]
            case_axes[-1].set_xlabel(f"{case['patient_id']}\n→ {decided} ({case['case_prob']:.2f})", fontsize=6)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes, shrink=0.6)
        bar.set_label("Grad-CAM, mean of the models (0–1)")
    fig.suptitle(title)
    return fig


def peak_in_box_line(summary: pd.DataFrame) -> str:
    """How often the peak lies in the box, against the chance levels (for titles and logs)."""
    defined = summary["peak_in_box"].dropna()
    if defined.empty:
        return f"flat maps for all {len(summary)} external images (feature map too small for the input size)"
    return (f"peak in box {defined.mean():.0%} of {len(defined)} external images (chance: "
            f"{summary['box_fraction_of_view'].mean():.0%} of the crop, "
            f"{summary['box_fraction_of_image'].mean():.1%} of the slice)")


def main_stage(checkpoint_paths, cache_path, images_path, ensemble_predictions_path, config: dict,
               images_dir, out_table, figure_stem, backbone: str) -> pd.DataFrame:
    """The workflow stage: summary CSV of every external image + figure 7 (PDF and PNG)."""
    summary, maps = compute(checkpoint_paths, cache_path, images_path, ensemble_predictions_path, config, images_dir)
    write_csv(summary, out_table)
    sequence = summary["sequence"].iloc[0]
    fig = figure(summary, maps, pd.read_parquet(images_path), images_dir, config,
                 f"{backbone}, {sequence}\n{peak_in_box_line(summary)}")
    save_figure(fig, figure_stem)
    log.info("Grad-CAM %s %s: %s", backbone, sequence, peak_in_box_line(summary))
    return summary
