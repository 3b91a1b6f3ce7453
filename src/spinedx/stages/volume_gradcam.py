"""Grad-CAM stage of a volume study (figure 7): where one model's fold models look.

As for labelme studies (:mod:`spinedx.stages.gradcam`): every external crop gets the
fold models' mean Grad-CAM (pytorch-grad-cam, each map scaled to [0, 1]) for the class
the ensemble decided for the case. Modes 2d and 2.5d: the map of each slice image on the
timm backbone's last feature map (:func:`spinedx.models.gradcam.find_target_layer`);
mode 3d: a 3-D map on the MONAI network's last 3-D feature map
(:func:`spinedx.models.volumetric.gradcam_layer`), upsampled to the sub-volume by the
package. Maps go back into the resampled volume through the crop's window
(:meth:`spinedx.imaging.crops.CropWindow.paste`).

The table has one row per external crop: the map's peak (voxel on the resampled grid),
whether it lies in the lesion's box, the box's share of the crop (the chance level of
that) and the map's mass inside the box. The figure shows, per (true class x
correct/incorrect), the case the ensemble was surest of, on the slice through the centre
of the lesion's box in the configured plane (for 2d/2.5d the map of that slice's image,
for 3d that slice of the 3-D map), the lesion's box drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinedx.aggregation import aggregate
from spinedx.errors import InputError
from spinedx.imaging.cache import align
from spinedx.imaging.crops import PLANES, CropWindow
from spinedx.imaging.volume_cache import read_volume_cache
from spinedx.imaging.volume_inputs import prepare_case
from spinedx.io import write_csv
from spinedx.models import volumetric
from spinedx.models.checkpoints import load_checkpoint, model_from_checkpoint
from spinedx.models.device import set_up
from spinedx.models.gradcam import find_target_layer, grad_cams
from spinedx.plotting import HEATMAP_CMAP, PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.readers.volume_tree import read_case
from spinedx.task import BinaryTask

log = logging.getLogger(__name__)

AXES = ("z", "y", "x")
SUMMARY_COLUMNS = ["image_id", "patient_id", "sequence", "mode", "slice", "label", "case_prob", "predicted",
                   "correct", "target_class", "peak_z", "peak_y", "peak_x", "peak_in_box",
                   "box_fraction_of_view", "cam_mass_in_box"]


def window_of(row) -> CropWindow:
    start = tuple(int(getattr(row, f"window_{a}0")) for a in AXES)
    stop = tuple(int(getattr(row, f"window_{a}1")) for a in AXES)
    return CropWindow(row.mode, row.plane or None, start, tuple(b - a for a, b in zip(start, stop)))


def grid_box(row) -> tuple[slice, slice, slice]:
    return tuple(slice(int(getattr(row, f"grid_box_{a}0")), int(getattr(row, f"grid_box_{a}1"))) for a in AXES)


def fold_mean_cams(checkpoint_paths, crops: np.ndarray, targets: np.ndarray, config, device, acceleration,
                   target_layers: dict) -> np.ndarray:
    """Mean over the fold models of each crop's Grad-CAM (spatial shape of the crop)."""
    total = np.zeros((len(crops), *crops.shape[2:]), dtype=np.float64)
    for path in checkpoint_paths:
        checkpoint = load_checkpoint(path)
        model = acceleration.prepare(model_from_checkpoint(checkpoint, device))
        override = target_layers.get(checkpoint["backbone"]) or target_layers.get(checkpoint["network"])
        if checkpoint["mode"] == "3d":
            layer = model.get_submodule(override) if override else volumetric.gradcam_layer(model, crops.shape[1:])[0]
        else:
            layer, _ = find_target_layer(model, crops.shape[-2], crops.shape[1], override)

        def to_input(batch: np.ndarray, checkpoint=checkpoint) -> torch.Tensor:
            inputs = volumetric.normalise(torch.from_numpy(batch).to(device), checkpoint["mean"], checkpoint["std"])
            return acceleration.layout(inputs)

        total += grad_cams(model, layer, crops, targets, to_input, config["inference"]["batch_size"],
                           f"{checkpoint['backbone']} fold {checkpoint['fold']}")
        del model
    return total / max(len(checkpoint_paths), 1)


