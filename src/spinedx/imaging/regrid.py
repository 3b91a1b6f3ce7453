"""An array from one voxel grid onto another grid of the same patient space.

Used to bring a probability map computed on the network's grid (resampled, cropped) back
onto a case's original grid, where its lesion labels live, so that candidates are found
and scored where the ground truth was drawn. ``affine`` matrices map ``(z, y, x, 1)`` to
world millimetres (:mod:`spinedx.readers.volume`). Each target voxel centre is looked up
at its continuous index in the source (linear interpolation by default); target voxels
beyond the source grid's outermost voxel centres take ``cval`` (0: no lesion outside the
crop). Axis-aligned grids (a diagonal index map) are interpolated separably by
:func:`scipy.ndimage.affine_transform` without a coordinate grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# An index map whose off-diagonal entries are below this is treated as axis-aligned.
DIAGONAL_TOLERANCE = 1e-9


def to_grid(array, source_affine, target_shape, target_affine, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """``array`` (on ``source_affine``'s grid) resampled onto ``target_shape`` x
    ``target_affine``, float32."""
    array = np.asarray(array, dtype=np.float32)
    # target index -> world -> source index
    index_map = np.linalg.inv(np.asarray(source_affine, dtype=np.float64)) @ np.asarray(target_affine, dtype=np.float64)
    matrix, offset = index_map[:3, :3], index_map[:3, 3]
    off_diagonal = matrix - np.diag(np.diag(matrix))
    if np.abs(off_diagonal).max() < DIAGONAL_TOLERANCE:
        matrix = np.diag(matrix)
    return ndimage.affine_transform(array, matrix, offset=offset, output_shape=tuple(int(n) for n in target_shape),
                                    order=order, mode="constant", cval=cval, prefilter=False)
