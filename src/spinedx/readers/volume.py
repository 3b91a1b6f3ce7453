"""The Volume type and the reader interface every volume format sits behind.

Conventions (one for everything downstream):

- **World coordinates** are DICOM patient coordinates (LPS+), in millimetres: +x toward
  the patient's left, +y toward posterior, +z toward superior (head). NIfTI's RAS+ world
  is converted on reading (x and y negated); :func:`ras_to_lps` does the same for points.
- **Array axis order** is ``(z, y, x)``: ``array[k]`` is one axial slice, ``array[k, j]`` a
  row, as numpy, SimpleITK and DICOM store slices.
- **Canonical orientation** ``"SPL"``: after reading, array axis 0 increases toward
  Superior, axis 1 toward Posterior, axis 2 toward the patient's Left (in DICOM's (x, y, z)
  naming this is "LPS"). So ``array[k]`` is displayed as a radiologist sees an axial
  slice: anterior at the top, the patient's right on the viewer's left. Readers reach it
  by axis permutations and flips only, never by resampling; an oblique acquisition keeps
  its exact (oblique) affine and is permuted/flipped to the nearest canonical axes.
- **Affine**: a 4x4 matrix mapping an array index ``(z, y, x, 1)`` (voxel centres at
  integer indices) to world LPS millimetres ``(x, y, z, 1)``. Spacing and orientation are
  derived from it, so they can never disagree with it.
- **Intensities**: images are float32 in scanner units (Hounsfield units for CT, after
  the stored rescale); masks are uint16 labels (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from spinedx.errors import InputError

CANONICAL_ORIENTATION = "SPL"
# nibabel names each world axis (negative end, positive end); these are LPS+ world axes.
LPS_LABELS = (("R", "L"), ("A", "P"), ("I", "S"))
# Canonical SPL: array axis 0 -> world z (+), axis 1 -> world y (+), axis 2 -> world x (+).
_CANONICAL_ORNT = np.array([[2, 1], [1, 1], [0, 1]], dtype=float)
# The setting that holds the voxel limit, named in the refusal message.
LIMIT_SETTING = "data.max_volume_voxels"
MASK_DTYPE = np.uint16


@dataclass(frozen=True, eq=False, repr=False)
class Volume:
    """One 3D image or label mask on a known grid in patient space.

    ``array`` is indexed ``(z, y, x)``; ``affine`` maps ``(z, y, x, 1)`` to LPS mm. Readers
    return volumes in the canonical orientation ``"SPL"`` (see the module docstring).
    Holds no header values: only voxels and geometry.
    """

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        array = np.asarray(self.array)
        affine = np.asarray(self.affine, dtype=np.float64)
        if array.ndim != 3:
            raise ValueError(f"a Volume is 3D; got an array of {array.ndim} dimensions")
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError("a Volume's affine is a finite 4x4 matrix")
        if not np.allclose(affine[3], [0, 0, 0, 1]) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("a Volume's affine must be an invertible affine map (last row 0 0 0 1)")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along array axes (z, y, x): the lengths of the affine's columns."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Direction each array axis increases toward, in array axis order (e.g. "SPL")."""
        from nibabel import orientations  # here: nibabel's package import takes ~1 s

        return "".join(orientations.aff2axcodes(self.affine, labels=LPS_LABELS))

    def voxel_to_world(self, indices) -> np.ndarray:
        """Array indices (..., 3) in (z, y, x) order -> LPS mm (..., 3) in (x, y, z) order."""
        indices = np.asarray(indices, dtype=np.float64)
        return indices @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, points) -> np.ndarray:
        """LPS mm (..., 3) -> continuous array indices (..., 3) in (z, y, x) order."""
        points = np.asarray(points, dtype=np.float64)
        return (points - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (f"Volume(shape={self.shape}, dtype={self.array.dtype}, "
                f"spacing_mm=({spacing}), orientation={self.orientation!r})")


def ras_to_lps(points) -> np.ndarray:
    """Points (..., 3) from RAS+ (NIfTI, 3D Slicer) to LPS+ mm (DICOM): x and y negated."""
    points = np.array(points, dtype=np.float64)
    points[..., :2] *= -1
    return points


def to_canonical(array: np.ndarray, affine_lps: np.ndarray) -> Volume:
    """Permute/flip ``array`` (any axis order) to the canonical "SPL" orientation.

    ``affine_lps`` maps the given array's indices to LPS mm. No interpolation: voxel values
    are only moved, and the returned affine maps each moved voxel to the same world point.
    """
    from nibabel import orientations

    affine_lps = np.asarray(affine_lps, dtype=np.float64)
    current = orientations.io_orientation(affine_lps)
    transform = orientations.ornt_transform(current, _CANONICAL_ORNT)
    moved = orientations.apply_orientation(array, transform)
    # inv_ornt_aff maps indices of the moved array back to indices of the given array.
    affine = affine_lps @ orientations.inv_ornt_aff(transform, array.shape)
    # apply_orientation returns views with negative strides; a compact copy is cheaper
    # for every later operation and makes the result independent of the input buffer.
    return Volume(np.ascontiguousarray(moved), affine)


def check_voxel_limit(source, shape, max_voxels: int) -> None:
    """Refuse a volume larger than the configured limit before decoding its voxels."""
    count = int(np.prod([int(n) for n in shape], dtype=object))
    if count > max_voxels:
        dims = "x".join(str(int(n)) for n in shape)
        raise InputError(
            f"{source}: {dims} = {count} voxels exceeds the limit of {max_voxels} "
            f"(config {LIMIT_SETTING}); refusing a possible decompression bomb: raise the "
            "limit if the volume is genuine, or crop it to the region of interest")


def as_mask(volume: Volume, source) -> Volume:
    """The same grid with integer labels (uint16): refuses fractional or negative values."""
    values = volume.array
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError(f"{source}: a mask holds whole-number labels (0 = background), "
                             "found fractional values; save the segmentation as integer labels, "
                             "not a probability map")
    if values.size and (values.min() < 0 or values.max() > np.iinfo(MASK_DTYPE).max):
        raise InputError(f"{source}: mask labels must lie in 0..{np.iinfo(MASK_DTYPE).max}; "
                         "relabel the segmentation (0 = background, 1, 2, ... = lesions)")
    return Volume(values.astype(MASK_DTYPE), volume.affine)


class VolumeReader(Protocol):
    """One volume format. ``accepts`` looks at the path only (no decoding); ``read``
    returns a canonical :class:`Volume` or raises :class:`~spinedx.errors.InputError`
    naming the path and the fix."""

    name: str

    def accepts(self, path: Path) -> bool: ...

    def read(self, path: Path, *, max_voxels: int) -> Volume: ...


def volume_readers() -> tuple[VolumeReader, ...]:
    # Imported here: the format modules import Volume from this module.
    from spinedx.readers import dicom_series, nifti

    return (nifti.READER, dicom_series.READER)


def read_volume(path, *, max_voxels: int) -> Volume:
    """The image volume at ``path``: a ``.nii``/``.nii.gz`` file or a folder holding the
    slices of one DICOM series. float32 scanner units, canonical orientation."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path in the cases table")
    for reader in volume_readers():
        if reader.accepts(path):
            return reader.read(path, max_voxels=max_voxels)
    raise InputError(f"{path}: not a volume; give a NIfTI file (.nii or .nii.gz) or a folder "
                     "holding the DICOM slices of one series")


def read_mask(path, *, max_voxels: int) -> Volume:
    """A label mask (NIfTI or DICOM series) as uint16 labels, canonical orientation."""
    return as_mask(read_volume(path, max_voxels=max_voxels), path)
