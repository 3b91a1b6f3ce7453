"""From probability maps and lesion masks to lesions: connected components and their properties.

(Named ``components`` because ``spinedx.imaging.lesions`` holds the lesion annotations:
boxes from CSV rows, mask alignment.)

Array conventions (those of ``spinedx.readers.volume.Volume``, so that a reader's volume
plugs in without change: ``extract_candidates(v.array, v.spacing, affine=v.affine, ...)``):

* a volume is a 3D numpy array indexed ``[z, y, x]`` (slice, row, column);
* ``spacing`` is the voxel size along ``(z, y, x)`` in millimetres;
* world positions (mm) come from a 4x4 ``affine`` mapping ``(z, y, x, 1)`` voxel
  indices (voxel centres at integers) to world coordinates, as ``Volume.affine`` does
  (world in LPS ``(x, y, z)`` order there); without one, from ``origin`` (the world
  position of voxel ``(0, 0, 0)``) and ``direction`` (3x3, column ``k`` = world direction
  of array axis ``k``): ``world = origin + direction @ (index * spacing)``, world axes in
  the order of ``direction``'s rows, ``(z, y, x)`` for the default identity.

Components are found with :func:`scipy.ndimage.label` under 6-, 18- or 26-connectivity
(voxels sharing a face; a face or an edge; a face, an edge or a corner). 26 is the
default because picai_eval, the reference evaluator, labels detection maps and lesion
masks with a 3x3x3 block of ones (26-connectivity); with 6 or 18, two candidates that
touch only diagonally stay apart here but would be merged by picai_eval.

This module imports numpy, scipy and pandas only (no torch, no reader), so evaluation jobs
stay light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import ndimage

from spinedx.errors import InputError

__all__ = [
    "CONNECTIVITIES",
    "SCORES",
    "Candidate",
    "ComponentMap",
    "Region",
    "equivalent_diameter_mm",
    "extract_candidates",
    "index_to_world",
    "lesions_from_mask",
]

#: Neighbourhoods: number of neighbours -> rank passed to generate_binary_structure.
CONNECTIVITIES: dict[int, int] = {6: 1, 18: 2, 26: 3}

#: How a candidate's score is computed from the probabilities of its voxels.
SCORES: tuple[str, ...] = ("max", "mean")


@dataclass(frozen=True)
class Region:
    """One connected component (a candidate or a ground-truth lesion).

    ``label`` is its value in the owning :class:`ComponentMap`'s ``labels`` array
    (1-based, in raster order of each component's first voxel). ``bbox`` is
    ``(z0, y0, x0, z1, y1, x1)`` with exclusive upper bounds, so ``slices`` cut it out.
    ``centroid_voxel`` is in (z, y, x) index order, ``centroid_world`` in world (mm)
    order (see the module docstring: LPS (x, y, z) with a reader's affine).
    """

    label: int
    size_voxels: int
    volume_mm3: float
    equivalent_diameter_mm: float
    centroid_voxel: tuple[float, float, float]
    centroid_world: tuple[float, float, float]
    bbox: tuple[int, int, int, int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        z0, y0, x0, z1, y1, x1 = self.bbox
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    @property
    def centre_index(self) -> tuple[int, int, int]:
        """The voxel holding the centroid (coordinates rounded half up)."""
        return tuple(int(math.floor(c + 0.5)) for c in self.centroid_voxel)


@dataclass(frozen=True)
class Candidate(Region):
    """A lesion candidate: a component of the thresholded probability map, with its score
    (max or mean probability inside) and the voxel of its highest probability."""

    score: float
    peak_voxel: tuple[int, int, int]


@dataclass(frozen=True)
class ComponentMap:
    """Components of one volume: ``labels`` (int32, 0 = background, ``regions[i]`` has
    label ``i + 1``) and their properties. ``source_values`` is set for instance-label
    masks: the mask value of each lesion, in the order of ``regions``."""

    labels: np.ndarray
    regions: tuple[Region, ...]
    spacing: tuple[float, float, float]
    source_values: tuple[int, ...] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.regions)

    @property
    def scores(self) -> np.ndarray:
        """Scores of candidate regions (float64); NaN for regions without a score."""
        return np.array([getattr(r, "score", math.nan) for r in self.regions], dtype=float)

    def mask(self, index: int) -> np.ndarray:
        """Boolean mask of ``regions[index]`` over the whole volume."""
        return self.labels == self.regions[index].label

    def to_frame(self) -> pd.DataFrame:
        """One row per region, tuples split into ``_z``, ``_y``, ``_x`` columns."""
        rows = []
        for region in self.regions:
            row = {}
            for f in fields(region):
                value = getattr(region, f.name)
                if f.name == "bbox":
                    row.update(zip(("bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"), value))
                elif isinstance(value, tuple):
                    row.update({f"{f.name}_{axis}": v for axis, v in zip("zyx", value)})
                else:
                    row[f.name] = value
            rows.append(row)
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Checks and geometry
# ---------------------------------------------------------------------------------------


def _check_volume(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"{name} must be a 3D array indexed (z, y, x); got shape {array.shape}")
    return array


def _check_triple(values, name: str, *, positive: bool) -> tuple[float, float, float]:
    values = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be three finite numbers in (z, y, x) order (mm); got {values}")
    if positive and min(values) <= 0:
        raise InputError(f"{name} must be positive voxel sizes in mm (z, y, x); got {values}")
    return values


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in CONNECTIVITIES:
        raise InputError(f"connectivity must be one of {sorted(CONNECTIVITIES)}; got {connectivity!r}")
    return ndimage.generate_binary_structure(3, CONNECTIVITIES[connectivity])


def index_to_world(index, spacing, origin=(0.0, 0.0, 0.0), direction=None, affine=None) -> np.ndarray:
    """World positions (mm) of voxel coordinates ``index`` (..., 3) in (z, y, x) order:
    ``affine @ (index, 1)`` when an affine is given, else ``origin + direction @ (index *
    spacing)``."""
    index = np.asarray(index, dtype=float)
    if affine is not None:
        affine = _check_affine(affine, spacing, origin, direction)
        return index @ affine[:3, :3].T + affine[:3, 3]
    scaled = index * np.asarray(spacing, dtype=float)
    if direction is not None:
        direction = np.asarray(direction, dtype=float)
        if direction.shape != (3, 3):
            raise InputError(f"direction must be a 3x3 matrix; got shape {direction.shape}")
        scaled = scaled @ direction.T
    return scaled + np.asarray(origin, dtype=float)


def _check_affine(affine, spacing, origin, direction) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"affine must be a finite 4x4 matrix; got shape {affine.shape}")
    if direction is not None or tuple(np.asarray(origin, dtype=float).ravel()) != (0.0, 0.0, 0.0):
        raise InputError("give either an affine or origin/direction, not both")
    columns = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.allclose(columns, np.asarray(spacing, dtype=float), rtol=1e-6, atol=0):
        raise InputError(f"spacing {tuple(spacing)} disagrees with the affine's voxel sizes "
                         f"{tuple(columns.round(6))}; pass the volume's own spacing")
    return affine


def equivalent_diameter_mm(volume_mm3) -> np.ndarray | float:
    """Diameter of the sphere of the same volume: ``(6 V / pi) ** (1/3)``."""
    result = np.cbrt(6.0 * np.asarray(volume_mm3, dtype=float) / math.pi)
    return float(result) if result.ndim == 0 else result


# ---------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Properties:
    sizes: np.ndarray
    centroids: np.ndarray  # (n, 3) voxel coordinates
    bboxes: list


def _properties(labels: np.ndarray, n: int) -> _Properties:
    """Size, centroid and bounding box of labels 1..n (vectorised over components)."""
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    which = flat[where]
    sizes = np.bincount(which, minlength=n + 1)[1:]
    coords = np.unravel_index(where, labels.shape)
    centroids = np.stack(
        [np.bincount(which, weights=c, minlength=n + 1)[1:] for c in coords], axis=1
    ) / np.maximum(sizes, 1)[:, None]
    return _Properties(sizes=sizes, centroids=centroids, bboxes=ndimage.find_objects(labels, max_label=n))


def _regions(labels, n, spacing, origin, direction, affine, *, probability=None, score="max"):
    props = _properties(labels, n)
    voxel_mm3 = float(np.prod(spacing))
    volumes = props.sizes * voxel_mm3
    diameters = np.atleast_1d(equivalent_diameter_mm(volumes))
    world = index_to_world(props.centroids, spacing, origin, direction, affine)
    if probability is not None and n:
        index = np.arange(1, n + 1)
        if score == "max":
            scores = ndimage.maximum(probability, labels, index)
        else:
            flat = labels.ravel()
            inside = flat > 0
            scores = np.bincount(flat[inside], weights=probability.ravel()[inside].astype(float),
                                 minlength=n + 1)[1:] / props.sizes
        peaks = ndimage.maximum_position(probability, labels, index)
    regions = []
    for i in range(n):
        box = props.bboxes[i]
        common = dict(
            label=i + 1,
            size_voxels=int(props.sizes[i]),
            volume_mm3=float(volumes[i]),
            equivalent_diameter_mm=float(diameters[i]),
            centroid_voxel=tuple(float(c) for c in props.centroids[i]),
            centroid_world=tuple(float(c) for c in world[i]),
            bbox=(box[0].start, box[1].start, box[2].start, box[0].stop, box[1].stop, box[2].stop),
        )
        if probability is None:
            regions.append(Region(**common))
        else:
            regions.append(Candidate(**common, score=float(scores[i]),
                                     peak_voxel=tuple(int(p) for p in peaks[i])))
    return tuple(regions)


def _relabel_kept(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop components whose ``keep`` is False and renumber the rest 1..m in order."""
    mapping = np.zeros(keep.size + 1, dtype=np.int32)
    mapping[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return mapping[labels], int(keep.sum())


def extract_candidates(
    probability,
    spacing,
    *,
    threshold: float,
    score: str = "max",
    connectivity: int = 26,
    min_size_voxels: int = 1,
    min_volume_mm3: float = 0.0,
    origin=(0.0, 0.0, 0.0),
    direction=None,
    affine=None,
) -> ComponentMap:
    """Lesion candidates of one probability map.

    ``extract_candidates(volume.array, volume.spacing, affine=volume.affine, ...)`` for
    a reader's ``Volume``; plain arrays take ``spacing`` (and optionally ``origin``,
    ``direction``) as documented in the module docstring.

    A voxel is foreground when its probability is strictly above ``threshold`` (the
    project's one decision rule: a value equal to the threshold is negative). Each
    connected component of the foreground (``connectivity`` 6, 18 or 26) is a candidate
    scored by the ``"max"`` or ``"mean"`` probability of its voxels. Components smaller
    than ``min_size_voxels`` voxels or ``min_volume_mm3`` cubic millimetres are removed
    (from ``regions`` and from ``labels``); the rest are numbered 1..n in raster order.
    """
    probability = _check_volume(probability, "probability map")
    if not np.issubdtype(probability.dtype, np.floating):
        probability = probability.astype(np.float64)
    if not np.isfinite(probability).all():
        raise InputError("probability map contains NaN or infinite values; fix the model output "
                         "(or replace them) before extracting candidates")
    spacing = _check_triple(spacing, "spacing", positive=True)
    origin = _check_triple(origin, "origin", positive=False)
    if score not in SCORES:
        raise InputError(f"score must be one of {SCORES}; got {score!r}")
    if int(min_size_voxels) != min_size_voxels or min_size_voxels < 1:
        raise InputError(f"min_size_voxels must be an integer >= 1; got {min_size_voxels!r}")
    if not min_volume_mm3 >= 0:
        raise InputError(f"min_volume_mm3 must be >= 0; got {min_volume_mm3!r}")

    labels, n = ndimage.label(probability > threshold, structure=_structure(connectivity))
    labels = labels.astype(np.int32, copy=False)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        keep = (sizes >= min_size_voxels) & (sizes * float(np.prod(spacing)) >= min_volume_mm3)
        if not keep.all():
            labels, n = _relabel_kept(labels, keep)
    regions = _regions(labels, n, spacing, origin, direction, affine, probability=probability, score=score)
    return ComponentMap(labels=labels, regions=regions, spacing=spacing)


def lesions_from_mask(
    mask,
    spacing,
    *,
    instances: bool = False,
    connectivity: int = 26,
    origin=(0.0, 0.0, 0.0),
    direction=None,
    affine=None,
) -> ComponentMap:
    """Ground-truth lesions of one mask volume (see :func:`extract_candidates` for the
    geometry arguments).

    ``instances=False``: every non-zero voxel is lesion, and each connected component
    (``connectivity``) is one lesion. ``instances=True``: the mask holds instance labels,
    and each distinct positive value is one lesion (even when it is not connected, and
    even when it touches another lesion); the values are kept in ``source_values``.
    """
    mask = _check_volume(mask, "lesion mask")
    spacing = _check_triple(spacing, "spacing", positive=True)
    origin = _check_triple(origin, "origin", positive=False)
    if mask.dtype.kind == "f":
        if not np.isfinite(mask).all() or (mask != np.round(mask)).any():
            raise InputError("lesion mask must hold integer labels (0 = background); got "
                             "non-integer values: a probability map is not a mask")
    source_values = None
    if instances:
        integer = mask.astype(np.int64)
        if (integer < 0).any():
            raise InputError("instance-label mask has negative values; use 0 for background "
                             "and 1, 2, ... for lesions")
        values, inverse = np.unique(integer, return_inverse=True)
        inverse = inverse.reshape(mask.shape)
        if values[0] == 0:
            labels = inverse.astype(np.int32)
            values = values[1:]
        else:
            labels = (inverse + 1).astype(np.int32)
        n = values.size
        source_values = tuple(int(v) for v in values)
    else:
        labels, n = ndimage.label(mask != 0, structure=_structure(connectivity))
        labels = labels.astype(np.int32, copy=False)
    regions = _regions(labels, n, spacing, origin, direction, affine)
    return ComponentMap(labels=labels, regions=regions, spacing=spacing, source_values=source_values)

