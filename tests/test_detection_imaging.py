"""Array operations of the detection study: the head mask and crops, maps back onto the
original grid (against scipy's map_coordinates on explicit points), a case's network
input, the volume cache and the maps file, lesion-balanced patch sampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinedx.errors import InputError
from spinedx.imaging.detection_cache import (
    VolumeCache,
    prepare_case,
    read_maps,
    write_cache,
    write_maps,
)
from spinedx.imaging.foreground import crop_slices, cropped_affine, foreground_mask
from spinedx.imaging.intensity import percentile_recipe
from spinedx.imaging.patches import sample_patch_centres
from spinedx.imaging.regrid import to_grid
from spinedx.imaging.resample import resample
from spinedx.readers.volume import Volume

# (z, y, x) spacing 2, 1, 0.5 mm, an origin and a flip of x: index -> LPS
AFFINE = np.array([[0.0, 0.0, -0.5, 30.0], [0.0, 1.0, 0.0, -20.0], [2.0, 0.0, 0.0, 5.0], [0, 0, 0, 1.0]])


def head(shape=(12, 40, 50)):
    """An ellipsoid 'head' of value 100 with a dark hole (ventricle) and two bright lesions
    in air, plus a speck of noise outside it."""
    z, y, x = np.indices(shape)
    inside = ((z - 6) / 5) ** 2 + ((y - 20) / 14) ** 2 + ((x - 25) / 18) ** 2 <= 1
    image = np.where(inside, 100.0, 0.0).astype(np.float32)
    image[5:7, 18:22, 23:27] = 0.0  # dark inside: filled into the head
    image[0, 0, 0] = 100.0  # outside: not the largest part
    labels = np.zeros(shape, np.uint16)
    labels[6, 10:12, 20:22] = 1
    labels[4:6, 25:28, 30:33] = 2
    image[labels > 0] = 300.0
    return image, labels, inside


def test_foreground_is_the_largest_part_with_holes_filled():
    image, _, inside = head()
    mask = foreground_mask(image[None] / 300.0, 0.1)
    assert mask[5:7, 18:22, 23:27].all() and not mask[0, 0, 0]
    np.testing.assert_array_equal(mask, ndimage.binary_fill_holes(inside))
    with pytest.raises(InputError, match="foreground threshold"):
        foreground_mask(np.zeros((1, 4, 4, 4)), 0.1)


def test_crop_grows_by_the_margin_in_millimetres_inside_the_volume():
    mask = np.zeros((10, 20, 30), bool)
    mask[4:6, 5:10, 10:20] = True
    slices = crop_slices(mask, (2.0, 1.0, 0.5), margin_mm=3.0)
    # 3 mm = 1.5 -> 2 slices, 3 rows, 6 columns (rounded up), clipped at the volume
    assert slices == (slice(2, 8), slice(2, 13), slice(4, 26))
    assert crop_slices(mask, (2.0, 1.0, 0.5), margin_mm=100.0) == (slice(0, 10), slice(0, 20), slice(0, 30))
    moved = cropped_affine(AFFINE, slices)
    np.testing.assert_allclose(Volume(mask[slices], moved).voxel_to_world([0, 0, 0]),
                               Volume(mask, AFFINE).voxel_to_world([2, 2, 4]))


def test_to_grid_puts_a_crop_back_and_interpolates_like_map_coordinates():
    rng = np.random.default_rng(0)
    full = rng.random((8, 12, 14)).astype(np.float32)
    slices = (slice(2, 6), slice(3, 10), slice(1, 13))
    back = to_grid(full[slices], cropped_affine(AFFINE, slices), full.shape, AFFINE)
    np.testing.assert_array_equal(back[slices], full[slices])
    outside = np.ones(full.shape, bool)
    outside[slices] = False
    assert (back[outside] == 0).all()
    # a resampled grid back onto the original: each original voxel centre looked up at its
    # continuous index in the coarse grid, as map_coordinates(order=1) does
    coarse = resample(Volume(full, AFFINE), (3.0, 1.7, 1.1), kind="image")
    back = to_grid(coarse.array, coarse.affine, full.shape, AFFINE)
    points = np.indices(full.shape).reshape(3, -1).T.astype(float)
    positions = Volume(coarse.array, coarse.affine).world_to_voxel(Volume(full, AFFINE).voxel_to_world(points))
    expected = ndimage.map_coordinates(coarse.array, positions.T, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(back.ravel(), expected, rtol=1e-5, atol=1e-6)


def test_prepare_case_resamples_normalises_and_crops_to_the_head():
    image, labels, _ = head()
    volumes = [Volume(image, AFFINE), Volume(image * 2 + 5, AFFINE)]
    recipe = percentile_recipe(0.5, 99.9, "volume")
    case = prepare_case(volumes, Volume(labels, AFFINE), sequences=["a", "b"], spacing_mm=None, recipe=recipe,
                        foreground_threshold=0.1, crop_margin_mm=2.0, source="P")
    assert case.image.dtype == np.float16 and case.image.shape[0] == 2
    assert 0 <= case.image.min() and case.image.max() <= 1
    np.testing.assert_array_equal(case.image[0], case.image[1])  # the recipe is per sequence
    assert sorted(np.unique(case.labels)) == [0, 1, 2] and (case.labels == 1).sum() == (labels == 1).sum()
    assert case.labels.shape == case.image.shape[1:] == case.foreground.shape
    assert case.labels.shape[1] < labels.shape[1]  # cropped: air around the head removed
    start = case.record["crop_start"]
    np.testing.assert_allclose(case.affine[:3, 3], Volume(image, AFFINE).voxel_to_world(start))
    assert case.record["percentiles"]["b"][1] == pytest.approx(2 * case.record["percentiles"]["a"][1] + 5, rel=1e-6)
    resampled = prepare_case(volumes, Volume(labels, AFFINE), sequences=["a", "b"], spacing_mm=(2.0, 2.0, 2.0),
                             recipe=recipe, foreground_threshold=0.1, crop_margin_mm=2.0, source="P")
    assert resampled.record["spacing_mm"] == [2.0, 2.0, 2.0]
    np.testing.assert_allclose(np.linalg.norm(resampled.affine[:3, :3], axis=0), [2.0, 2.0, 2.0])


def test_cache_and_maps_files_round_trip(tmp_path):
    image, labels, _ = head()
    recipe = percentile_recipe(0.5, 99.9, "volume")
    case = prepare_case([Volume(image, AFFINE)], Volume(labels, AFFINE), sequences=["a"], spacing_mm=None,
                        recipe=recipe, foreground_threshold=0.1, crop_margin_mm=2.0, source="P")
    write_cache(tmp_path / "v.npz", {"P1": case, "P2": case}, ["a"])
    cache = VolumeCache(tmp_path / "v.npz")
    assert cache.patients == ["P1", "P2"] and cache.sequences == ["a"]
    assert cache.image("P2").dtype == np.float32 and cache.image("P2", dtype=None).dtype == np.float16
    np.testing.assert_array_equal(cache.labels("P1"), case.labels)
    np.testing.assert_array_equal(cache.affine("P1"), case.affine)
    assert cache.spacing("P1") == pytest.approx((2.0, 1.0, 0.5))
    with pytest.raises(InputError, match="no case P3"):
        cache.labels("P3")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a detection volume cache"):
        VolumeCache(tmp_path / "bad.npz")
    maps = {"P1": np.full((2, 3, 4), 0.25, np.float32)}
    write_maps(tmp_path / "m.npz", maps, {"model": "m", "maps": {"P1": "oof"}})
    meta, loaded = read_maps(tmp_path / "m.npz")
    assert meta["model"] == "m" and loaded["P1"].dtype == np.float32 and (loaded["P1"] == 0.25).all()
    with pytest.raises(InputError, match="clashes"):
        write_maps(tmp_path / "m.npz", {"meta": maps["P1"]}, {})


def test_lesion_balanced_sampling_spreads_patches_over_lesions():
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[2:12, 2:12, 2:12] = 1  # 1000 voxels
    labels[15, 15, 15] = 7  # one voxel
    hits = labels.ravel()[np.ravel_multi_index(
        sample_patch_centres(labels, None, 4000, lesion_fraction=1.0, seed=3, balance="lesion").T, labels.shape)]
    assert abs((hits == 7).mean() - 0.5) < 0.05
    voxel = labels.ravel()[np.ravel_multi_index(
        sample_patch_centres(labels, None, 4000, lesion_fraction=1.0, seed=3).T, labels.shape)]
    assert (voxel == 7).sum() < 20  # ~4 of 4000 by voxel
    centres = sample_patch_centres(labels, labels == 0, 100, lesion_fraction=0.3, seed=1, balance="lesion")
    assert (labels[tuple(centres.T)] > 0).sum() == 30
    np.testing.assert_array_equal(
        centres, sample_patch_centres(labels, labels == 0, 100, lesion_fraction=0.3, seed=1, balance="lesion"))
    with pytest.raises(InputError, match="balance"):
        sample_patch_centres(labels, None, 4, lesion_fraction=0.5, seed=0, balance="size")
