"""Grad-CAM stage (figure 7): where the fold models of one backbone x sequence look.

Every external image gets one heat map: Grad-CAM (pytorch-grad-cam) of each fold model
for the class the 5-fold ensemble predicted for the case, each map scaled to [0, 1] by
the package, then averaged over the fold models. The map is computed on the model's
input (the cached crop) and mapped back onto the uncropped original slice through the
crop window of :func:`spinedx.preprocessing.crop_box`; outside the window (what the model
never saw) it is 0.

Outputs: a table of every external image (peak position, whether the peak lies inside
the labelme box, the chance level of that), and figure 7: a selection of cases per
(true class x correct/incorrect), the map over the slice with the box drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from spinedx import models
from spinedx.annotations import open_image
from spinedx.case_level import aggregate
from spinedx.errors import InputError
from spinedx.evaluation import positive_calls
from spinedx.io import write_csv
from spinedx.plotting import HEATMAP_CMAP, PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.preprocessing import align, crop_box, read_cache, to_grayscale_uint8

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["image_id", "patient_id", "sequence", "label", "case_prob", "predicted",
                   "correct", "target_class", "peak_x", "peak_y", "peak_in_box",
                   "box_fraction_of_image", "box_fraction_of_view", "cam_mass_in_box"]
# Modules that only rescale or gate a feature map: the CAM of the layer before is the same.
_PASS_THROUGH = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm,
                 torch.nn.ReLU, torch.nn.SiLU, torch.nn.GELU, torch.nn.Hardswish, torch.nn.Identity,
                 torch.nn.Dropout)


def find_target_layer(model, image_size: int, in_chans: int, override: str | None = None):
    """The layer whose activations Grad-CAM weighs, and its module path.

    Generic rule: the last top-level module, in forward order, whose output is a feature
    map of the spatial size of ``forward_features`` and which is not a norm or
    activation. This gives Inception-v3 ``Mixed_7c``, EfficientNet ``conv_head``, ResNet
    ``layer4`` (its last block's output) and MobileNetV3 ``blocks``; ``override`` (config
    gradcam.target_layers) names another module path.
    """
    if override:
        try:
            return model.get_submodule(override), override
        except AttributeError as error:
            raise InputError(f"config gradcam.target_layers: {type(model).__name__} has no module "
                             f"{override!r}; names: {[n for n, _ in model.named_children()]}") from error
    outputs: list[tuple[str, torch.nn.Module, tuple]] = []
    hooks = [module.register_forward_hook(
        lambda m, i, o, name=name: outputs.append((name, m, tuple(o.shape)))
        if isinstance(o, torch.Tensor) else None)
        for name, module in model.named_children()]
    try:
        # forward_features only: modules of the head (e.g. MobileNetV3's conv_head after
        # the pooling) never qualify, even when a tiny input makes every map 1 x 1.
        with torch.no_grad():
            features = model.forward_features(torch.zeros(1, in_chans, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = tuple(features.shape[-2:])
    candidates = [(name, module) for name, module, shape in outputs
                  if len(shape) == 4 and shape[-2:] == spatial and not isinstance(module, _PASS_THROUGH)]
    if not candidates:
        raise InputError(f"{type(model).__name__}: no feature-map layer found for Grad-CAM; name one "
                         "in config gradcam.target_layers")
    name, module = candidates[-1]
    return module, name


def fold_mean_cams(checkpoints: list[dict], pixels: np.ndarray, targets: np.ndarray,
                   device: torch.device, batch_size: int, target_layers: dict | None = None) -> np.ndarray:
    """Grad-CAM of every image (uint8 N x S x S) for its target class, mean over the folds."""
    total = np.zeros(pixels.shape, dtype=np.float64)
    for checkpoint in checkpoints:
        model = models.model_from_checkpoint(checkpoint, device)
        layer, _ = find_target_layer(model, checkpoint["image_size"], checkpoint["in_chans"],
                                     (target_layers or {}).get(checkpoint["backbone"]))

        def inputs(batch: np.ndarray, checkpoint=checkpoint) -> torch.Tensor:
            return models.to_model_input(torch.from_numpy(batch).to(device), checkpoint["mean"],
                                         checkpoint["std"], checkpoint["in_chans"])

        total += grad_cams(model, layer, pixels, targets, inputs, batch_size,
                           f"{checkpoint['backbone']} fold {checkpoint['fold']}")
        del model
    return total / max(len(checkpoints), 1)


def grad_cams(model, layer, pixels: np.ndarray, targets: np.ndarray, to_input, batch_size: int,
              name: str = "model") -> np.ndarray:
    """pytorch-grad-cam's GradCAM of one model (each map scaled to [0, 1], input size)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    maps = []
    # The context manager removes the package's hooks afterwards, so memory does not grow
    # over many models and images.
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(pixels), batch_size):
            classes = targets[start:start + batch_size]
            maps.append(cam(input_tensor=to_input(pixels[start:start + batch_size]),
                            targets=[ClassifierOutputTarget(int(c)) for c in classes]))
    # The package's __exit__ swallows IndexError: check that every batch came back.
    if sum(len(m) for m in maps) != len(pixels):
        raise InputError(f"Grad-CAM failed for {name}")
    return np.concatenate(maps).astype(np.float64) if maps else np.zeros(pixels.shape)


