"""Lesion annotations on volumes: a mask aligned with its image, or a 3D box from a CSV row.

All indices are canonical array indices ``(z, y, x)`` (see ``spinedx.readers.volume``).
A :class:`VoxelBox` is half-open like a Python slice: ``start`` inclusive, ``stop``
exclusive. Box CSV rows come in one of three units (the ``units`` argument):

- ``"voxel"``: columns ``z_first, z_last, y_first, y_last, x_first, x_last``, canonical
  array indices, both ends inclusive (the first and last slice that show the lesion).
  These are spinedx's indices after reorientation, not necessarily the file's own.
- ``"mm_lps"``: columns ``x_min, x_max, y_min, y_max, z_min, z_max`` in DICOM patient
  coordinates (LPS+, mm), as DICOM viewers report them.
- ``"mm_ras"``: the same columns in RAS+ mm (NIfTI, 3D Slicer); converted to LPS.

A world box becomes the voxels whose centres lie inside it (ends included, with a
1e-6-voxel allowance for rounding); for an oblique volume, where a world box is not a
voxel box, the smallest voxel box holding the world box's eight corners.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from spinedx.errors import InputError
from spinedx.readers.volume import Volume, ras_to_lps

# Image and mask grids agree when every corner voxel centre is within this fraction of
# the smallest voxel size (float32 affines of two tools differ far below it).
ALIGNMENT_TOLERANCE = 0.01
_ROUNDING = 1e-6
VOXEL_COLUMNS = ("z_first", "z_last", "y_first", "y_last", "x_first", "x_last")
WORLD_COLUMNS = ("x_min", "x_max", "y_min", "y_max", "z_min", "z_max")
UNITS = ("voxel", "mm_lps", "mm_ras")


@dataclass(frozen=True)
class VoxelBox:
    """Voxels ``start[i] <= index[i] < stop[i]`` along each array axis (z, y, x)."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    def __post_init__(self):
        start = tuple(int(v) for v in self.start)
        stop = tuple(int(v) for v in self.stop)
        if len(start) != 3 or len(stop) != 3 or any(b <= a for a, b in zip(start, stop)):
            raise ValueError(f"a VoxelBox needs start < stop on three axes, got {start}, {stop}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def centre(self) -> tuple[float, float, float]:
        """Continuous index of the box's centre (the middle of its first and last voxel)."""
        return tuple((a + b - 1) / 2 for a, b in zip(self.start, self.stop))

    def to_dict(self) -> dict:
        return {"start": list(self.start), "stop": list(self.stop)}


def check_aligned(image: Volume, mask: Volume, *, source) -> None:
    """Refuse a mask whose grid is not the image's (shape and every corner's position)."""
    if image.shape != mask.shape:
        raise InputError(
            f"{source}: mask grid {mask.shape} differs from its image's {image.shape}; save "
            "the mask on the image's grid (resample it to the image as reference, e.g. in "
            "3D Slicer or ITK-SNAP) or segment the same series")
    corners = np.array([[z, y, x] for z in (0, image.shape[0] - 1)
                        for y in (0, image.shape[1] - 1) for x in (0, image.shape[2] - 1)])
    distance = np.linalg.norm(image.voxel_to_world(corners) - mask.voxel_to_world(corners), axis=1)
    allowed = ALIGNMENT_TOLERANCE * min(image.spacing)
    if distance.max() > allowed:
        raise InputError(
            f"{source}: the mask lies {distance.max():.3g} mm away from its image at a corner "
            f"(allowed {allowed:.3g} mm): same size, different position or orientation; save "
            "the mask with the image's geometry (resample it to the image as reference)")


def mask_labels(mask) -> list[int]:
    """Lesion labels present in a mask array (non-zero values), ascending."""
    return [int(v) for v in np.unique(np.asarray(mask)) if v != 0]


def _voxels(mask, label, source) -> tuple[np.ndarray, ...]:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"a mask array is 3D (z, y, x), got {mask.ndim} dimensions")
    where = np.nonzero(mask != 0 if label is None else mask == label)
    if where[0].size == 0:
        what = "no lesion voxels" if label is None else f"no voxels of label {label}"
        raise InputError(f"{source}: the mask has {what}; draw the lesion, or drop the case "
                         "(or the label) from the cases table")
    return where


