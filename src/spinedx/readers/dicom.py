"""A single DICOM slice as the 8-bit gray image a radiologist's viewer shows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from spinedx.errors import InputError
from spinedx.readers.base import check_pixels, pydicom_silenced

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom(path: Path) -> bool:
    """DICOM by suffix, or by the ``DICM`` marker after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False  # unreadable: the image reader below reports it


def open_dicom(path: Path, max_pixels: int) -> Image.Image:
    """One DICOM slice as an 8-bit gray image, as a radiologist's viewer shows it.

    The stored rescale (modality LUT) gives scanner units; the stored window (first
    WindowCenter/WindowWidth, DICOM's linear VOI function) maps them to gray levels, or
    the slice's own minimum..maximum when no window is stored; MONOCHROME1 is inverted.
    Only pixel data and these display attributes are read: no header value (patient
    name, IDs, dates, institution) ever leaves this function, so none reaches an output,
    a log or an error message: decoder errors appear by type name only and are not
    chained (a printed traceback would show pydicom's message, which may quote header
    elements), and pydicom's warnings and logger are silenced while the file is read.
    """
    with pydicom_silenced():
        return _decode(path, max_pixels)


def _decode(path: Path, max_pixels: int) -> Image.Image:
    import pydicom  # imported here: only DICOM cohorts need it
    from pydicom.pixels import apply_modality_lut

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        rows, columns = int(header.get("Rows", 0)), int(header.get("Columns", 0))
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if rows < 1 or columns < 1:
            raise InputError(f"{path}: DICOM file without an image (no Rows/Columns); "
                             "export the MR slice itself, not a report or structure set")
        check_pixels(path, columns, rows * frames, max_pixels)
        if frames != 1:
            raise InputError(f"{path}: DICOM holds {frames} frames; annotate one slice per "
                             "file (export the slice as its own DICOM or PNG)")
        dataset = pydicom.dcmread(path)
        values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
        # Element values are decoded lazily: read the display attributes here too.
        center, width = _first_value(dataset.get("WindowCenter")), _first_value(dataset.get("WindowWidth"))
        inverted = dataset.get("PhotometricInterpretation") == "MONOCHROME1"
    except InputError:
        raise
    except Exception as error:  # any decoder failure (InvalidDicomError, ...), by type only
        # Only the exception type, not chained: pydicom messages may quote header elements.
        raise InputError(f"{path}: cannot decode DICOM pixel data ({type(error).__name__}); "
                         "re-export the slice uncompressed or as PNG") from None
    if values.ndim != 2:
        raise InputError(f"{path}: DICOM pixel data of shape {values.shape} is not one gray "
                         "slice; export the MR slice as MONOCHROME")
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2.1, linear VOI function.
        scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if inverted:
        scaled = 1 - scaled
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), mode="L")


def _first_value(element) -> float | None:
    """WindowCenter/WindowWidth may be multi-valued (several presets): use the first."""
    if isinstance(element, Sequence) and not isinstance(element, (str, bytes)):
        element = element[0] if len(element) else None
    try:
        return None if element is None else float(element)
    except (TypeError, ValueError):
        return None


#: The DICOM attributes spinedx may copy into outputs (subgroup variables): what
#: equipment acquired the image, never who was imaged, who referred or read, or where.
#: DICOM keyword -> subgroup variable.
ACQUISITION_ATTRIBUTES = {"Manufacturer": "vendor", "ManufacturerModelName": "scanner_model",
                          "MagneticFieldStrength": "field_strength"}
_SAFE_TEXT = re.compile(r"[^A-Za-z0-9 .,+_()/-]")


def acquisition_attributes(path: Path) -> dict[str, str | None]:
    """The allow-listed acquisition attributes of one DICOM file, by subgroup variable
    (:data:`ACQUISITION_ATTRIBUTES`); None where absent or unreadable.

    Only these tags are parsed (pydicom ``specific_tags``), so no other header value is
    even read; free text is reduced to letters, digits and ``.,+_()/-`` and 64
    characters, and the field strength to a number in tesla.
    """
    import pydicom  # imported here: only DICOM cohorts need it
    from pydicom.errors import InvalidDicomError

    values: dict[str, str | None] = dict.fromkeys(ACQUISITION_ATTRIBUTES.values())
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(ACQUISITION_ATTRIBUTES))
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return values
    for keyword, name in ACQUISITION_ATTRIBUTES.items():
        element = header.get(keyword)
        if element is None or element == "":
            continue
        if keyword == "MagneticFieldStrength":
            strength = _first_value(element)
            values[name] = f"{strength:g} T" if strength is not None and 0 < strength < 20 else None
        else:
            text = _SAFE_TEXT.sub("", str(element)).strip()[:64]
            values[name] = text or None
    return values
