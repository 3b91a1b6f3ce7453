"""Resampling a volume to a target voxel spacing, keeping it in the same place in the patient.

Grid: the resampled grid covers the same extent as the original (from the outer face of
the first voxel to the outer face of the last, along each array axis), with
``round(n * old / new)`` voxels (halves up). New voxel ``m`` along an axis is centred
where the original's continuous index is ``(m + 0.5) * new / old - 0.5`` (the
"half-pixel" convention of ITK, scikit-image and ``align_corners=False``); the new affine
maps every new voxel centre to exactly that world point. Directions are kept, so an oblique
volume stays oblique. Points beyond the outermost original centres take the border value.

Interpolation: linear for images, nearest neighbour for masks (labels must not blend).
Axis-aligned resampling is separable, so it is done one axis at a time with plain numpy
(two gathers and a weighted sum per axis, float32): memory stays near two copies of the
volume, and every value comes from single IEEE operations (no reductions or fused
multiply-adds whose rounding depends on the processor's vector width), so another
processor should give the same bits; that has been checked on one machine only. It equals scipy.ndimage.map_coordinates (order 1, mode "nearest") on the same
points, which the tests check; scipy would need a full coordinate grid (3 float64 values
per output voxel), SimpleITK a round trip through its image type, MONAI torch.
"""

from __future__ import annotations

import numpy as np

from spinedx.readers.volume import Volume

# A target spacing within this fraction of the current one leaves the axis untouched
# (spacings derived from float affines differ in the last bits).
SAME_SPACING = 1e-6


def resampled_shape(shape, spacing, target) -> tuple[int, int, int]:
    """Voxel counts of the resampled grid: the same extent, ``round(n * old / new)``."""
    return tuple(
        n if _same(old, new) else max(1, int(np.floor(n * old / new + 0.5)))
        for n, old, new in zip(shape, spacing, target))


def resample(volume: Volume, spacing, *, kind: str) -> Volume:
    """``volume`` on a grid of ``spacing`` mm per array axis (z, y, x).

    ``kind`` is "image" (linear, float32 out) or "mask" (nearest, dtype kept).
    """
    if kind not in ("image", "mask"):
        raise ValueError(f"kind is 'image' or 'mask', not {kind!r}")
    target = tuple(float(s) for s in spacing)
    if len(target) != 3 or not all(np.isfinite(s) and s > 0 for s in target):
        raise ValueError(f"spacing is three positive millimetre values (z, y, x), not {spacing!r}")
    current = volume.spacing
    shape = resampled_shape(volume.shape, current, target)
    array = volume.array if kind == "mask" else volume.array.astype(np.float32, copy=False)
    scale = np.eye(4)
    for axis, (n_new, old, new) in enumerate(zip(shape, current, target)):
        if _same(old, new):
            continue
        positions = (np.arange(n_new, dtype=np.float64) + 0.5) * (new / old) - 0.5
        array = (_nearest if kind == "mask" else _linear)(array, positions, axis)
        scale[axis, axis] = new / old
        scale[axis, 3] = 0.5 * new / old - 0.5
    return Volume(np.ascontiguousarray(array), volume.affine @ scale)


def _same(old: float, new: float) -> bool:
    return abs(new - old) <= SAME_SPACING * old


def _shape_for(axis: int, ndim: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def _linear(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation along one axis at continuous ``positions``, clamped at the ends."""
    n = array.shape[axis]
    positions = np.clip(positions, 0, n - 1)
    if n == 1:
        return np.take(array, np.zeros(len(positions), dtype=np.intp), axis=axis)
    lower = np.minimum(np.floor(positions).astype(np.intp), n - 2)
    weight = (positions - lower).astype(np.float32).reshape(_shape_for(axis, array.ndim))
    below = np.take(array, lower, axis=axis)
    above = np.take(array, lower + 1, axis=axis)
    return below * (np.float32(1) - weight) + above * weight


def _nearest(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """The nearest original voxel along one axis (halves round up), clamped at the ends."""
    index = np.clip(np.floor(positions + 0.5).astype(np.intp), 0, array.shape[axis] - 1)
    return np.take(array, index, axis=axis)
