"""Machinery shared by the volume demo studies (``vertebral_ct``, ``brain_mets``).

- **Body frame**: every phantom is drawn in millimetres in the NIfTI world convention
  RAS+ (+x toward the patient's Right, +y Anterior, +z Superior), with analytic shapes.
- **Grid**: a scanner's voxel grid in that frame; the rendering array is indexed
  ``[i, j, k]`` along (x, y, z), i.e. in RAS order, voxel centres at
  ``origin + spacing * index``.
- **Partial volume**: a shape is painted with the fraction of each voxel it covers,
  estimated from ``oversample**3`` sub-voxel samples, and only inside the shape's
  bounding window, so a 2 mm lesion in a 2.5 mm voxel shows as a faint spot with the
  right integral rather than as a whole bright voxel or nothing.
- **Storage**: scanners store the array either in RAS order (nibabel's canonical order)
  or in LPS order (what ITK/SimpleITK write for DICOM-ordered data: first two axes
  flipped); the affine always says which, so a reader must use it.
- **Reproducible files**: NIfTI bytes from nibabel, gzip-compressed with mtime 0 and no
  file name in the gzip header, so the same settings give byte-identical ``.nii.gz``.

Imports are numpy only; nibabel and scipy are imported where they are used, so that the
study modules' ``planned_files`` stay cheap.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinedx.io import write_bytes

STORAGE_ORDERS = ("RAS", "LPS")
_GZIP_LEVEL = 6


@dataclass(frozen=True)
class Grid:
    """Voxel grid in the body frame: ``shape``/``spacing`` along (x, y, z), RAS order."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # body-frame mm of voxel (0, 0, 0)'s centre

    @classmethod
    def covering(cls, centre, extent_mm, spacing) -> "Grid":
        """The grid of ``spacing`` whose voxels tile ``extent_mm`` around ``centre``."""
        shape = tuple(max(int(round(e / s)), 1) for e, s in zip(extent_mm, spacing))
        origin = tuple(float(c - (n - 1) * s / 2) for c, n, s in zip(centre, shape, spacing))
        return cls(shape, tuple(float(s) for s in spacing), origin)

    def centres(self, axis: int) -> np.ndarray:
        return self.origin[axis] + self.spacing[axis] * np.arange(self.shape[axis])

    def window(self, low, high):
        """Index slices of the voxels that overlap the box [low, high] (mm), or None."""
        slices = []
        for axis in range(3):
            first = int(np.floor((low[axis] - self.origin[axis]) / self.spacing[axis] + 0.5))
            last = int(np.ceil((high[axis] - self.origin[axis]) / self.spacing[axis] - 0.5))
            first, last = max(first, 0), min(last, self.shape[axis] - 1)
            if first > last:
                return None
            slices.append(slice(first, last + 1))
        return tuple(slices)

    def points(self, window, oversample: int = 1):
        """Broadcastable (X, Y, Z) coordinates of the sub-voxel samples of ``window``."""
        offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
        axes = []
        for axis, part in enumerate(window):
            centres = self.origin[axis] + self.spacing[axis] * np.arange(part.start, part.stop)
            samples = (centres[:, None] + offsets[None, :] * self.spacing[axis]).ravel()
            shape = [1, 1, 1]
            shape[axis] = samples.size
            axes.append(samples.reshape(shape).astype(np.float32))
        return tuple(axes)

    def voxel_volume(self) -> float:
        return float(np.prod(self.spacing))


def coverage(grid: Grid, low, high, inside, oversample: int = 2):
    """``(window, fraction)``: the share of each voxel of ``window`` inside a shape.

    ``inside(X, Y, Z) -> bool array`` is evaluated at the sub-voxel samples of the
    bounding box [low, high]; returns ``(None, None)`` when the box misses the grid.
    """
    window = grid.window(low, high)
    if window is None:
        return None, None
    X, Y, Z = grid.points(window, oversample)
    sizes = [part.stop - part.start for part in window]
    hit = np.broadcast_to(inside(X, Y, Z), (sizes[0] * oversample, sizes[1] * oversample, sizes[2] * oversample))
    fraction = hit.reshape(sizes[0], oversample, sizes[1], oversample, sizes[2], oversample)
    return window, fraction.mean(axis=(1, 3, 5), dtype=np.float32)


def coverage_union(grid: Grid, pieces, oversample: int = 3):
    """Like :func:`coverage` for the union of ``pieces`` ``[(low, high, inside), ...]``.

    A branching vessel is many overlapping segments; painting them one by one would
    paint their joints twice. Sub-voxel samples are OR-ed over the pieces first.
    """
    lows = np.array([np.asarray(p[0], float) for p in pieces])
    highs = np.array([np.asarray(p[1], float) for p in pieces])
    window = grid.window(lows.min(axis=0), highs.max(axis=0))
    if window is None:
        return None, None
    sizes = [part.stop - part.start for part in window]
    hit = np.zeros([n * oversample for n in sizes], bool)
    for low, high, inside in pieces:
        part = grid.window(low, high)
        if part is None:
            continue
        X, Y, Z = grid.points(part, oversample)
        target = tuple(slice((p.start - w.start) * oversample, (p.stop - w.start) * oversample)
                       for p, w in zip(part, window))
        hit[target] |= np.broadcast_to(inside(X, Y, Z), hit[target].shape)
    fraction = hit.reshape(sizes[0], oversample, sizes[1], oversample, sizes[2], oversample)
    return window, fraction.mean(axis=(1, 3, 5), dtype=np.float32)


