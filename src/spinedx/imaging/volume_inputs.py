"""A case's model inputs in each input mode: resample, intensity recipe, crops around the lesion.

One function per step, all deterministic (bit-identical on one machine), so preprocessing
and Grad-CAM (and audit mode, with the bundle's settings) make exactly the same inputs:

1. :func:`prepare_case`: image (linear) and lesion mask (nearest neighbour) resampled to
   config ``preprocessing.spacing`` (:mod:`spinedx.imaging.resample`), the intensity
   recipe applied to the whole resampled image (:mod:`spinedx.imaging.intensity`: one
   float32 channel in [0, 1] per CT window, or the MR percentile channel), and the
   lesion's box on the resampled grid (:mod:`spinedx.imaging.lesions`).
2. :func:`mode_crops`: the crops of one input mode (:mod:`spinedx.imaging.crops`),
   centred on that box, ``round(crop_mm / spacing)`` voxels, 0 (the recipe's black)
   beyond the volume; 2d/2.5d keep at most ``max_slices`` central slices.

``settings`` is config ``preprocessing`` (spacing, intensity, plane, neighbours, crop_mm,
max_slices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinedx.errors import InputError
from spinedx.imaging.crops import PLANES, Crops, crop, size_in_voxels
from spinedx.imaging.intensity import apply_recipe, channels, ct_window_recipe, percentile_recipe
from spinedx.imaging.lesions import VoxelBox, lesion_box
from spinedx.imaging.resample import resample
from spinedx.readers.volume import Volume

#: Value of every channel beyond the volume: the recipes' black (0 in [0, 1]).
PAD_VALUE = 0.0


def intensity_recipe(settings: dict) -> dict:
    """The intensity recipe (plain dict with the numbers) of config ``preprocessing.intensity``."""
    spec = settings["intensity"]
    try:
        if spec["kind"] == "ct_window":
            if set(spec) - {"kind", "windows"} or "windows" not in spec:
                raise ValueError("a ct_window recipe takes `windows` only")
            return ct_window_recipe(w if isinstance(w, str) else (w["name"], w["level"], w["width"])
                                    for w in spec["windows"])
        if set(spec) != {"kind", "low", "high", "region"}:
            raise ValueError("a percentile recipe takes exactly `low`, `high` and `region`")
        return percentile_recipe(spec["low"], spec["high"], spec["region"])
    except ValueError as error:
        raise InputError(f"config preprocessing.intensity {spec}: {error}") from None


def input_channels(mode: str, settings: dict) -> int:
    """Channels of a model input: intensity channels, times 2k + 1 slices in mode 2.5d."""
    count = len(channels(intensity_recipe(settings)))
    return count * (2 * settings["neighbours"] + 1) if mode == "2.5d" else count


def crop_shape(mode: str, settings: dict) -> tuple[int, ...]:
    """Spatial shape of one crop: (H, W) of the plane for 2d/2.5d, (D, H, W) for 3d."""
    size = size_in_voxels(settings["crop_mm"], settings["spacing"])
    if mode == "3d":
        return size
    _, rows, columns, _ = PLANES[settings["plane"]]
    return (size[rows], size[columns])


@dataclass(frozen=True, eq=False)
class PreparedCase:
    """A case on the model grid: recipe channels (C, z, y, x), the resampled lesion mask
    (z, y, x) and its box, the resampled grid's affine (index -> LPS mm)."""

    channels: np.ndarray
    mask: np.ndarray
    box: VoxelBox
    affine: np.ndarray


def prepare_case(image: Volume, lesion: Volume, settings: dict, *, source) -> PreparedCase:
    """``image`` and its lesion mask (same grid) resampled, through the recipe, boxed."""
    spacing = settings["spacing"]
    moved = resample(image, spacing, kind="image")
    mask = resample(lesion, spacing, kind="mask").array
    if not mask.any():
        raise InputError(f"{source}: the lesion vanishes when resampled to {list(spacing)} mm (it is "
                         "smaller than a voxel there); use a finer preprocessing.spacing")

    recipe_channels = apply_recipe(moved.array, intensity_recipe(settings), mask=mask, source=source)
    return PreparedCase(recipe_channels, mask, lesion_box(mask, source=source), moved.affine)


def central(count: int, limit: int) -> slice:
    """The central ``limit`` of ``count`` items (all when limit is 0 or not smaller);
    an odd surplus leaves the extra item after the kept ones."""
    if not limit or limit >= count:
        return slice(0, count)
    start = (count - limit) // 2
    return slice(start, start + limit)


def mode_crops(case: PreparedCase, mode: str, settings: dict) -> Crops:
    """The model inputs of one input mode: (n, C, H, W) slices or (1, C, D, H, W)."""
    crops = crop(case.channels, case.box, mode=mode, plane=settings["plane"],
                 size=crop_shape(mode, settings), neighbours=settings["neighbours"], pad_value=PAD_VALUE)
    if mode == "3d":
        return crops
    keep = central(len(crops.windows), settings["max_slices"])
    return Crops(np.ascontiguousarray(crops.images[keep]), crops.windows[keep])
