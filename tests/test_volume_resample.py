"""Resampling: hand-computed values, scipy.ndimage as an independent reference, and the
world position of voxel centres (a linear function of world position is reproduced
exactly by linear interpolation, so every new voxel must hold the value at its own
world point)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import volume_factories as vf
from spinedx.readers.volume import Volume
from spinedx.imaging.resample import resample, resampled_shape


def _row(values, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    """A (2, 2, n) volume whose every row along x holds ``values``."""
    array = np.broadcast_to(np.asarray(values, dtype=np.float32), (2, 2, len(values))).copy()
    affine = np.array([[0, 0, spacing[2], origin[0]], [0, spacing[1], 0, origin[1]],
                       [spacing[0], 0, 0, origin[2]], [0, 0, 0, 1]], dtype=float)
    return Volume(array, affine)


def test_downsampling_by_two_averages_pairs_and_moves_the_origin_half_a_voxel():
    volume = _row([0, 10, 20, 30])
    out = resample(volume, (1.0, 1.0, 2.0), kind="image")
    assert out.shape == (2, 2, 2)
    assert np.array_equal(out.array[0, 0], np.float32([5, 25]))
    # New voxel 0 is centred between old voxels 0 and 1: x = 0.5 mm; then 2 mm steps.
    assert np.array_equal(out.voxel_to_world([[0, 0, 0], [0, 0, 1]]), [[0.5, 0, 0], [2.5, 0, 0]])
    assert out.spacing == (1.0, 1.0, 2.0)


def test_upsampling_by_two_interpolates_and_holds_the_border_value():
    out = resample(_row([0, 10, 20, 30]), (1.0, 1.0, 0.5), kind="image")
    # New centres at old indices -0.25, 0.25, 0.75, ..., 3.25 (clamped at both ends).
    assert np.array_equal(out.array[1, 1], np.float32([0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30]))
    assert np.array_equal(out.voxel_to_world([0, 0, 0]), [-0.25, 0, 0])


def test_masks_take_the_nearest_label_halves_rounding_up():
    mask = _row([0, 1, 2, 3])
    mask = Volume(mask.array.astype(np.uint16), mask.affine)
    out = resample(mask, (1.0, 1.0, 0.5), kind="mask")
    # Old indices -0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25 -> 0 0 1 1 2 2 3 3.
    assert out.array.dtype == np.uint16
    assert np.array_equal(out.array[0, 1], [0, 0, 1, 1, 2, 2, 3, 3])
    # Old indices 0.5 and 2.5 (ties) -> 1 and 3.
    assert np.array_equal(resample(mask, (1.0, 1.0, 2.0), kind="mask").array[0, 0], [1, 3])


def test_grid_size_keeps_the_extent():
    assert resampled_shape((4, 5, 6), (2.5, 0.75, 0.5), (1.0, 1.0, 1.0)) == (10, 4, 3)
    assert resampled_shape((3, 3, 3), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)) == (2, 2, 2)  # 1.5 -> 2
    assert resampled_shape((3, 3, 3), (1.0, 1.0, 1.0), (100.0, 100.0, 100.0)) == (1, 1, 1)


def test_matches_scipy_map_coordinates():
    rng = np.random.default_rng(7)
    array = rng.normal(size=(7, 9, 11)).astype(np.float32) * 100
    volume = Volume(array, np.diag([3.0, 0.9, 0.7, 1.0]))
    target = (1.3, 1.25, 0.45)
    out = resample(volume, target, kind="image")
    old = np.array(volume.spacing)
    grid = np.meshgrid(*[(np.arange(n) + 0.5) * t / o - 0.5 for n, t, o in zip(out.shape, target, old)],
                       indexing="ij")
    expected = ndimage.map_coordinates(array.astype(np.float64), grid, order=1, mode="nearest")
    np.testing.assert_allclose(out.array, expected, rtol=0, atol=1e-3)  # float32 of values ~300
    assert out.array.dtype == np.float32
    labels = (array > 50).astype(np.uint16)
    near = resample(Volume(labels, volume.affine), target, kind="mask")
    positions = [np.clip(np.floor(g + 0.5), 0, n - 1).astype(int) for g, n in zip(grid, array.shape)]
    assert np.array_equal(near.array, labels[tuple(positions)])


@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (0.8, 0.3, 1.1), (5.0, 1.5, 0.25)])
def test_each_new_voxel_holds_the_value_at_its_own_world_point(target):
    """A linear ramp in world mm, sampled at the phantom's voxels, then resampled: every
    interior new voxel must hold the ramp's value at its own world position."""
    volume = Volume(vf.PHANTOM, vf.AFFINE)
    indices = np.array(np.meshgrid(*map(np.arange, volume.shape), indexing="ij")).reshape(3, -1).T
    gradient = np.array([0.5, -0.25, 0.125])  # per mm along LPS x, y, z

    def ramp(world):
        return world @ gradient

    values = ramp(volume.voxel_to_world(indices)).reshape(volume.shape).astype(np.float32)
    out = resample(Volume(values, volume.affine), target, kind="image")
    new = np.array(np.meshgrid(*map(np.arange, out.shape), indexing="ij")).reshape(3, -1).T
    # Interior: between the outermost original centres (beyond them the border value holds).
    where = volume.world_to_voxel(out.voxel_to_world(new))
    inside = np.all((where >= -1e-9) & (where <= np.array(volume.shape) - 1 + 1e-9), axis=1)
    assert inside.sum() >= 10
    np.testing.assert_allclose(out.array.reshape(-1)[inside], ramp(out.voxel_to_world(new[inside])),
                               rtol=0, atol=1e-4)


def test_a_known_point_keeps_its_world_position_in_the_mask():
    """The lesion's centroid (world mm) moves by less than the interpolation can explain."""
    volume = Volume(vf.LESION, vf.AFFINE)
    before = volume.voxel_to_world(np.mean(np.nonzero(vf.LESION), axis=1))
    out = resample(volume, (1.25, 0.25, 0.25), kind="mask")
    after = out.voxel_to_world(np.mean(np.nonzero(out.array), axis=1))
    # 1.25 mm slices halve the 2.5 mm ones exactly: the centroid stays put.
    np.testing.assert_allclose(after, before, atol=1e-9)


def test_same_spacing_is_bit_identical_and_oblique_directions_are_kept():
    angle = np.deg2rad(20)
    affine = vf.AFFINE.copy()
    affine[:3, 1] = np.array([np.cos(angle), np.sin(angle), 0]) * 0.75
    affine[:3, 2] = np.array([-np.sin(angle), np.cos(angle), 0]) * 0.5
    volume = Volume(vf.PHANTOM, affine)
    same = resample(volume, volume.spacing, kind="image")
    assert np.array_equal(same.array, vf.PHANTOM) and np.array_equal(same.affine, affine)
    out = resample(volume, (1.0, 1.0, 1.0), kind="image")
    directions = out.affine[:3, :3] / np.array(out.spacing)
    np.testing.assert_allclose(directions, affine[:3, :3] / np.array(volume.spacing), atol=1e-12)
    # Bit-identical when repeated.
    assert resample(volume, (1.0, 1.0, 1.0), kind="image").array.tobytes() == out.array.tobytes()


def test_bad_arguments():
    volume = Volume(vf.PHANTOM, vf.AFFINE)
    with pytest.raises(ValueError, match="kind"):
        resample(volume, (1, 1, 1), kind="label")
    with pytest.raises(ValueError, match="three positive"):
        resample(volume, (1, 0, 1), kind="image")
