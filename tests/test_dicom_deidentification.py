"""No DICOM header value leaves the single-slice reader (readers/dicom.py).

The slice's header holds identifying values (patient name, ID, birth date, institution,
physician, accession number). None may appear in the error of a broken file, in the
traceback a log would print (decoder errors are not chained: pydicom's own messages
quote element values), in a warning or in a log record (pydicom warns and logs invalid
values with the value quoted), The workflow
test (tests/test_workflow.py) searches a whole audit run's outputs and logs; this one
covers the failure paths file by file.
"""

from __future__ import annotations

import logging
import traceback
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_file

from spinedx.errors import InputError
from spinedx.readers import open_image

IDENTIFYING = {"PatientName": "Doe^Jane^Slicewise", "PatientID": "MRN-5551234",
               "PatientBirthDate": "19380517", "InstitutionName": "Saint Sliceworth Clinic",
               "ReferringPhysicianName": "Roe^Rosalind", "AccessionNumber": "ACC9988776"}
SECRETS = [*IDENTIFYING.values(), "Slicewise", "5551234", "Sliceworth", "Doe^Jane"]


def _slice(path, **changes):
    """MR_small.dcm (pydicom's test file) with identifying values, then ``changes``."""
    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for key, value in {**IDENTIFYING, **changes}.items():
        setattr(dataset, key, value)
    dataset.save_as(path)
    return path


def _replace_value(path, keyword_tag: bytes, old: bytes, new: bytes):
    """Put text where pydicom refuses to write it (a number or UID element), byte for byte."""
    raw = path.read_bytes()
    assert raw.count(keyword_tag + old) == 1
    path.write_bytes(raw.replace(keyword_tag + old, keyword_tag + new))


def _broken(tmp_path, how):
    """A slice with identifying values, broken in the way ``how`` names; some breakages put
    identifying text where pydicom quotes it (its warnings, log records, exceptions)."""
    path = tmp_path / f"{how}.dcm"
    if how == "damaged_pixels":
        dataset = pydicom.dcmread(_slice(path))
        dataset.PixelData = dataset.PixelData[:7]
        dataset.save_as(path)
    elif how == "multiframe":
        _slice(path, NumberOfFrames=3)
    elif how == "text_in_rescale":  # pydicom warns "Invalid value for VR DS: '...'", then float() fails
        _slice(path, RescaleSlope="1.000000", RescaleIntercept="0")
        _replace_value(path, b"\x28\x00\x53\x10DS\x08\x00", b"1.000000", b"5551234X")
    elif how == "truncated":  # cut inside the header, after the identifying elements
        raw = _slice(path).read_bytes()
        path.write_bytes(raw[:raw.index(IDENTIFYING["InstitutionName"].encode()) + 12])
    elif how == "text_in_photometric":  # pydicom's error quotes the value
        raw = _slice(path).read_bytes()
        assert raw.count(b"MONOCHROME2 ") == 1
        path.write_bytes(raw.replace(b"MONOCHROME2 ", b"Doe^Jane^Sl "))
    elif how == "text_in_transfer_syntax":  # pydicom warns, logs and raises, quoting the value
        raw = _slice(path).read_bytes()
        uid = str(pydicom.dcmread(path).file_meta.TransferSyntaxUID).encode()
        assert raw.count(uid) == 1
        path.write_bytes(raw.replace(uid, (b"Slicewise" * 9)[:len(uid)]))
    elif how == "not_dicom_after_marker":
        path.write_bytes(b"\0" * 128 + b"DICM" + b"Doe^Jane^Slicewise MRN-5551234" * 4)
    return path


@pytest.mark.parametrize("how", ["damaged_pixels", "multiframe", "text_in_rescale", "text_in_photometric",
                                 "text_in_transfer_syntax", "truncated", "not_dicom_after_marker"])
def test_no_identifying_value_in_errors_tracebacks_warnings_or_logs(tmp_path, how, caplog):
    path = _broken(tmp_path, how)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned, pytest.raises(InputError) as caught:
        warnings.simplefilter("always")
        open_image(path, 10**6)
    error = caught.value
    assert str(path) in str(error)
    printed = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for where, text in [("warnings", "".join(str(w.message) for w in warned)), ("logs", caplog.text),
                        ("error", str(error)), ("traceback", printed.replace(str(tmp_path), ""))]:
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), f"{secret!r} leaked into the {how} {where}"
    # Not chained: a decoder error's own message never reaches a printed traceback.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
