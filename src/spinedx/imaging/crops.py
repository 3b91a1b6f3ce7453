"""Model inputs cut around a lesion in the three input modes: 2d, 2.5d and 3d.

Input: a canonical volume array ``(z, y, x)`` or channels ``(C, z, y, x)`` (for instance
the output of an intensity recipe) and the lesion's :class:`~spinedx.imaging.lesions.VoxelBox`.
Every crop is a fixed-size window centred on the box: along an axis of window size ``n``
the window starts at ``box.start + (box_extent - n) // 2`` (floor division: when the box
and window sizes differ by an odd number, the extra voxel falls after the box). Where a
window reaches beyond the volume it is filled with ``pad_value`` (the caller's choice, and
the recorded one: e.g. -1024 HU, air, before windowing; 0.0 after an intensity recipe).

- ``2d``: one image per slice of the box along the plane's normal (every slice from the
  box's first to its last, inclusive), ``(n, C, H, W)``.
- ``2.5d``: the same slices, each with its ``k`` neighbours on either side stacked as
  channels: ``(n, C * (2k + 1), H, W)``, channel ``c * (2k + 1) + j`` holding input channel
  ``c`` at slice offset ``j - k``, offsets in increasing array index along the normal
  (axial: inferior to superior; coronal: anterior to posterior; sagittal: right to left).
- ``3d``: one sub-volume ``(1, C, D, H, W)`` of ``size`` voxels (z, y, x), e.g. from
  millimetres with :func:`size_in_voxels`.

2D images are laid out as a radiologist views the plane: axial ``image[r, c] =
vol[s, y0 + r, x0 + c]`` (anterior up, patient right on the left); coronal ``vol[z0 + H - 1
- r, s, x0 + c]`` (superior up, patient right on the left); sagittal ``vol[z0 + H - 1 - r,
y0 + c, s]`` (superior up, anterior on the left). ``size`` is (H, W) = (rows, columns) of
these images. Each crop comes with a :class:`CropWindow` that puts a map of the crop's
spatial shape (a Grad-CAM map, say) back into the volume (:meth:`CropWindow.paste`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinedx.imaging.lesions import VoxelBox

# plane: (normal axis, axis of image rows, axis of image columns, rows run inferiorward).
PLANES = {"axial": (0, 1, 2, False), "coronal": (1, 0, 2, True), "sagittal": (2, 0, 1, True)}
MODES = ("2d", "2.5d", "3d")


@dataclass(frozen=True)
class CropWindow:
    """Where one crop's spatial map sits in the volume (canonical indices (z, y, x)).

    ``start``/``shape`` span the voxels the map covers: for 2d and 2.5d the one slice the
    image belongs to (extent 1 along the normal; 2.5d neighbours are inputs, not map), for
    3d the sub-volume. ``start`` may be negative and ``start + shape`` beyond the volume
    where the crop was padded.
    """

    mode: str
    plane: str | None
    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    neighbours: int = 0

    @property
    def map_shape(self) -> tuple[int, ...]:
        """Shape of a map over this crop: (H, W) for 2d/2.5d, (D, H, W) for 3d."""
        if self.plane is None:
            return self.shape
        _, rows, columns, _ = PLANES[self.plane]
        return (self.shape[rows], self.shape[columns])

    def paste(self, values, volume_shape, fill: float = 0.0) -> np.ndarray:
        """A float32 array of ``volume_shape`` holding ``values`` (shape :attr:`map_shape`)
        at this window's voxels and ``fill`` elsewhere; parts in the padding are dropped."""
        values = np.asarray(values, dtype=np.float32)
        if values.shape != self.map_shape:
            raise ValueError(f"a map over this crop has shape {self.map_shape}, not {values.shape}")
        if self.plane is not None:
            normal, rows, columns, flip = PLANES[self.plane]
            if flip:
                values = values[::-1]
            # (rows, columns) -> a (z, y, x) block with extent 1 along the normal.
            block = np.expand_dims(values, 0)
            values = np.moveaxis(block, (0, 1, 2), (normal, rows, columns))
        out = np.full(tuple(volume_shape), fill, dtype=np.float32)
        target, source = _overlap(self.start, self.shape, volume_shape)
        if target is not None:
            out[target] = values[source]
        return out

    def to_dict(self) -> dict:
        return {"mode": self.mode, "plane": self.plane, "start": list(self.start),
                "shape": list(self.shape), "neighbours": self.neighbours}


@dataclass(frozen=True, eq=False)
class Crops:
    """Model inputs, first axis one per crop, and where each came from."""

    images: np.ndarray
    windows: tuple[CropWindow, ...]


def size_in_voxels(size_mm, spacing) -> tuple[int, int, int]:
    """Voxels per axis covering ``size_mm`` at ``spacing`` (both z, y, x): rounded, halves
    up, at least one."""
    return tuple(max(1, int(np.floor(float(mm) / float(s) + 0.5))) for mm, s in zip(size_mm, spacing))


