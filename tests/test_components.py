"""Tests of spinedx.imaging.components: candidates from probability maps, lesions from masks.

Expected values are computed by hand in the comments (voxel counts, centroids, volumes).
"""

import math
import subprocess
import sys

import numpy as np
import pytest

from spinedx.errors import InputError
from spinedx.imaging.components import (
    Candidate,
    equivalent_diameter_mm,
    extract_candidates,
    index_to_world,
    lesions_from_mask,
)

SPACING = (2.0, 1.0, 0.5)  # z, y, x in mm: one voxel is 1 mm^3


def two_blobs() -> np.ndarray:
    probability = np.zeros((6, 7, 8), dtype=np.float32)
    # Blob 1: a 2x2x2 cube at z 1-2, y 1-2, x 1-2, values 0.5 except one 0.875 at (2, 2, 1).
    probability[1:3, 1:3, 1:3] = 0.5
    probability[2, 2, 1] = 0.875
    # Blob 2: a row of 3 voxels at z 4, y 5, x 4-6 with 0.375, 0.75, 0.375.
    probability[4, 5, 4:7] = [0.375, 0.75, 0.375]
    probability[0, 6, 7] = 0.3  # equal to the threshold: background (strictly above is foreground)
    return probability


def test_candidate_properties_by_hand():
    found = extract_candidates(two_blobs(), SPACING, threshold=0.3, origin=(10.0, 20.0, 30.0))
    assert len(found) == 2
    first, second = found.regions
    assert isinstance(first, Candidate)
    # raster order: the cube's first voxel (1, 1, 1) comes before the row's (4, 5, 4)
    assert (first.label, second.label) == (1, 2)
    assert first.size_voxels == 8 and second.size_voxels == 3
    assert first.volume_mm3 == 8.0 and second.volume_mm3 == 3.0
    assert first.centroid_voxel == (1.5, 1.5, 1.5)
    assert second.centroid_voxel == (4.0, 5.0, 5.0)
    # world = origin + index * spacing
    assert first.centroid_world == (13.0, 21.5, 30.75)
    assert second.centroid_world == (18.0, 25.0, 32.5)
    assert first.bbox == (1, 1, 1, 3, 3, 3) and second.bbox == (4, 5, 4, 5, 6, 7)
    assert first.score == 0.875 and second.score == 0.75
    assert first.peak_voxel == (2, 2, 1) and second.peak_voxel == (4, 5, 5)
    # labels array: exactly the foreground, numbered like regions
    assert (found.labels == 1).sum() == 8 and (found.labels == 2).sum() == 3
    assert found.labels[0, 6, 7] == 0
    assert found.labels[first.slices].min() == 1
    # sphere of 8 mm^3: d = (6 * 8 / pi) ** (1/3)
    assert first.equivalent_diameter_mm == pytest.approx((48 / math.pi) ** (1 / 3), rel=1e-12)


def test_mean_score():
    found = extract_candidates(two_blobs(), SPACING, threshold=0.3, score="mean")
    # cube: (7 * 0.5 + 0.875) / 8; row: (0.375 + 0.75 + 0.375) / 3
    assert found.regions[0].score == pytest.approx((7 * 0.5 + 0.875) / 8, abs=1e-15)
    assert found.regions[1].score == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize(("offset", "expected"), [
    ((1, 0, 0), {6: 1, 18: 1, 26: 1}),  # shared face
    ((1, 1, 0), {6: 2, 18: 1, 26: 1}),  # shared edge
    ((1, 1, 1), {6: 2, 18: 2, 26: 1}),  # shared corner
])
def test_connectivity(offset, expected):
    probability = np.zeros((4, 4, 4))
    probability[1, 1, 1] = 1
    probability[tuple(1 + np.array(offset))] = 1
    for connectivity, n in expected.items():
        assert len(extract_candidates(probability, (1, 1, 1), threshold=0.5, connectivity=connectivity)) == n


def test_min_size_filter_relabels():
    probability = two_blobs()
    kept = extract_candidates(probability, SPACING, threshold=0.3, min_size_voxels=4)
    assert len(kept) == 1 and kept.regions[0].size_voxels == 8
    assert set(np.unique(kept.labels)) == {0, 1}
    # now the small one first: remove the cube, the row becomes label 1
    probability[1:3, 1:3, 1:3] = 0
    probability[0, 0, 0] = 0.9  # a single voxel before the row in raster order
    kept = extract_candidates(probability, SPACING, threshold=0.3, min_size_voxels=2)
    assert [r.size_voxels for r in kept.regions] == [3]
    assert kept.regions[0].label == 1 and kept.labels[4, 5, 5] == 1 and kept.labels[0, 0, 0] == 0
    # by volume: 3 voxels of 2 mm^3 each pass 6 mm^3, not 6.5
    assert len(extract_candidates(probability, (2, 1, 1), threshold=0.3, min_volume_mm3=6.0, min_size_voxels=2)) == 1
    assert len(extract_candidates(probability, (2, 1, 1), threshold=0.3, min_volume_mm3=6.5, min_size_voxels=2)) == 0


def test_empty_map():
    found = extract_candidates(np.zeros((3, 3, 3)), (1, 1, 1), threshold=0.5)
    assert len(found) == 0 and found.scores.size == 0 and not found.labels.any()
    assert found.to_frame().empty


