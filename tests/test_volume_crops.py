"""Lesion boxes and the 2d / 2.5d / 3d crops, checked by array equality against slices of
the phantom written out by hand; crop windows put maps back in place."""

from __future__ import annotations

import json

import numpy as np
import pytest

import volume_factories as vf
from spinedx.errors import InputError
from spinedx.imaging import crops, intensity, lesions
from spinedx.imaging.lesions import VoxelBox
from spinedx.readers import nifti
from spinedx.readers.volume import Volume, read_mask, read_volume

P = vf.PHANTOM  # (4, 5, 6) z, y, x
BOX = VoxelBox((1, 2, 1), (3, 4, 4))  # the phantom's lesion
PAD = -1024.0


# --- lesions ----------------------------------------------------------------------------

def test_lesion_box_and_centroid_from_the_mask():
    assert lesions.lesion_box(vf.LESION, source="m") == BOX
    assert np.array_equal(lesions.lesion_centroid(vf.LESION, source="m"), [1.5, 2.5, 2.0])
    volume = Volume(P, vf.AFFINE)
    # Centroid (1.5, 2.5, 2.0) -> x -40 + 2 * 0.5, y -30.5 + 2.5 * 0.75, z 100.25 + 1.5 * 2.5.
    assert np.array_equal(volume.voxel_to_world(lesions.lesion_centroid(vf.LESION, source="m")),
                          [-39.0, -28.625, 104.0])
    assert BOX.shape == (2, 2, 3) and BOX.centre == (1.5, 2.5, 2.0)
    assert np.array_equal(lesions.mask_from_box(P.shape, BOX), vf.LESION)


def test_labels_are_separate_lesions():
    mask = vf.LESION.copy()
    mask[3, 0, 5] = 2
    assert lesions.mask_labels(mask) == [1, 2]
    assert lesions.lesion_box(mask, label=1, source="m") == BOX
    assert lesions.lesion_box(mask, label=2, source="m") == VoxelBox((3, 0, 5), (4, 1, 6))
    assert lesions.lesion_box(mask, source="m") == VoxelBox((1, 0, 1), (4, 4, 6))
    with pytest.raises(InputError, match="^m.nii: the mask has no voxels of label 3; draw the lesion"):
        lesions.lesion_box(mask, label=3, source="m.nii")


def test_boxes_from_csv_rows_in_voxels_and_millimetres():
    volume = Volume(P, vf.AFFINE)
    voxel = {"z_first": 1, "z_last": 2, "y_first": 2, "y_last": 3, "x_first": 1, "x_last": 3}
    assert lesions.box_from_row(voxel, volume, units="voxel", source="boxes.csv") == BOX
    # Voxel centres x = -39.5..-38.5, y = -29.0..-28.25, z = 102.75..105.25 (LPS mm).
    lps = {"x_min": -39.6, "x_max": -38.5, "y_min": -29.0, "y_max": -28.0, "z_min": 102.0, "z_max": 106.0}
    assert lesions.box_from_row(lps, volume, units="mm_lps", source="boxes.csv") == BOX
    ras = {"x_min": 38.5, "x_max": 39.6, "y_min": 28.0, "y_max": 29.0, "z_min": 102.0, "z_max": 106.0}
    assert lesions.box_from_row(ras, volume, units="mm_ras", source="boxes.csv") == BOX
    # A world box reaching past the volume is clipped to it.
    wide = dict(lps, x_min=-100.0, z_max=500.0)
    assert lesions.box_from_row(wide, volume, units="mm_lps", source="b") == VoxelBox((1, 2, 0), (4, 4, 4))


@pytest.mark.parametrize("row, units, problem", [
    ({"z_first": 1}, "voxel", "lacks column\\(s\\) z_last"),
    ({"z_first": 1, "z_last": 2, "y_first": 2, "y_last": 3, "x_first": 1, "x_last": 6}, "voxel",
     "reaches outside the volume"),
    ({"z_first": 2, "z_last": 1, "y_first": 2, "y_last": 3, "x_first": 1, "x_last": 3}, "voxel", "swap them"),
    ({"z_first": 1.5, "z_last": 2, "y_first": 2, "y_last": 3, "x_first": 1, "x_last": 3}, "voxel",
     "whole slice/row/column"),
    ({"x_min": 0, "x_max": 1, "y_min": 0, "y_max": 1, "z_min": 0, "z_max": 1}, "mm_lps", "holds no voxel centre"),
    ({"x_min": "", "x_max": 1, "y_min": 0, "y_max": 1, "z_min": 0, "z_max": 1}, "mm_lps", "must be numbers"),
    ({"x_min": float("nan"), "x_max": 1, "y_min": 0, "y_max": 1, "z_min": 0, "z_max": 1}, "mm_lps", "fill in"),
])
def test_bad_box_rows(row, units, problem):
    with pytest.raises(InputError, match=f"^boxes.csv row 3: .*{problem}"):
        lesions.box_from_row(row, Volume(P, vf.AFFINE), units=units, source="boxes.csv row 3")