def lesion_box(mask, *, label: int | None = None, source) -> VoxelBox:
    """The smallest box holding the lesion's voxels (label ``label``, or any non-zero)."""
    where = _voxels(mask, label, source)
    return VoxelBox(tuple(int(w.min()) for w in where), tuple(int(w.max()) + 1 for w in where))


def lesion_centroid(mask, *, label: int | None = None, source) -> np.ndarray:
    """Mean array index (z, y, x) of the lesion's voxels (float64); world mm via
    ``Volume.voxel_to_world``."""
    where = _voxels(mask, label, source)
    return np.array([w.mean(dtype=np.float64) for w in where])


def mask_from_box(shape, box: VoxelBox) -> np.ndarray:
    """A uint16 mask of ``shape`` with 1 inside ``box`` (clipped to the volume)."""
    mask = np.zeros(tuple(shape), dtype=np.uint16)
    mask[box.slices] = 1
    return mask


def box_from_row(row: Mapping, volume: Volume, *, units: str, source) -> VoxelBox:
    """The voxel box a CSV row describes (columns per ``units``, see the module docstring)."""
    if units not in UNITS:
        raise ValueError(f"units is one of {UNITS}, not {units!r}")
    columns = VOXEL_COLUMNS if units == "voxel" else WORLD_COLUMNS
    missing = [c for c in columns if c not in row]
    if missing:
        raise InputError(f"{source}: box row lacks column(s) {', '.join(missing)}; a box in "
                         f"{units} units has columns {', '.join(columns)}")
    try:
        values = np.array([float(row[c]) for c in columns])
    except (TypeError, ValueError) as error:
        raise InputError(f"{source}: box coordinates must be numbers ({', '.join(columns)})") from error
    if not np.all(np.isfinite(values)):
        raise InputError(f"{source}: a box coordinate is empty or not finite; fill in "
                         f"{', '.join(columns)}")
    if units == "voxel":
        if np.any(values != np.round(values)):
            raise InputError(f"{source}: voxel box coordinates are whole slice/row/column "
                             "indices; use units mm_lps or mm_ras for millimetres")
        first, last = values[0::2].astype(int), values[1::2].astype(int)
        if np.any(last < first):
            raise InputError(f"{source}: a box's last index precedes its first; swap them")
        if np.any(first < 0) or np.any(last >= np.array(volume.shape)):
            raise InputError(f"{source}: voxel box [{', '.join(map(str, values.astype(int)))}] "
                             f"reaches outside the volume of shape {volume.shape} (z, y, x); "
                             "indices count from 0 in spinedx's canonical (z, y, x) order")
        return VoxelBox(tuple(first), tuple(last + 1))
    low, high = values[0::2], values[1::2]
    if np.any(high < low):
        raise InputError(f"{source}: a box's maximum is below its minimum; swap them")
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])])
    if units == "mm_ras":
        corners = ras_to_lps(corners)
    indices = volume.world_to_voxel(corners)
    first = np.ceil(indices.min(axis=0) - _ROUNDING).astype(int)
    last = np.floor(indices.max(axis=0) + _ROUNDING).astype(int)
    first = np.maximum(first, 0)
    last = np.minimum(last, np.array(volume.shape) - 1)
    if np.any(last < first):
        raise InputError(f"{source}: the box holds no voxel centre of the volume (it lies "
                         f"outside it, or between two slices); check the coordinates are "
                         f"{units} mm of this series")
    return VoxelBox(tuple(first), tuple(last + 1))
