"""Tests of spinedx.imaging.patches: patches, seeded lesion-centred sampling and
sliding-window inference (exact maps from voxel-wise "models", borders, DeepMedic's
margins, MONAI networks)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spinedx.errors import InputError
from spinedx.imaging.patches import (
    extract_patch,
    sample_patch_centres,
    sample_training_patches,
    sliding_window_probability,
)


def ids(shape, channels=None):
    """Every voxel holds its own flat index (float), so any misalignment shows."""
    size = int(np.prod(shape)) * (channels or 1)
    values = np.arange(size, dtype=np.float32).reshape(((channels,) if channels else ()) + tuple(shape))
    return values


# --- patches -----------------------------------------------------------------------------


def test_extract_patch_inside_and_at_borders():
    volume = ids((5, 6, 7))
    patch = extract_patch(volume, (2, 3, 3), (3, 3, 3))
    np.testing.assert_array_equal(patch, volume[1:4, 2:5, 2:5])
    even = extract_patch(volume, (2, 3, 3), (2, 4, 2))  # start = centre - size // 2
    np.testing.assert_array_equal(even, volume[1:3, 1:5, 2:4])
    corner = extract_patch(volume, (0, 0, 0), (3, 3, 3), pad_value=-1)
    assert (corner[0] == -1).all() and (corner[:, 0] == -1).all() and (corner[:, :, 0] == -1).all()
    np.testing.assert_array_equal(corner[1:, 1:, 1:], volume[:2, :2, :2])
    outside = extract_patch(volume, (20, 0, 0), (3, 3, 3), pad_value=-1)
    assert (outside == -1).all()
    channels = extract_patch(ids((5, 6, 7), channels=2), (4, 5, 6), (3, 3, 3))
    assert channels.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(channels[:, :2, :2, :2], ids((5, 6, 7), channels=2)[:, 3:, 4:, 5:])
    assert not channels[:, 2].any()


def test_sampling_fraction_and_seed():
    lesions = np.zeros((10, 10, 10), bool)
    lesions[2, 2, 2] = True
    lesions[7, 7, 6:9] = True  # 1 + 3 lesion voxels
    head = np.zeros_like(lesions)
    head[:, :5, 5:] = True  # 250 voxels, none of them lesion
    centres = sample_patch_centres(lesions, head, 4000, lesion_fraction=0.25, seed=1)
    on_lesion = lesions[tuple(centres.T)]
    assert on_lesion.sum() == 1000 and head[tuple(centres[~on_lesion].T)].all()
    # uniform over lesion voxels: 1 : 3 between the lesions (binomial sd ~ 14)
    small = (centres[on_lesion] == (2, 2, 2)).all(axis=1).sum()
    assert abs(small - 250) < 5 * np.sqrt(1000 * 0.25 * 0.75)
    # uniform over the 250 head voxels: each about 12 of 3000 (chi-square, 249 df)
    counts = np.bincount(np.ravel_multi_index(tuple(centres[~on_lesion].T), head.shape), minlength=1000)[head.ravel()]
    chi2 = ((counts - 12) ** 2 / 12).sum()
    assert 150 < chi2 < 370
    # shuffled, not lesion patches first
    assert 0 < on_lesion[:100].sum() < 100
    np.testing.assert_array_equal(centres, sample_patch_centres(lesions, head, 4000, lesion_fraction=0.25, seed=1))
    assert not np.array_equal(centres, sample_patch_centres(lesions, head, 4000, lesion_fraction=0.25, seed=2))


def test_sampling_edge_cases():
    lesions = np.zeros((4, 4, 4), bool)
    everything = sample_patch_centres(lesions, None, 50, lesion_fraction=0.9, seed=0)
    assert everything.shape == (50, 3) and len({tuple(c) for c in everything}) > 20  # no lesion: foreground
    lesions[1, 1, 1] = True
    only = sample_patch_centres(lesions, np.zeros_like(lesions), 10, lesion_fraction=1.0, seed=0)
    assert (only == 1).all()
    with pytest.raises(InputError, match="foreground mask is empty"):
        sample_patch_centres(lesions, np.zeros_like(lesions), 10, lesion_fraction=0.5, seed=0)
    with pytest.raises(InputError, match="lesion_fraction"):
        sample_patch_centres(lesions, None, 10, lesion_fraction=1.5, seed=0)
    assert sample_patch_centres(lesions, None, 0, lesion_fraction=0.5, seed=0).shape == (0, 3)


def test_training_patches_line_up_with_labels():
    image = ids((9, 10, 11), channels=2)
    label = (image[0] % 7 == 0).astype(np.uint8)
    images, labels, centres = sample_training_patches(
        image, label, None, 20, output_size=3, input_margin=2, lesion_fraction=0.5, seed=0, pad_value=-1)
    assert images.shape == (20, 2, 7, 7, 7) and labels.shape == (20, 3, 3, 3)
    for im, lab, c in zip(images, labels, centres):
        np.testing.assert_array_equal(lab, extract_patch(label, c, 3))
        inner = im[0, 2:5, 2:5, 2:5]  # the region's centre is the label patch
        np.testing.assert_array_equal(np.where(inner >= 0, inner % 7 == 0, 0), lab)
    assert labels[:, 1, 1, 1].sum() >= 10  # half the centres on lesion voxels


# --- sliding windows ---------------------------------------------------------------------


class VoxelWise(torch.nn.Module):
    """A 'model' whose output voxel is its input voxel (channel 0): receptive field 1."""

    def forward(self, x):
        return x[:, :1] * 1.0


class Shifted(torch.nn.Module):
    """A 'model' with DeepMedic's geometry (margin 3, windows in multiples of 3) whose
    output at a voxel is the input ``margin`` voxels further along z: it reads the edge of
    its input region, so padding and region extraction are both visible."""

    input_margin, size_divisor = 3, 3

    def forward(self, region):
        m = self.input_margin
        return region[:, :1, 2 * m:, m:-m, m:-m]


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_voxelwise_model_gives_back_the_map(blend):
    volume = np.random.default_rng(0).random((2, 13, 17, 11), dtype=np.float32)
    out = sliding_window_probability(volume, VoxelWise(), window=(8, 8, 8), overlap=0.5, blend=blend, activation=None)
    assert out.shape == (13, 17, 11) and out.dtype == np.float32
    np.testing.assert_allclose(out, volume[0], rtol=1e-6, atol=0)
    tiled = sliding_window_probability(volume[:, :12, :16, :8], VoxelWise(), window=(4, 8, 8), overlap=0, blend=blend,
                                       activation=None)
    if blend == "constant":  # one window per voxel, weight 1: exact
        np.testing.assert_array_equal(tiled, volume[0, :12, :16, :8])
    else:  # v * w / w in float32
        np.testing.assert_allclose(tiled, volume[0, :12, :16, :8], rtol=1e-6, atol=0)
    probability = sliding_window_probability(volume, VoxelWise(), window=8, blend=blend)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-volume[0])), rtol=1e-6)


def test_margin_model_reads_padded_regions():
    volume = ids((10, 8, 7), channels=1)
    for window, overlap in [((6, 6, 6), 0.5), ((3, 3, 3), 0.0), ((12, 9, 9), 0.25)]:
        out = sliding_window_probability(volume, Shifted(), window=window, overlap=overlap, blend="constant",
                                         activation=None, pad_value=-5)
        expected = np.full((10, 8, 7), -5, np.float32)
        expected[:-3] = volume[0, 3:]
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0, err_msg=str(window))
    with pytest.raises(InputError, match="multiple of 3"):
        sliding_window_probability(volume, Shifted(), window=4)


def test_deepmedic_windows_equal_one_pass_over_the_volume():
    from spinedx.models.deepmedic import DeepMedic
    torch.manual_seed(0)
    model = DeepMedic(2, normal_widths=(4, 4, 4), fc_widths=(8,))
    volume = np.random.default_rng(1).standard_normal((2, 12, 12, 12)).astype(np.float32)
    # windows that tile the volume from 0 in steps of 6 share the context grid of one pass
    out = sliding_window_probability(volume, model, window=6, overlap=0, blend="constant")
    assert model.training  # the caller's mode is restored
    model.eval()
    with torch.no_grad():
        whole = torch.sigmoid(model(F.pad(torch.from_numpy(volume)[None], [model.input_margin] * 6)))[0, 0]
    np.testing.assert_allclose(out, whole.numpy(), rtol=1e-5, atol=1e-6)
    smaller = sliding_window_probability(volume[:, :5, :4, :7], model, window=6, overlap=0.5)
    assert smaller.shape == (5, 4, 7) and ((smaller > 0) & (smaller < 1)).all()


def test_monai_network_and_small_volume():
    from spinedx.models.segmentation import build_network as build
    torch.manual_seed(0)
    unet = build("unet", in_channels=2, channels=(4, 8), strides=(2,))
    volume = np.random.default_rng(2).standard_normal((2, 10, 20, 9)).astype(np.float32)
    out = sliding_window_probability(volume, unet, window=(8, 16, 8), overlap=0.5, blend="gaussian", sw_batch_size=3)
    assert out.shape == (10, 20, 9) and ((out > 0) & (out < 1)).all()
    small = sliding_window_probability(volume[:, :4, :5, :6], VoxelWise(), window=8, activation=None)
    np.testing.assert_allclose(small, volume[0, :4, :5, :6], rtol=1e-6)
    two = sliding_window_probability(volume, VoxelWise(), window=8, activation="softmax")
    np.testing.assert_allclose(two, np.ones((10, 20, 9), np.float32), rtol=1e-6)  # softmax over one channel
    with pytest.raises(InputError, match="channels, z, y, x"):
        sliding_window_probability(volume[0], VoxelWise(), window=8)
