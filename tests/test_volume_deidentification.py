"""No DICOM header value beyond geometry and voxels leaves the series reader.

A series carries identifying values (patient name, ID, birth date, address, institution,
physicians, accession number, descriptions). None may appear in what the reader returns
(its repr or fields), in what the volume library derives or writes (crops, windows, a
NIfTI file), nor in any error message or printed traceback, and the reader must not
even parse identifying elements into memory (an allow-list of attributes).
"""

from __future__ import annotations

import gzip
import logging
import traceback
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import volume_factories as vf
from spinedx.errors import InputError
from spinedx.imaging import crops, intensity, lesions, resample
from spinedx.readers import dicom_series, nifti
from spinedx.readers.volume import read_volume

LIMIT = 10**6
SERIES_UID = generate_uid()
SECRETS = [*vf.IDENTIFYING.values(), SERIES_UID, "Quincy", "8675309", "19470203"]


def _identifying_series(folder, **options):
    native, native_affine = vf.layout("sagittal")
    return vf.write_series(folder, native, native_affine, extra=vf.IDENTIFYING,
                           series_uid=SERIES_UID, **options)


def _assert_clean(text: str, where: str):
    for secret in SECRETS:
        assert secret.lower() not in text.lower(), f"{secret!r} leaked into {where}"


def test_the_identifying_values_are_really_in_the_files(tmp_path):
    """Guards the test itself: the secrets are there to leak."""
    paths = _identifying_series(tmp_path / "series")
    dataset = pydicom.dcmread(paths[0])
    assert str(dataset.PatientName) == vf.IDENTIFYING["PatientName"]
    assert vf.IDENTIFYING["InstitutionName"].encode() in paths[0].read_bytes()


def test_nothing_identifying_in_returned_or_written_objects(tmp_path):
    _identifying_series(tmp_path / "series")
    volume = read_volume(tmp_path / "series", max_voxels=LIMIT)
    assert set(vars(volume)) == {"array", "affine"}  # voxels and geometry, nothing else
    assert np.array_equal(volume.array, vf.PHANTOM)
    _assert_clean(repr(volume) + str(volume), "the volume's repr")
    box = lesions.lesion_box(vf.LESION, source="mask")
    recipe = intensity.ct_window_recipe(["bone", "spine_soft_tissue"])
    channels = intensity.apply_recipe(volume.array, recipe)
    made = crops.crop_3d(channels, box, size=(3, 3, 3), pad_value=0.0)
    resampled = resample.resample(volume, (1.25, 0.75, 0.5), kind="image")
    _assert_clean(repr(made) + repr(made.windows) + repr(resampled) + repr(box) + repr(recipe),
                  "derived objects")
    written = nifti.write_nifti(volume, tmp_path / "out" / "image.nii.gz")
    raw = gzip.decompress(written.read_bytes())
    _assert_clean(raw.decode("latin-1"), "the written NIfTI file")
    for path in (tmp_path / "out").rglob("*"):
        _assert_clean(path.name, "a written file name")


def _broken(tmp_path, how):
    folder = tmp_path / how
    if how == "missing_slice":
        _identifying_series(folder, skip=(2,))
    elif how == "uneven":
        _identifying_series(folder, position_jitter={2: [0.2, 0, 0]})
    elif how == "text_in_uid":  # pydicom warns and logs "Invalid value for VR UI: '<value>'"
        paths = _identifying_series(folder)
        raw = paths[0].read_bytes()
        uid = SERIES_UID.encode()
        paths[0].write_bytes(raw.replace(uid, (vf.IDENTIFYING["PatientName"].encode() * 9)[:len(uid)]))
    else:
        paths = _identifying_series(folder)
        dataset = pydicom.dcmread(paths[1])
        if how == "mixed_series":
            dataset.SeriesInstanceUID = generate_uid()
        elif how == "multiframe":
            dataset.NumberOfFrames = 3
        elif how == "damaged_pixels":
            dataset.PixelData = dataset.PixelData[:7]
        elif how == "orientation":
            dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        elif how == "no_position":
            del dataset.ImagePositionPatient
        elif how == "bad_rescale":
            dataset.RescaleSlope = "1.000000"
        dataset.save_as(paths[1])
        if how == "bad_rescale":  # identifying text where a number belongs (pydicom refuses to write it)
            element = b"\x28\x00\x53\x10DS\x08\x00"
            raw = paths[1].read_bytes()
            assert raw.count(element + b"1.000000") == 1
            paths[1].write_bytes(raw.replace(element + b"1.000000", element + b"8675309X"))
    return folder


@pytest.mark.parametrize("how", ["missing_slice", "uneven", "text_in_uid", "mixed_series", "multiframe",
                                 "damaged_pixels", "orientation", "no_position", "bad_rescale"])
def test_no_identifying_value_in_errors_tracebacks_warnings_or_logs(tmp_path, how, caplog):
    folder = _broken(tmp_path, how)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned, pytest.raises(InputError) as caught:
        warnings.simplefilter("always")
        read_volume(folder, max_voxels=LIMIT)
    _assert_clean(caplog.text + "".join(str(w.message) for w in warned), f"the {how} warnings/logs")
    error = caught.value
    assert str(folder) in str(error)
    _assert_clean(str(error), f"the {how} error")
    # Decoder errors are not chained: a logged traceback would print pydicom's message.
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    _assert_clean(printed.replace(str(tmp_path), ""), f"the {how} traceback")


def test_only_allow_listed_attributes_are_parsed(tmp_path, monkeypatch):
    """Every dataset pydicom hands the reader holds geometry/pixel attributes only."""
    _identifying_series(tmp_path / "series")
    parsed = []
    real = pydicom.dcmread

    def recording(*args, **kwargs):
        dataset = real(*args, **kwargs)
        parsed.append(dataset)
        return dataset

    monkeypatch.setattr(pydicom, "dcmread", recording)
    read_volume(tmp_path / "series", max_voxels=LIMIT)
    assert len(parsed) == 2 * 6  # headers, then pixels, of six sagittal slices
    allowed = set(dicom_series.READ_ATTRIBUTES) | {"SpecificCharacterSet"}
    for dataset in parsed:
        keywords = {element.keyword for element in dataset}
        assert keywords <= allowed, keywords - allowed
        # SeriesInstanceUID is read (to refuse mixed folders) in the header pass only.
        text = str(dataset).replace(str(tmp_path), "").replace(SERIES_UID, "")
        _assert_clean(text, "a parsed dataset")
    assert sum(SERIES_UID in str(dataset) for dataset in parsed) == 6
    assert not {"PatientName", "PatientID", "InstitutionName"} & set(dicom_series.READ_ATTRIBUTES)