def case_decisions(predictions: pd.DataFrame, sequence: str, task: BinaryTask) -> pd.DataFrame:
    """External cases' ensemble probability and decision for this sequence (the case
    level's own aggregation of this model's crops)."""
    cases = aggregate(predictions, task.probability_columns)
    cases = cases[(cases["input"] == sequence) & (cases["model"] == "ensemble") & (cases["cohort"] == "external")]
    predicted = task.decide(cases)
    cases = cases[["patient_id", "label", task.positive_column]].rename(columns={task.positive_column: "case_prob"})
    return cases.assign(predicted=predicted, correct=predicted == cases["label"])


def peak_statistics(cam: np.ndarray, row) -> dict:
    """Peak voxel of a crop's map on the resampled grid, whether it is in the lesion's box,
    the box's share of the crop's voxels inside the volume, the map's mass in the box."""
    window = window_of(row)
    grid = tuple(int(getattr(row, f"grid_{a}")) for a in AXES)
    pasted = window.paste(cam, grid, fill=np.nan)
    inside = np.isfinite(pasted)
    box = np.zeros(grid, dtype=bool)
    box[grid_box(row)] = True
    values = np.where(inside, pasted, -np.inf)
    peak = {"peak_z": pd.NA, "peak_y": pd.NA, "peak_x": pd.NA, "peak_in_box": pd.NA}
    if inside.any() and float(np.nanmax(pasted) - np.nanmin(pasted)) >= 1e-6:
        index = np.unravel_index(int(np.argmax(values)), grid)
        peak = {**{f"peak_{a}": int(i) for a, i in zip(AXES, index)}, "peak_in_box": bool(box[index])}
    mass = float(np.nansum(pasted))
    return {**peak, "box_fraction_of_view": float((box & inside).sum() / max(inside.sum(), 1)),
            "cam_mass_in_box": float(np.nansum(pasted[box]) / mass) if mass > 0 else float("nan")}


