"""Volume readers: orientation, spacing and intensities of NIfTI files and DICOM series.

The phantom (tests/volume_factories.py) is stored in seven axis layouts (RAS and LPS axis
flips, permuted axes, feet-first, sagittal and coronal acquisitions); every one must read
back to exactly the same canonical array and affine. SimpleITK (an independent reader)
checks that every voxel sits at the same world position.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import volume_factories as vf
from spinedx.readers import dicom_series, nifti
from spinedx.readers.volume import (CANONICAL_ORIENTATION, Volume, ras_to_lps, read_mask,
                                    read_volume, to_canonical)

LIMIT = 10**6


@pytest.mark.parametrize("name", vf.LAYOUTS)
def test_nifti_layouts_read_to_the_canonical_grid(tmp_path, name):
    native, native_affine = vf.layout(name)
    path = vf.write_nifti(tmp_path / "image.nii.gz", native, native_affine)
    volume = read_volume(path, max_voxels=LIMIT)
    assert np.array_equal(volume.array, vf.PHANTOM) and volume.array.dtype == np.float32
    # The sform is stored in float32: equal to the last float32 bit, not bit for bit.
    np.testing.assert_allclose(volume.affine, vf.AFFINE, rtol=0, atol=1e-5)
    assert volume.orientation == CANONICAL_ORIENTATION == "SPL"
    np.testing.assert_allclose(volume.spacing, vf.SPACING, rtol=1e-6)


@pytest.mark.parametrize("name", vf.LAYOUTS)
def test_dicom_layouts_read_to_the_canonical_grid(tmp_path, name):
    native, native_affine = vf.layout(name)
    vf.write_series(tmp_path / "series", native, native_affine)
    volume = read_volume(tmp_path / "series", max_voxels=LIMIT)
    assert np.array_equal(volume.array, vf.PHANTOM) and volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.affine, vf.AFFINE, rtol=0, atol=1e-6)
    assert volume.orientation == "SPL"
    # Slice spacing from the positions (2.5 mm), not SliceThickness (9) or
    # SpacingBetweenSlices (7) that the files also carry.
    np.testing.assert_allclose(volume.spacing, vf.SPACING, rtol=1e-9)


def test_identity_ras_nifti_by_hand(tmp_path):
    """A (2, 3, 4) RAS-identity file: canonical[z, y, x] = data[1 - x, 2 - y, z]."""
    import nibabel as nib

    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "ras.nii")
    volume = read_volume(tmp_path / "ras.nii", max_voxels=LIMIT)
    expected = np.array([[[data[1 - x, 2 - y, z] for x in range(2)] for y in range(3)]
                         for z in range(4)], dtype=np.float32)
    assert volume.shape == (4, 3, 2)
    assert np.array_equal(volume.array, expected)
    # (z, y, x) -> file (1 - x, 2 - y, z) in RAS mm -> LPS (x - 1, y - 2, z).
    assert np.array_equal(volume.affine, [[0, 0, 1, -1], [0, 1, 0, -2], [1, 0, 0, 0], [0, 0, 0, 1]])
    assert volume.orientation == "SPL" and volume.spacing == (1.0, 1.0, 1.0)


def test_voxel_world_helpers_on_a_known_point():
    volume = Volume(vf.PHANTOM, vf.AFFINE)
    # Voxel (z=2, y=3, x=4): x = -40 + 4 * 0.5, y = -30.5 + 3 * 0.75, z = 100.25 + 2 * 2.5.
    assert np.array_equal(volume.voxel_to_world([2, 3, 4]), [-38.0, -28.25, 105.25])
    np.testing.assert_allclose(volume.world_to_voxel([[-38.0, -28.25, 105.25]]), [[2, 3, 4]], atol=1e-12)
    assert np.array_equal(ras_to_lps([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    assert repr(volume) == "Volume(shape=(4, 5, 6), dtype=float32, spacing_mm=(2.5, 0.75, 0.5), orientation='SPL')"


def test_reorienting_moves_voxels_without_changing_their_world_position():
    native, native_affine = vf.layout("permuted_flipped")
    before = Volume(native, native_affine)
    assert before.orientation == "AIL"
    after = to_canonical(native, native_affine)
    index = np.array(np.nonzero(native == vf.PHANTOM[3, 1, 2])).T[0]
    assert np.array_equal(before.voxel_to_world(index), after.voxel_to_world([3, 1, 2]))


def _sitk_value_at(image: sitk.Image, array: np.ndarray, point) -> float:
    x, y, z = image.TransformPhysicalPointToIndex(tuple(float(v) for v in point))
    return float(array[z, y, x])


@pytest.mark.parametrize("name", ["ras_xyz", "sagittal", "oblique"])
def test_every_voxel_sits_where_simpleitk_puts_it(tmp_path, name):
    """SimpleITK (LPS world, GDCM slice sorting) as an independent reader."""
    if name == "oblique":  # rotated 30 degrees about the patient's z axis
        angle = np.deg2rad(30)
        rotation = np.array([[0, -np.sin(angle), np.cos(angle)],
                             [0, np.cos(angle), np.sin(angle)], [1, 0, 0]])
        native, native_affine = vf.PHANTOM, vf.AFFINE.copy()
        native_affine[:3, :3] = rotation * np.array(vf.SPACING)
    else:
        native, native_affine = vf.layout(name)
    vf.write_series(tmp_path / "series", native, native_affine)
    vf.write_nifti(tmp_path / "image.nii.gz", native, native_affine)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    for source, reference in ((tmp_path / "series", reader.Execute()),
                              (tmp_path / "image.nii.gz", sitk.ReadImage(str(tmp_path / "image.nii.gz")))):
        volume = read_volume(source, max_voxels=LIMIT)
        reference_array = sitk.GetArrayFromImage(reference)
        indices = np.array(np.meshgrid(*map(np.arange, volume.shape), indexing="ij")).reshape(3, -1).T
        worlds = volume.voxel_to_world(indices)
        found = [_sitk_value_at(reference, reference_array, w) for w in worlds]
        assert np.array_equal(found, volume.array[tuple(indices.T)]), source
        if name == "oblique":  # nearest canonical axes are the stored ones: kept, still oblique
            np.testing.assert_allclose(volume.affine, native_affine, atol=1e-5)


def test_nifti_scaling_applies_scl_slope_and_inter(tmp_path):
    native, native_affine = vf.layout("lps_xyz")
    stored = ((native + 1024) / 2).astype(np.int16)  # HU = 2 * stored - 1024
    path = vf.write_nifti(tmp_path / "scaled.nii", stored, native_affine, slope=2.0, inter=-1024.0)
    assert np.array_equal(read_volume(path, max_voxels=LIMIT).array, vf.PHANTOM)


def test_dicom_rescale_gives_hounsfield_units(tmp_path):
    native, native_affine = vf.layout("axial_feet_first")
    vf.write_series(tmp_path / "series", native, native_affine, slope=2.0, intercept=-2000.0)
    assert np.array_equal(read_volume(tmp_path / "series", max_voxels=LIMIT).array, vf.PHANTOM)


@pytest.mark.parametrize("sform_code, qform_code", [(1, 0), (0, 1), (2, 1)])
def test_nifti_geometry_from_whichever_form_is_set(tmp_path, sform_code, qform_code):
    native, native_affine = vf.layout("ras_xyz")
    path = vf.write_nifti(tmp_path / "x.nii.gz", native, native_affine,
                          sform_code=sform_code, qform_code=qform_code)
    volume = read_volume(path, max_voxels=LIMIT)
    assert np.array_equal(volume.array, vf.PHANTOM)
    np.testing.assert_allclose(volume.affine, vf.AFFINE, atol=1e-5)


def test_a_4d_file_of_one_volume_is_read_as_3d(tmp_path):
    native, native_affine = vf.layout("ras_xyz")
    path = vf.write_nifti(tmp_path / "x.nii.gz", native[..., np.newaxis], native_affine)
    assert np.array_equal(read_volume(path, max_voxels=LIMIT).array, vf.PHANTOM)


def test_written_nifti_reads_back_identically(tmp_path):
    volume = Volume(vf.PHANTOM, vf.AFFINE)
    path = nifti.write_nifti(volume, tmp_path / "out" / "copy.nii.gz")
    assert not list((tmp_path / "out").glob("*.partial*"))
    again = read_volume(path, max_voxels=LIMIT)
    assert np.array_equal(again.array, vf.PHANTOM)
    np.testing.assert_allclose(again.affine, vf.AFFINE, atol=1e-5)
    assert sitk.ReadImage(str(path)).GetSpacing() == pytest.approx(vf.SPACING[::-1])


def test_masks_read_as_labels_on_the_image_grid(tmp_path):
    native, native_affine = vf.layout("ras_xyz")
    lesion_native = vf.LESION[:, ::-1, ::-1].transpose(2, 1, 0)
    path = vf.write_nifti(tmp_path / "mask.nii.gz", lesion_native, native_affine, dtype=np.uint8)
    mask = read_mask(path, max_voxels=LIMIT)
    assert mask.array.dtype == np.uint16 and np.array_equal(mask.array, vf.LESION)


def test_readers_share_one_interface(tmp_path):
    for module in (nifti, dicom_series):
        reader = module.READER
        assert callable(reader.accepts) and callable(reader.read) and reader.name
    vf.write_nifti(tmp_path / "a.nii", *vf.layout("canonical"))
    assert nifti.READER.accepts(tmp_path / "a.nii") and not dicom_series.READER.accepts(tmp_path / "a.nii")
    assert dicom_series.READER.accepts(tmp_path) and not nifti.READER.accepts(tmp_path)