def view_window(row, settings: dict) -> tuple[int, int, int, int]:
    """The region of the original slice the model saw (x0, y0, x1, y1), before clipping."""
    if settings["crop"] == "box":
        return crop_box(row, settings["margin"], settings["keep_aspect"])
    return 0, 0, int(row.width), int(row.height)


def to_original(cam: np.ndarray, row, settings: dict) -> np.ndarray:
    """A model-input CAM (S x S) placed on the original slice (height x width), 0 outside the view."""
    x0, y0, x1, y1 = view_window(row, settings)
    resized = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F")
                         .resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), dtype=np.float64)
    full = np.zeros((int(row.height), int(row.width)), dtype=np.float64)
    # The crop window may extend past the border (preprocessing padded it with black).
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, int(row.width)), min(y1, int(row.height))
    full[fy0:fy1, fx0:fx1] = resized[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return full


def peak_statistics(full_cam: np.ndarray, row, settings: dict) -> dict:
    """Peak position, whether it lies in the labelme box, and the chance levels of that.

    A flat map (e.g. a 1 x 1 feature map of a tiny input) has no peak: position and
    ``peak_in_box`` are then missing rather than the first pixel.
    """
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


def case_decisions(image_predictions: pd.DataFrame, sequence: str, threshold: float) -> pd.DataFrame:
    """External cases' ensemble probability for this sequence and the decision it gives.

    From this sequence's ensembling output through the case_level stage's own
    aggregation, so that a change in another sequence does not rerun this job.
    """
    case_predictions = aggregate(image_predictions)
    cases = case_predictions[(case_predictions["input"] == sequence) & (case_predictions["model"] == "ensemble")
                             & (case_predictions["cohort"] == "external")]
    cases = cases[["patient_id", "label", "prob"]].rename(columns={"prob": "case_prob"})
    predicted = positive_calls(cases["case_prob"], threshold).astype(int)
    return cases.assign(predicted=predicted, correct=predicted == cases["label"])


def compute(checkpoint_paths, cache_path, images_path, ensemble_predictions_path, config: dict,
            images_dir) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Fold-mean Grad-CAM of every external image on its original slice, and the summary table."""
    images = pd.read_parquet(images_path)
    external = images[images["cohort"] == "external"].sort_values("image_id").reset_index(drop=True)
    if external.empty:
        raise InputError(f"{images_path}: no external images; Grad-CAM needs the external cohort "
                         "(or set gradcam.enabled: false)")
    sequence = str(external["sequence"].iloc[0])
    cases = case_decisions(pd.read_parquet(ensemble_predictions_path), sequence, config["decision"]["threshold"])
    external = external.merge(cases.drop(columns="label"), on="patient_id", how="left", validate="many_to_one")
    if external["case_prob"].isna().any():
        missing = external.loc[external["case_prob"].isna(), "patient_id"].unique()[:5].tolist()
        raise InputError(f"{ensemble_predictions_path}: no {sequence} ensemble prediction for external "
                         f"patients {missing}; rerun ensembling")
    models.configure_threads(config["training"]["threads"], config["training"]["deterministic"])
    device = models.select_device(config["training"]["device"])
    checkpoints = [models.load_checkpoint(path) for path in checkpoint_paths]
    cams = fold_mean_cams(checkpoints, align(read_cache(cache_path), external, cache_path),
                          external["predicted"].to_numpy(), device, config["inference"]["batch_size"],
                          config["gradcam"]["target_layers"])
    settings = config["preprocessing"]
    full_maps, rows = {}, []
    for cam, row in zip(cams, external.itertuples(index=False)):
        full = to_original(cam, row, settings)
        full_maps[row.image_id] = full
        rows.append({"image_id": row.image_id, "patient_id": row.patient_id, "sequence": row.sequence,
                     "label": int(row.label), "case_prob": float(row.case_prob),
                     "predicted": int(row.predicted), "correct": bool(row.correct),
                     "target_class": config["classes"][int(row.predicted)],
                     **peak_statistics(full, row, settings)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(
        {"peak_x": "Int64", "peak_y": "Int64", "peak_in_box": "boolean"})
    return summary, full_maps


def select_cases(summary: pd.DataFrame, per_group: int) -> pd.DataFrame:
    """Per (true class, correct) group, the cases the ensemble was most sure of (right or
    wrong), one image each: the case's first image by id. The choice never looks at the
    CAM, so the figure cannot pick flattering maps."""
    cases = summary.drop_duplicates("patient_id").assign(confidence=lambda t: (t["case_prob"] - 0.5).abs())
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
    classes = config["classes"]
    groups = [(label, correct) for label in range(len(classes)) for correct in (True, False)]
    per_group = config["gradcam"]["cases_per_group"]
    chosen = select_cases(summary, per_group)
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
            zoom_ax.set_xlabel(f"{case['patient_id']}\np({classes[-1]}) = {case['case_prob']:.2f}", fontsize=7)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes, shrink=0.6)
        bar.set_label("Grad-CAM, mean of the fold models (0–1)")
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