def test_mask_alignment_is_checked():
    image = Volume(P, vf.AFFINE)
    float32_noise = vf.AFFINE.copy()
    float32_noise[:3] += 1e-5  # two tools' float32 affines of the same grid
    lesions.check_aligned(image, Volume(vf.LESION, float32_noise), source="mask.nii.gz")
    shifted = vf.AFFINE.copy()
    shifted[2, 3] += 1.0
    with pytest.raises(InputError, match="^mask.nii.gz: the mask lies 1 mm away .*resample it"):
        lesions.check_aligned(image, Volume(vf.LESION, shifted), source="mask.nii.gz")
    with pytest.raises(InputError, match=r"^mask.nii.gz: mask grid \(4, 5, 5\) differs .*image's grid"):
        lesions.check_aligned(image, Volume(vf.LESION[..., :5], vf.AFFINE), source="mask.nii.gz")


# --- crops ------------------------------------------------------------------------------

def test_2d_axial_slices_through_the_lesion():
    made = crops.crops_2d(P, BOX, plane="axial", size=(3, 4), pad_value=PAD)
    # Rows y: box 2..3, window of 3 starts at 2 + (2 - 3) // 2 = 1; columns x: 1 + (3 - 4) // 2 = 0.
    assert made.images.shape == (2, 1, 3, 4)
    assert np.array_equal(made.images[0, 0], P[1, 1:4, 0:4])
    assert np.array_equal(made.images[1, 0], P[2, 1:4, 0:4])
    assert [w.start for w in made.windows] == [(1, 1, 0), (2, 1, 0)]
    assert all(w.shape == (1, 3, 4) and w.map_shape == (3, 4) for w in made.windows)


def test_2d_sagittal_images_have_superior_up_and_anterior_left():
    made = crops.crops_2d(P, BOX, plane="sagittal", size=(3, 4), pad_value=PAD)
    # One image per x in 1..3; rows z: 1 + (2 - 3) // 2 = 0 -> z 0..2 shown 2, 1, 0;
    # columns y: 2 + (2 - 4) // 2 = 1 -> y 1..4.
    assert made.images.shape == (3, 1, 3, 4)
    for n, x in enumerate((1, 2, 3)):
        expected = np.array([[P[2 - r, 1 + c, x] for c in range(4)] for r in range(3)])
        assert np.array_equal(made.images[n, 0], expected)
    assert made.windows[0] == crops.CropWindow("2d", "sagittal", (0, 1, 1), (3, 4, 1), 0)


def test_2d_coronal_padded_beyond_the_volume():
    made = crops.crops_2d(P, BOX, plane="coronal", size=(6, 8), pad_value=PAD)
    # Rows z: 1 + (2 - 6) // 2 = -1 -> z -1..4, columns x: 1 + (3 - 8) // 2 = -2 -> x -2..5.
    expected = np.full((2, 6, 8), PAD, dtype=np.float32)
    for n, y in enumerate((2, 3)):
        for r in range(6):
            for c in range(8):
                z, x = 4 - r, c - 2
                if 0 <= z < 4 and 0 <= x < 6:
                    expected[n, r, c] = P[z, y, x]
    assert np.array_equal(made.images[:, 0], expected)


def test_25d_stacks_neighbours_as_channels_padding_at_the_border():
    made = crops.crops_25d(P, BOX, plane="axial", size=(2, 3), neighbours=2, pad_value=PAD)
    # Rows y: 2 + 0 = 2..3; columns x: 1 + 0 = 1..3; slices 1 and 2, with z -1..3 and 0..4.
    assert made.images.shape == (2, 5, 2, 3)
    pad = np.full((2, 3), PAD, dtype=np.float32)
    assert np.array_equal(made.images[0], np.stack([pad, P[0, 2:4, 1:4], P[1, 2:4, 1:4],
                                                    P[2, 2:4, 1:4], P[3, 2:4, 1:4]]))
    assert np.array_equal(made.images[1], np.stack([P[0, 2:4, 1:4], P[1, 2:4, 1:4], P[2, 2:4, 1:4],
                                                    P[3, 2:4, 1:4], pad]))
    assert made.windows[1].start == (2, 2, 1) and made.windows[1].neighbours == 2


def test_25d_of_several_input_channels_is_channel_major():
    stacked = np.stack([P, -P])
    made = crops.crops_25d(stacked, BOX, plane="sagittal", size=(2, 2), neighbours=1, pad_value=0.0)
    assert made.images.shape == (3, 6, 2, 2)
    first = made.images[0]  # x = 1, neighbours x = 0, 1, 2; rows z 2, 1; columns y 2, 3
    for c, sign in enumerate((1, -1)):
        for j, x in enumerate((0, 1, 2)):
            assert np.array_equal(first[c * 3 + j], sign * P[[2, 1]][:, 2:4, x])