def test_lesions_binary_versus_instances():
    mask = np.zeros((5, 5, 9), dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[1:3, 1:3, 3:5] = 2  # touches lesion 1 (face): one component as binary
    mask[4, 4, 8] = 2  # far away, same instance value 2
    binary = lesions_from_mask(mask, (1, 1, 1))
    assert [r.size_voxels for r in binary.regions] == [16, 1]
    assert binary.source_values is None
    instances = lesions_from_mask(mask, (1, 1, 1), instances=True)
    assert [r.size_voxels for r in instances.regions] == [8, 9]
    assert instances.source_values == (1, 2)
    # the disconnected instance's centroid is the mean of all its voxels: x = (3*4 + 4*4 + 8) / 9
    assert instances.regions[1].centroid_voxel[2] == pytest.approx((12 + 16 + 8) / 9)
    assert instances.regions[1].bbox == (1, 1, 3, 5, 5, 9)
    assert np.isnan(instances.scores).all()


def test_equivalent_diameter_of_a_sphere():
    radius = 3.7
    assert equivalent_diameter_mm(4 / 3 * math.pi * radius**3) == pytest.approx(2 * radius, rel=1e-12)
    np.testing.assert_allclose(equivalent_diameter_mm([math.pi / 6, 0.0]), [1.0, 0.0])


def test_index_to_world_with_direction():
    # axis z runs along world -z, y and x are swapped (a transposed, flipped grid)
    direction = np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float)
    world = index_to_world([[1, 2, 3]], spacing=(2, 3, 4), origin=(100, 0, 0), direction=direction)
    np.testing.assert_allclose(world, [[98, 12, 6]])
    mask = np.zeros((3, 3, 4))
    mask[1, 2, 3] = 1
    lesion = lesions_from_mask(mask, (2, 3, 4), origin=(100, 0, 0), direction=direction).regions[0]
    assert lesion.centroid_world == (98.0, 12.0, 6.0)


def test_world_from_an_affine_like_a_volume_reader():
    # a Volume's affine maps (z, y, x, 1) to LPS (x, y, z): array x -> world x, etc.
    affine = np.array([[0, 0, 0.5, -10], [0, 1.0, 0, 20], [2.0, 0, 0, 30], [0, 0, 0, 1]])
    found = extract_candidates(two_blobs(), SPACING, threshold=0.3, affine=affine)
    # cube centroid (1.5, 1.5, 1.5): x = -10 + 0.75, y = 20 + 1.5, z = 30 + 3
    assert found.regions[0].centroid_world == (-9.25, 21.5, 33.0)
    mask = (two_blobs() > 0.3).astype(np.uint16)
    assert lesions_from_mask(mask, SPACING, affine=affine).regions[1].centroid_world == (-7.5, 25.0, 38.0)
    with pytest.raises(InputError, match="disagrees"):
        extract_candidates(two_blobs(), (1, 1, 1), threshold=0.3, affine=affine)
    with pytest.raises(InputError, match="not both"):
        extract_candidates(two_blobs(), SPACING, threshold=0.3, affine=affine, origin=(1, 0, 0))


def test_a_reader_volume_plugs_in():
    volume_module = pytest.importorskip("spinedx.readers.volume")  # merged from the readers' branch
    affine = np.array([[0, 0, -0.5, 40], [0, 1.0, 0, -20], [2.0, 0, 0, 7], [0, 0, 0, 1]])
    volume = volume_module.Volume(two_blobs(), affine)
    found = extract_candidates(volume.array, volume.spacing, threshold=0.3, affine=volume.affine)
    for region in found.regions:
        np.testing.assert_allclose(region.centroid_world, volume.voxel_to_world(region.centroid_voxel), rtol=1e-12)
    assert found.regions[0].volume_mm3 == 8.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: extract_candidates(np.zeros((3, 3)), (1, 1, 1), threshold=0.5), "3D array"),
    (lambda: extract_candidates(np.full((2, 2, 2), np.nan), (1, 1, 1), threshold=0.5), "NaN"),
    (lambda: extract_candidates(np.zeros((2, 2, 2)), (1, 0, 1), threshold=0.5), "positive voxel sizes"),
    (lambda: extract_candidates(np.zeros((2, 2, 2)), (1, 1), threshold=0.5), "three finite numbers"),
    (lambda: extract_candidates(np.zeros((2, 2, 2)), (1, 1, 1), threshold=0.5, connectivity=8), "connectivity"),
    (lambda: extract_candidates(np.zeros((2, 2, 2)), (1, 1, 1), threshold=0.5, score="median"), "score"),
    (lambda: extract_candidates(np.zeros((2, 2, 2)), (1, 1, 1), threshold=0.5, min_size_voxels=0), "min_size"),
    (lambda: lesions_from_mask(np.full((2, 2, 2), 0.5), (1, 1, 1)), "integer labels"),
    (lambda: lesions_from_mask(-np.ones((2, 2, 2), int), (1, 1, 1), instances=True), "negative"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_light_imports():
    # evaluation jobs import these without torch, MONAI or the slow optional libraries
    heavy = ["torch", "monai", "rpy2", "statsmodels", "sklearn", "matplotlib"]
    code = ("import sys; import spinedx.imaging.components, spinedx.stats.froc, spinedx.imaging.patches; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