class Canvas:
    """One float32 volume per named image on a shared grid, painted back to front."""

    def __init__(self, grid: Grid, background: dict):
        self.grid = grid
        self.volumes = {name: np.full(grid.shape, value, np.float32) for name, value in background.items()}

    def paint(self, window, fraction, values: dict) -> None:
        """Blend ``values`` (name -> number or full-grid array) over ``window`` by ``fraction``."""
        if window is None:
            return
        for name, value in values.items():
            volume = self.volumes[name]
            block = volume[window]
            if isinstance(value, np.ndarray):
                value = value[window]
            volume[window] = block + fraction * (value - block)

    def shape(self, low, high, inside, values: dict, oversample: int = 2):
        """Paint a shape given by its bounding box and inside test; return (window, fraction)."""
        window, fraction = coverage(self.grid, low, high, inside, oversample)
        self.paint(window, fraction, values)
        return window, fraction


@dataclass(frozen=True)
class Frame:
    """A local frame: origin ``centre`` and orthonormal axes (rows of ``axes``)."""

    centre: tuple[float, float, float]
    axes: tuple  # three unit vectors (u, v, w) in body coordinates

    def local(self, X, Y, Z):
        cx, cy, cz = self.centre
        dx, dy, dz = X - cx, Y - cy, Z - cz
        return tuple(a[0] * dx + a[1] * dy + a[2] * dz for a in self.axes)

    def to_body(self, u, v, w) -> np.ndarray:
        return np.asarray(self.centre) + u * np.asarray(self.axes[0]) + v * np.asarray(self.axes[1]) \
            + w * np.asarray(self.axes[2])

    def box(self, low, high):
        """Body-frame bounding box of the local box [low, high] (mm)."""
        corners = np.array([self.to_body(u, v, w) for u in (low[0], high[0]) for v in (low[1], high[1])
                            for w in (low[2], high[2])])
        return corners.min(axis=0), corners.max(axis=0)


def ellipsoid(centre, radii):
    """Inside test and bounding box of an axis-aligned ellipsoid."""
    cx, cy, cz = centre
    rx, ry, rz = radii

    def inside(X, Y, Z):
        return ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 + ((Z - cz) / rz) ** 2 <= 1.0

    return np.subtract(centre, radii), np.add(centre, radii), inside


def segment_distance(X, Y, Z, start, end):
    """Distance (mm) of each point from the segment start-end, and the position along it (0..1)."""
    start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
    direction = end - start
    length2 = float(direction @ direction) or 1e-9
    t = ((X - start[0]) * direction[0] + (Y - start[1]) * direction[1] + (Z - start[2]) * direction[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dx = X - (start[0] + t * direction[0])
    dy = Y - (start[1] + t * direction[1])
    dz = Z - (start[2] + t * direction[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz), t


def smooth_noise(rng, shape, sigma_voxels, scipy_ndimage) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian random field with correlation length ``sigma_voxels``."""
    field = scipy_ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_voxels,
                                          mode="wrap")
    return ((field - field.mean()) / (field.std() + 1e-6)).astype(np.float32)


def wave_field(rng, n_waves: int, wavelength_mm: tuple[float, float]):
    """A smooth random scalar field defined everywhere (sum of plane waves), unit sd.

    Analytic, so it can be sampled at sub-voxel positions (surfaces of gyri, sulci).
    """
    directions = rng.normal(size=(n_waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavenumbers = 2 * np.pi / rng.uniform(*wavelength_mm, size=n_waves)
    k = (directions * wavenumbers[:, None]).astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, size=n_waves).astype(np.float32)
    scale = np.float32(np.sqrt(2.0 / n_waves))

    def field(X, Y, Z):
        total = 0.0
        for (kx, ky, kz), phase in zip(k, phases):
            total = total + np.cos(kx * X + ky * Y + kz * Z + phase)
        return total * scale

    return field


def storage_affine(grid: Grid, translation, order: str) -> tuple[np.ndarray, tuple]:
    """The NIfTI (RAS+) affine of the grid stored in ``order``, and the axes to flip.

    ``translation`` moves the body frame into scanner coordinates (table position).
    """
    if order not in STORAGE_ORDERS:
        raise ValueError(f"storage order must be one of {STORAGE_ORDERS}, got {order!r}")
    affine = np.eye(4)
    flips = (0, 1) if order == "LPS" else ()
    for axis in range(3):
        start = grid.origin[axis] + translation[axis]
        if axis in flips:
            affine[axis, axis] = -grid.spacing[axis]
            affine[axis, 3] = start + grid.spacing[axis] * (grid.shape[axis] - 1)
        else:
            affine[axis, axis] = grid.spacing[axis]
            affine[axis, 3] = start
    return affine, flips


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, flips, dtype) -> None:
    """Write ``array`` (RAS order) flipped to its storage order as a reproducible .nii.gz.

    sform and qform both hold the affine (code 1, scanner anatomical); units mm. The gzip
    stream has mtime 0 and no file name, so equal inputs give equal bytes.
    """
    import nibabel as nib

    stored = np.flip(array, axis=flips) if flips else array
    stored = np.ascontiguousarray(stored.astype(dtype, copy=False))
    image = nib.Nifti1Image(stored, affine)
    image.header.set_data_dtype(dtype)
    image.header.set_xyzt_units("mm", "sec")
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    payload = gzip.compress(image.to_bytes(), compresslevel=_GZIP_LEVEL, mtime=0)
    write_bytes(payload, path)
