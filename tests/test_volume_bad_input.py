"""Catalogue of bad volume input: one row per case.

Each refused case asserts InputError, that the message names the offending file or
folder, says what is wrong and how to fix it. Tolerated cases assert the documented
handling.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import EnhancedCTImageStorage, generate_uid

import volume_factories as vf
from spinedx.errors import InputError
from spinedx.readers.volume import read_mask, read_volume

LIMIT = 10**6


def _series(tmp_path: Path, name="axial_feet_first", **options) -> Path:
    native, native_affine = vf.layout(name)
    folder = tmp_path / "series"
    vf.write_series(folder, native, native_affine, **options)
    return folder


def _edit_one(folder: Path, edit, index: int = 0) -> Path:
    path = sorted(folder.iterdir())[index]
    dataset = pydicom.dcmread(path)
    edit(dataset)
    dataset.save_as(path)
    return path


# --- NIfTI ---------------------------------------------------------------------------

def nifti_4d(tmp_path):
    native, affine = vf.layout("ras_xyz")
    return vf.write_nifti(tmp_path / "bold.nii.gz", np.stack([native, native], axis=-1), affine)


def nifti_2d(tmp_path):
    image = nib.Nifti1Image(np.zeros((5, 6), dtype=np.int16), np.eye(4))
    nib.save(image, tmp_path / "slice.nii.gz")
    return tmp_path / "slice.nii.gz"


def nifti_one_slice(tmp_path):
    return vf.write_nifti(tmp_path / "slice.nii.gz", np.zeros((5, 6, 1), np.int16), np.eye(4))


def nifti_nan(tmp_path):
    native, affine = vf.layout("ras_xyz")
    native = native.copy()
    native[0, 0, 0] = np.nan
    return vf.write_nifti(tmp_path / "nan.nii.gz", native, affine)


def nifti_inf(tmp_path):
    native, affine = vf.layout("ras_xyz")
    native = native.copy()
    native[1, 2, 3] = -np.inf
    return vf.write_nifti(tmp_path / "inf.nii", native, affine)


def nifti_too_big(tmp_path):
    return vf.write_nifti(tmp_path / "big.nii.gz", np.zeros((101, 100, 100), np.uint8), np.eye(4))


def nifti_no_orientation(tmp_path):
    native, affine = vf.layout("ras_xyz")
    return vf.write_nifti(tmp_path / "analyze.nii.gz", native, affine, sform_code=0, qform_code=0)


def nifti_forms_disagree(tmp_path):
    native, affine = vf.layout("ras_xyz")
    shifted = affine.copy()
    shifted[:3, 3] += [0.0, 0.0, 5.0]
    return vf.write_nifti(tmp_path / "forms.nii.gz", native, affine, qform_affine_lps=shifted)


def nifti_truncated(tmp_path):
    native, affine = vf.layout("ras_xyz")
    path = vf.write_nifti(tmp_path / "cut.nii", native, affine)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path


def nifti_truncated_gz(tmp_path):
    native, affine = vf.layout("ras_xyz")
    path = vf.write_nifti(tmp_path / "cut.nii", native.astype(np.float64), affine)
    out = tmp_path / "cut.nii.gz"
    out.write_bytes(gzip.compress(path.read_bytes())[:-60])
    return out


def nifti_garbage(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_bytes(b"this is not a nifti file" * 30)
    return path


def nifti_complex(tmp_path):
    native, affine = vf.layout("ras_xyz")
    return vf.write_nifti(tmp_path / "complex.nii", native, affine, dtype=np.complex64)


def nifti_missing(tmp_path):
    return tmp_path / "absent.nii.gz"


def not_a_volume(tmp_path):
    path = tmp_path / "slice.png"
    path.write_bytes(b"\x89PNG")
    return path


# --- DICOM series ----------------------------------------------------------------------

def dicom_multiframe(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "NumberOfFrames", 2))
    return folder


def dicom_enhanced(tmp_path):
    folder = _series(tmp_path)

    def enhanced(dataset):
        dataset.SOPClassUID = EnhancedCTImageStorage
        dataset.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage

    _edit_one(folder, enhanced, index=2)
    return folder


def dicom_mixed_series(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "SeriesInstanceUID", generate_uid()), index=1)
    return folder


def dicom_missing_slice(tmp_path):
    return _series(tmp_path, name="sagittal", skip=(3,))


def dicom_uneven_spacing(tmp_path):
    # Slice 2 of the 4 axial slices moved 0.5 mm toward its neighbour: steps 2.0 / 3.0 / 2.5.
    native, affine = vf.layout("canonical")
    folder = tmp_path / "series"
    vf.write_series(folder, native, affine, position_jitter={1: [0, 0, -0.5]})
    return folder


def dicom_duplicate_position(tmp_path):
    native, affine = vf.layout("canonical")
    folder = tmp_path / "series"
    vf.write_series(folder, native, affine, position_jitter={1: [0, 0, -2.5]})
    return folder


def dicom_gantry_tilt(tmp_path):
    native, affine = vf.layout("canonical")
    folder = tmp_path / "series"
    vf.write_series(folder, native, affine, position_jitter={s: [0, 0.4 * s, 0] for s in range(4)})
    return folder


def dicom_mixed_orientation(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]), index=2)
    return folder


def dicom_mixed_pixel_spacing(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "PixelSpacing", [0.8, 0.5]), index=1)
    return folder


def dicom_mixed_matrix(tmp_path):
    folder = _series(tmp_path)

    def smaller(dataset):
        dataset.Rows = 4
        dataset.PixelData = dataset.PixelData[: 4 * 6 * 2]

    _edit_one(folder, smaller, index=3)
    return folder


def dicom_text_file(tmp_path):
    folder = _series(tmp_path)
    (folder / "notes.txt").write_text("scan notes")
    return folder


def dicom_without_image(tmp_path):
    folder = _series(tmp_path)

    def strip(dataset):
        for keyword in ("PixelData", "Rows", "Columns"):
            delattr(dataset, keyword)

    _edit_one(folder, strip, index=0)
    return folder


def dicom_no_position(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: delattr(d, "ImagePositionPatient"), index=2)
    return folder


def dicom_damaged_pixels(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "PixelData", d.PixelData[:10]), index=1)
    return folder


def dicom_colour(tmp_path):
    folder = _series(tmp_path)
    _edit_one(folder, lambda d: setattr(d, "SamplesPerPixel", 3), index=1)
    return folder


def dicom_subfolder(tmp_path):
    folder = _series(tmp_path)
    (folder / "localizer").mkdir()
    return folder


def dicom_empty(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


def dicom_one_file(tmp_path):
    folder = _series(tmp_path)
    for path in sorted(folder.iterdir())[1:]:
        path.unlink()
    return folder


def dicom_too_big(tmp_path):
    folder = tmp_path / "series"
    native = np.zeros((3, 300, 400), dtype=np.float32)
    vf.write_series(folder, native, np.diag([1.0, 1.0, 1.0, 1.0]))
    return folder


# (builder, what the message says, how it says to fix it)
REFUSED = [
    (nifti_4d, "holds several volumes", "split it"),
    (nifti_2d, "single slice", "whole 3D series"),
    (nifti_one_slice, "single slice", "whole 3D series"),
    (nifti_nan, "NaN, infinite", "fix the export"),
    (nifti_inf, "NaN, infinite", "fix the export"),
    (nifti_too_big, "exceeds the limit of 1000000", "data.max_volume_voxels"),
    (nifti_no_orientation, "no patient orientation", "dcm2niix"),
    (nifti_forms_disagree, "sform and qform describe different grids", "fslorient"),
    (nifti_truncated, "truncated or damaged", "export it again"),
    (nifti_truncated_gz, "truncated or damaged", "export it again"),
    (nifti_garbage, "cannot read the NIfTI header", "re-export"),
    (nifti_complex, "not one gray value per voxel", "save a scalar volume"),
    (nifti_missing, "no such file", "check the path"),
    (not_a_volume, "not a volume", "NIfTI file"),
    (dicom_multiframe, "multi-frame", "dcm2niix"),
    (dicom_enhanced, "multi-frame", "one file per slice"),
    (dicom_mixed_series, "2 different series", "each series in its own folder"),
    (dicom_missing_slice, "slices are missing", "export the complete series"),
    (dicom_uneven_spacing, "uneven slice spacing", "resample the series"),
    (dicom_duplicate_position, "at the same position", "one slice per position"),
    (dicom_gantry_tilt, "gantry tilt", "dcm2niix"),
    (dicom_mixed_orientation, "orientation (ImageOrientationPatient) differs", "keep the slices of one volume"),
    (dicom_mixed_pixel_spacing, "PixelSpacing differs", "keep one volume"),
    (dicom_mixed_matrix, "matrix size", "keep the slices of one volume"),
    (dicom_text_file, "not a DICOM file", "move every file"),
    (dicom_without_image, "without an image", "move it out"),
    (dicom_no_position, "ImagePositionPatient missing", "export the series"),
    (dicom_damaged_pixels, "cannot decode DICOM pixel data", "re-export"),
    (dicom_colour, "colour", "original grayscale series"),
    (dicom_subfolder, "sub-folder localizer", "its own folder"),
    (dicom_empty, "no DICOM files", "put the slice files"),
    (dicom_one_file, "holds one file", "whole series"),
    (dicom_too_big, "exceeds the limit of 300000", "raise the limit"),
]


@pytest.mark.parametrize("build, problem, fix", REFUSED, ids=[row[0].__name__ for row in REFUSED])
def test_refused_with_file_and_fix(tmp_path, build, problem, fix):
    path = build(tmp_path)
    limit = 300_000 if build is dicom_too_big else LIMIT
    with pytest.raises(InputError) as caught:
        read_volume(path, max_voxels=limit)
    message = str(caught.value)
    assert str(path) in message  # the folder, or a file inside it
    assert problem in message and fix in message, message


def test_messages_name_the_exact_file_or_folder(tmp_path):
    """The folder for series-level problems, the file for one bad slice."""
    folder = dicom_missing_slice(tmp_path / "a")
    with pytest.raises(InputError, match=f"^{folder}: ") as caught:
        read_volume(folder, max_voxels=LIMIT)
    # ... and the two files around the gap.
    assert caught.value.args[0].count(".dcm") == 2
    folder = dicom_damaged_pixels(tmp_path / "b")
    bad = sorted(folder.iterdir())[1]
    with pytest.raises(InputError, match=f"^{bad}: "):
        read_volume(folder, max_voxels=LIMIT)
    path = nifti_nan(tmp_path)
    with pytest.raises(InputError, match=f"^{path}: 1 voxel\\(s\\) are NaN"):
        read_volume(path, max_voxels=LIMIT)


def test_hidden_files_in_a_series_folder_are_ignored(tmp_path):
    folder = _series(tmp_path)
    (folder / ".DS_Store").write_bytes(b"\0\1\2")
    assert np.array_equal(read_volume(folder, max_voxels=LIMIT).array, vf.PHANTOM)


def test_a_small_missing_gap_is_caught_at_one_and_a_half_steps(tmp_path):
    """A gap of exactly 1.5 median steps is uneven spacing; above it, missing slices."""
    native, affine = vf.layout("canonical")
    vf.write_series(tmp_path / "a", native, affine, position_jitter={3: [0, 0, 1.25]})
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_volume(tmp_path / "a", max_voxels=LIMIT)
    vf.write_series(tmp_path / "b", native, affine, position_jitter={3: [0, 0, 1.3]})
    with pytest.raises(InputError, match="slices are missing"):
        read_volume(tmp_path / "b", max_voxels=LIMIT)


def test_masks_refuse_fractions_and_negative_labels(tmp_path):
    native, affine = vf.layout("ras_xyz")
    soft = vf.write_nifti(tmp_path / "soft.nii.gz", np.full(native.shape, 0.5, np.float32), affine)
    with pytest.raises(InputError, match=f"^{soft}: .*whole-number labels.*integer labels"):
        read_mask(soft, max_voxels=LIMIT)
    negative = vf.write_nifti(tmp_path / "neg.nii.gz", np.full(native.shape, -1, np.int16), affine)
    with pytest.raises(InputError, match=f"^{negative}: mask labels must lie in 0..65535; relabel"):
        read_mask(negative, max_voxels=LIMIT)


def test_the_voxel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    """A volume over the limit is refused from its header: its voxels are never decoded."""
    from spinedx.readers import dicom_series

    folder = _series(tmp_path)
    monkeypatch.setattr(dicom_series, "_read_pixels", lambda *a: pytest.fail("decoded"))
    with pytest.raises(InputError, match="exceeds the limit"):
        read_volume(folder, max_voxels=100)
    path = nifti_too_big(tmp_path)
    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(InputError, match="exceeds the limit"):
        read_volume(path, max_voxels=LIMIT)