def compute(checkpoint_paths, cache_path, crops_path, ensemble_predictions_path, config):
    """Fold-mean Grad-CAM of every external crop and the summary table."""
    crops = pd.read_parquet(crops_path)
    external = crops[crops["cohort"] == "external"].sort_values("image_id").reset_index(drop=True)
    if external.empty:
        raise InputError(f"{crops_path}: no external crops; Grad-CAM needs the external cohort "
                         "(or set gradcam.enabled: false)")
    sequence = str(external["sequence"].iloc[0])
    task = BinaryTask.from_config(config)
    cases = case_decisions(pd.read_parquet(ensemble_predictions_path), sequence, task)
    external = external.merge(cases.drop(columns="label"), on="patient_id", how="left", validate="many_to_one")
    if external["case_prob"].isna().any():
        missing = external.loc[external["case_prob"].isna(), "patient_id"].unique()[:5].tolist()
        raise InputError(f"{ensemble_predictions_path}: no ensemble prediction for external patients {missing}; "
                         "rerun ensembling")
    mode = str(external["mode"].iloc[0])
    # fp32 and no compile (pytorch-grad-cam runs the model itself and hooks its modules).
    device, acceleration = set_up(config["training"], precision="fp32", compile=False,
                                  **({"channels_last": False} if mode == "3d" else {}))
    images = align(read_volume_cache(cache_path), external, cache_path)
    cams = fold_mean_cams(checkpoint_paths, images, external["predicted"].to_numpy(), config, device,
                          acceleration, config["gradcam"]["target_layers"])
    rows = []
    for cam, row in zip(cams, external.itertuples(index=False)):
        rows.append({"image_id": row.image_id, "patient_id": row.patient_id, "sequence": row.sequence,
                     "mode": row.mode, "slice": int(row.slice), "label": int(row.label),
                     "case_prob": float(row.case_prob), "predicted": int(row.predicted),
                     "correct": bool(row.correct), "target_class": task.classes[int(row.predicted)],
                     **peak_statistics(cam, row)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(
        {"peak_z": "Int64", "peak_y": "Int64", "peak_x": "Int64", "peak_in_box": "boolean"})
    return summary, external, cams


def plane_view(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The slice ``index`` along the plane's normal as a radiologist views it (superior up;
    axial: anterior up, patient right on the left; sagittal: anterior on the left)."""
    normal, _, _, flip = PLANES[plane]
    image = np.take(volume, index, axis=normal)  # rows and columns keep their order (PLANES)
    return image[::-1] if flip else image


def figure(summary, external, cams, config, images_dir, title: str):
    """Figure 7 of a volume model: per (true class x correct), the surest case's slice
    through the lesion centre, its map over the region the model saw, the lesion box."""
    import matplotlib.patches as patches

    plt = pyplot()
    task = BinaryTask.from_config(config)
    plane = config["preprocessing"]["plane"]
    normal, rows_axis, columns_axis, flip = PLANES[plane]
    per_group = config["gradcam"]["cases_per_group"]
    cases = summary.drop_duplicates("patient_id").assign(confidence=lambda t: task.confidence(t["case_prob"]))
    chosen = (cases.sort_values(["label", "correct", "confidence", "patient_id"], ascending=[True, False, False, True])
              .groupby(["label", "correct"], sort=False).head(per_group))
    groups = [(label, correct) for label in range(len(task.classes)) for correct in (True, False)]
    fig, axes = plt.subplots(per_group, len(groups), figsize=(PAGE_WIDTH, 2.3 * per_group + 0.8), squeeze=False,
                             layout="constrained")
    mappable = None
    for column, (label, correct) in enumerate(groups):
        picked = chosen[(chosen["label"] == label) & (chosen["correct"] == correct)]
        for row_index in range(per_group):
            ax = axes[row_index, column]
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if row_index == 0:
                ax.set_title(f"{task.classes[label]}\n{'correct' if correct else 'incorrect'}")
            if row_index >= len(picked):
                if row_index == 0:
                    ax.text(0.5, 0.5, "no such case", ha="center", va="center", transform=ax.transAxes, color="0.4")
                continue
            patient = picked.iloc[row_index]["patient_id"]
            positions = np.flatnonzero(external["patient_id"].to_numpy() == patient)
            first = external.iloc[positions[0]]
            box = grid_box(first)
            centre = (box[normal].start + box[normal].stop - 1) // 2
            if first["mode"] == "3d":
                position, index = positions[0], centre
            else:  # the slice image nearest the box's centre
                slices = external["slice"].to_numpy()[positions]
                position = positions[int(np.argmin(np.abs(slices - centre)))]
                index = int(external["slice"].iloc[position])
            meta = external.iloc[position]
            image, lesion = read_case(meta, images_dir, config["data"]["max_volume_voxels"])
            case = prepare_case(image, lesion, config["preprocessing"], source=Path(images_dir) / meta["image_path"])
            grid = case.mask.shape
            cam = window_of(meta).paste(cams[position], grid, fill=np.nan)
            background = plane_view(case.channels[0], plane, index)
            heat = plane_view(cam, plane, index)
            ax.imshow(background, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            mappable = ax.imshow(np.ma.masked_invalid(heat), cmap=HEATMAP_CMAP, vmin=0, vmax=1, alpha=0.5,
                                 interpolation="nearest")
            # The lesion's box in the displayed orientation.
            r0, r1 = box[rows_axis].start, box[rows_axis].stop
            c0, c1 = box[columns_axis].start, box[columns_axis].stop
            if flip:
                r0, r1 = grid[rows_axis] - r1, grid[rows_axis] - r0
            ax.add_patch(patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor=PALETTE[5],
                                           lw=1.0, ls="--"))
            ax.set_xlabel(f"{patient}\np({task.positive_class}) = {picked.iloc[row_index]['case_prob']:.2f}",
                          fontsize=7)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6).set_label("Grad-CAM, mean of the fold models (0–1)")
    fig.suptitle(title)
    return fig


def peak_in_box_line(summary: pd.DataFrame) -> str:
    defined = summary["peak_in_box"].dropna()
    if defined.empty:
        return f"flat maps for all {len(summary)} external crops"
    return (f"peak in the lesion box {defined.mean():.0%} of {len(defined)} external crops "
            f"(chance: {summary['box_fraction_of_view'].mean():.0%} of the crop)")


def main_stage(checkpoint_paths, cache_path, crops_path, ensemble_predictions_path, config, images_dir,
               out_table, figure_stem, backbone: str) -> pd.DataFrame:
    """The workflow stage: summary CSV of every external crop + figure 7 (PDF and PNG)."""
    summary, external, cams = compute(checkpoint_paths, cache_path, crops_path, ensemble_predictions_path, config)
    write_csv(summary, out_table)
    sequence = summary["sequence"].iloc[0]
    fig = figure(summary, external, cams, config, images_dir,
                 f"{backbone}, {sequence}, {config['preprocessing']['plane']} slice through the lesion\n"
                 f"{peak_in_box_line(summary)}")
    save_figure(fig, figure_stem)
    log.info("Grad-CAM %s %s: %s", backbone, sequence, peak_in_box_line(summary))
    return summary