def test_3d_sub_volume_centred_and_padded():
    made = crops.crop_3d(P, BOX, size=(3, 3, 3), pad_value=PAD)
    # z 1 + (2 - 3) // 2 = 0, y 2 + (2 - 3) // 2 = 1, x 1 + 0 = 1.
    assert made.images.shape == (1, 1, 3, 3, 3)
    assert np.array_equal(made.images[0, 0], P[0:3, 1:4, 1:4])
    big = crops.crop_3d(P, BOX, size=(6, 7, 8), pad_value=PAD)
    # starts z -1, y -1, x -2: one slice/row before and after, two columns before.
    expected = np.pad(P, ((1, 1), (1, 1), (2, 0)), constant_values=PAD)
    assert np.array_equal(big.images[0, 0], expected)
    assert big.windows[0] == crops.CropWindow("3d", None, (-1, -1, -2), (6, 7, 8), 0)


def test_windows_put_maps_back_where_the_crop_came_from():
    for mode, plane in (("2d", "axial"), ("2d", "sagittal"), ("2.5d", "coronal"), ("3d", None)):
        made = crops.crop(P, BOX, mode=mode, plane=plane, size=(3, 4) if plane else (3, 3, 5),
                          neighbours=1, pad_value=PAD)
        for image, window in zip(made.images, made.windows):
            centre = image[0] if mode == "3d" else image[image.shape[0] // 2]
            back = window.paste(centre, P.shape, fill=np.nan)
            covered = ~np.isnan(back)
            assert covered.any()
            assert np.array_equal(back[covered], P[covered])  # every value back at its voxel
            assert json.loads(json.dumps(window.to_dict())) == window.to_dict()
    ones = crops.crops_2d(P, BOX, plane="coronal", size=(2, 2), pad_value=PAD).windows[0]
    back = ones.paste(np.ones((2, 2)), P.shape)
    expected = np.zeros(P.shape, dtype=np.float32)
    expected[1:3, 2, 1:3] = 1
    assert np.array_equal(back, expected)


def test_size_in_millimetres():
    assert crops.size_in_voxels((30, 30, 30), vf.SPACING) == (12, 40, 60)
    assert crops.size_in_voxels((1.25, 0.375, 0.1), vf.SPACING) == (1, 1, 1)  # halves up; at least 1


def test_bad_crop_arguments():
    with pytest.raises(ValueError, match="plane"):
        crops.crops_2d(P, BOX, plane="oblique", size=(2, 2), pad_value=0)
    with pytest.raises(ValueError, match="neighbours >= 1"):
        crops.crops_25d(P, BOX, plane="axial", size=(2, 2), neighbours=0, pad_value=0)
    with pytest.raises(ValueError, match="positive whole voxel counts"):
        crops.crop_3d(P, BOX, size=(2, 2.5, 2), pad_value=0)
    with pytest.raises(ValueError, match="input mode"):
        crops.crop(P, BOX, mode="4d", plane=None, size=(2, 2, 2), neighbours=0, pad_value=0)


# --- the whole path on files ------------------------------------------------------------

def test_dicom_image_and_nifti_mask_to_windowed_crops(tmp_path):
    """A DICOM series (sagittal acquisition, shuffled names) with a RAS NIfTI mask of the
    lesion: aligned, boxed, windowed and cropped to exactly the hand-written values."""
    native, native_affine = vf.layout("sagittal")
    vf.write_series(tmp_path / "P01" / "CT", native, native_affine)
    mask_native = vf.LESION[:, ::-1, ::-1].transpose(2, 1, 0)
    vf.write_nifti(tmp_path / "P01" / "mask.nii.gz", mask_native, vf.layout("ras_xyz")[1], dtype=np.uint8)
    image = read_volume(tmp_path / "P01" / "CT", max_voxels=10**6)
    mask = read_mask(tmp_path / "P01" / "mask.nii.gz", max_voxels=10**6)
    lesions.check_aligned(image, mask, source=tmp_path / "P01" / "mask.nii.gz")
    box = lesions.lesion_box(mask.array, source="mask")
    assert box == BOX and image.spacing == pytest.approx(vf.SPACING, rel=1e-9)
    recipe = intensity.ct_window_recipe(["bone"])
    windowed = intensity.apply_recipe(image.array, recipe)
    made = crops.crops_25d(windowed, box, plane="axial", size=(2, 3), neighbours=1, pad_value=0.0)
    bone = np.clip((P + 500) / 1800, 0, 1).astype(np.float32)  # W1800 L400 by hand
    assert np.array_equal(made.images[0], bone[0:3, 2:4, 1:4])
    assert np.array_equal(made.images[1], bone[1:4, 2:4, 1:4])
    # The same study as NIfTI gives the same crops.
    nifti.write_nifti(image, tmp_path / "P01" / "image.nii.gz")
    again = read_volume(tmp_path / "P01" / "image.nii.gz", max_voxels=10**6)
    same = crops.crops_25d(intensity.apply_recipe(again.array, recipe), box, plane="axial",
                           size=(2, 3), neighbours=1, pad_value=0.0)
    assert same.images.tobytes() == made.images.tobytes()