def crops_2d(array, box: VoxelBox, *, plane: str, size, pad_value: float) -> Crops:
    """One ``(C, H, W)`` image per slice of ``box`` along ``plane``'s normal."""
    return _slice_crops(array, box, plane=plane, size=size, neighbours=0, pad_value=pad_value,
                        mode="2d")


def crops_25d(array, box: VoxelBox, *, plane: str, size, neighbours: int, pad_value: float) -> Crops:
    """One ``(C * (2k + 1), H, W)`` stack per slice of ``box``: the slice and ``k`` neighbours
    on each side."""
    if int(neighbours) != neighbours or neighbours < 1:
        raise ValueError("2.5d needs at least one neighbour on each side (neighbours >= 1)")
    return _slice_crops(array, box, plane=plane, size=size, neighbours=int(neighbours),
                        pad_value=pad_value, mode="2.5d")


def crop_3d(array, box: VoxelBox, *, size, pad_value: float) -> Crops:
    """One ``(C, D, H, W)`` sub-volume of ``size`` voxels (z, y, x) centred on ``box``."""
    channels = _channels_first(array)
    size = _positive(size, 3)
    start = tuple(_centred_start(box, axis, n) for axis, n in enumerate(size))
    block = _extract(channels, start, size, pad_value)
    return Crops(block[np.newaxis], (CropWindow("3d", None, start, size),))


def crop(array, box: VoxelBox, *, mode: str, plane: str | None, size, neighbours: int,
         pad_value: float) -> Crops:
    """Dispatch on ``mode`` ("2d", "2.5d", "3d"); ``plane`` and ``neighbours`` are
    ignored where the mode has none (3d; 2d)."""
    if mode == "2d":
        return crops_2d(array, box, plane=plane, size=size, pad_value=pad_value)
    if mode == "2.5d":
        return crops_25d(array, box, plane=plane, size=size, neighbours=neighbours, pad_value=pad_value)
    if mode == "3d":
        return crop_3d(array, box, size=size, pad_value=pad_value)
    raise ValueError(f"input mode is one of {MODES}, not {mode!r}")


def _slice_crops(array, box, *, plane, size, neighbours, pad_value, mode) -> Crops:
    if plane not in PLANES:
        raise ValueError(f"plane is one of {tuple(PLANES)}, not {plane!r}")
    channels = _channels_first(array)
    height, width = _positive(size, 2)
    normal, rows, columns, flip = PLANES[plane]
    shape = [0, 0, 0]
    start = [0, 0, 0]
    shape[rows], shape[columns], shape[normal] = height, width, 2 * neighbours + 1
    start[rows] = _centred_start(box, rows, height)
    start[columns] = _centred_start(box, columns, width)
    images, windows = [], []
    for index in range(box.start[normal], box.stop[normal]):
        start[normal] = index - neighbours
        block = _extract(channels, tuple(start), tuple(shape), pad_value)
        # (C, z, y, x) -> (C, neighbour, row, column)
        block = np.moveaxis(block, (1 + normal, 1 + rows, 1 + columns), (1, 2, 3))
        if flip:
            block = block[:, :, ::-1]
        images.append(block.reshape(-1, height, width))
        window_start = list(start)
        window_start[normal] = index
        window_shape = list(shape)
        window_shape[normal] = 1
        windows.append(CropWindow(mode, plane, tuple(window_start), tuple(window_shape), neighbours))
    return Crops(np.ascontiguousarray(np.stack(images)), tuple(windows))


def _channels_first(array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3:
        return array[np.newaxis]
    if array.ndim == 4:
        return array
    raise ValueError(f"crops take a (z, y, x) or (C, z, y, x) array, not {array.ndim} dimensions")


def _positive(size, count: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in size)
    if len(values) != count or any(v < 1 for v in values) or any(int(v) != v for v in size):
        raise ValueError(f"crop size is {count} positive whole voxel counts, not {size!r}")
    return values


def _centred_start(box: VoxelBox, axis: int, size: int) -> int:
    return box.start[axis] + (box.shape[axis] - size) // 2


def _overlap(start, shape, volume_shape):
    """Index tuples (into the volume, into the window) of their common voxels, or None."""
    target, source = [], []
    for first, extent, limit in zip(start, shape, volume_shape):
        low, high = max(first, 0), min(first + extent, int(limit))
        if high <= low:
            return None, None
        target.append(slice(low, high))
        source.append(slice(low - first, high - first))
    return tuple(target), tuple(source)


def _extract(channels: np.ndarray, start, shape, pad_value) -> np.ndarray:
    """channels[:, start : start + shape] with ``pad_value`` where it leaves the volume."""
    out = np.full((channels.shape[0], *shape), pad_value, dtype=channels.dtype)
    target, source = _overlap(start, shape, channels.shape[1:])
    if target is not None:
        out[(slice(None), *source)] = channels[(slice(None), *target)]
    return out
