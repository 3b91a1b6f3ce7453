"""The body in a volume (the head in a brain study) and crops to it.

The foreground is the largest connected part (26-connectivity), with its holes filled, of
the voxels whose mean over channels exceeds a threshold: after percentile normalisation
air is near 0 and tissue well above, so a low threshold separates them, and the hole
filling keeps dark structures inside the head (CSF, vessels on black-blood images).
Lesion detection samples its non-lesion training patches there and crops every volume
to its bounding box plus a margin, which removes most of the air around the head.

Arrays are ``(z, y, x)`` or ``(channels, z, y, x)``, affines map ``(z, y, x, 1)`` to LPS
mm as in :mod:`spinedx.readers.volume`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinedx.errors import InputError


def foreground_mask(channels, threshold: float, *, source="volume") -> np.ndarray:
    """Boolean ``(z, y, x)`` mask of the body in normalised ``(channels, z, y, x)`` data."""
    channels = np.asarray(channels)
    if channels.ndim == 3:
        channels = channels[None]
    above = channels.mean(axis=0, dtype=np.float32) > threshold
    labels, n = ndimage.label(above, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        raise InputError(f"{source}: no voxel is above the foreground threshold {threshold:g} after "
                         "normalisation; check the volume, or lower detection_preprocessing.foreground_threshold")
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return ndimage.binary_fill_holes(labels == largest)


def crop_slices(mask, spacing, margin_mm: float) -> tuple[slice, slice, slice]:
    """The bounding box of ``mask`` grown by ``margin_mm`` on every side (voxels rounded
    up), inside the volume."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise InputError("the foreground mask is empty: nothing to crop to")
    slices = []
    for axis, step in enumerate(spacing):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        grow = int(np.ceil(margin_mm / step - 1e-9))
        slices.append(slice(max(int(present[0]) - grow, 0), min(int(present[-1]) + 1 + grow, mask.shape[axis])))
    return tuple(slices)


def cropped_affine(affine, slices) -> np.ndarray:
    """The affine of a crop: index 0 of the crop is index ``start`` of the volume."""
    affine = np.asarray(affine, dtype=np.float64)
    start = np.array([s.start for s in slices], dtype=np.float64)
    moved = affine.copy()
    moved[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return moved
