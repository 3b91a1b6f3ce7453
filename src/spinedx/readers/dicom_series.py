"""A folder holding the slices of one DICOM series, as one volume (pydicom).

Geometry comes from the geometry attributes only: slices are sorted by the projection of
ImagePositionPatient on the slice normal (row direction x column direction of
ImageOrientationPatient), never by file name or InstanceNumber; the slice spacing is the
median step between those projections (SliceThickness and SpacingBetweenSlices are not
read: thickness is not spacing, and both are often stale); in-plane spacing from
PixelSpacing. Voxels are the stored values through the modality LUT (RescaleSlope and
RescaleIntercept, or a Modality LUT Sequence), i.e. Hounsfield units for CT.

De-identification: each file is read with an allow-list (:data:`READ_ATTRIBUTES`), so
no other header element is even parsed into memory; SeriesInstanceUID and SOPClassUID
are read to refuse mixed or multi-frame folders and then dropped. Nothing returned holds
a header value beyond geometry and voxels, and error messages name files, counts and
distances computed from geometry, never a header element's text. Decoder exceptions
appear by type name only and are not chained (``from None``): a printed traceback would
otherwise show pydicom's own message, which may quote elements. For the same reason
pydicom's warnings and its logger (which quote invalid values) are silenced while a
series is read.

Not supported, refused with the fix: multi-frame (enhanced) DICOM, where each frame's
geometry lives in per-frame functional groups; converting with dcm2niix to NIfTI is the
robust route. Also refused: gantry-tilted (sheared) stacks, several series or several
slices at one position in one folder, missing slices, uneven spacing.
Hidden files (names starting with ".", e.g. .DS_Store) are ignored; any other file must
be an image slice of the series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinedx.errors import InputError
from spinedx.readers.base import pydicom_silenced
from spinedx.readers.volume import Volume, check_voxel_limit, to_canonical

GEOMETRY_ATTRIBUTES = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                       "Rows", "Columns", "NumberOfFrames")
PIXEL_ATTRIBUTES = ("SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
                    "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence")
# Read to refuse folders that are not one single-frame series; never returned.
CHECK_ATTRIBUTES = ("SeriesInstanceUID", "SOPClassUID")
READ_ATTRIBUTES = GEOMETRY_ATTRIBUTES + PIXEL_ATTRIBUTES + CHECK_ATTRIBUTES

# A gap larger than this many median steps means slices are missing.
MISSING_SLICE_FACTOR = 1.5
# Steps may differ from the median by this fraction (positions are rounded decimal text).
SPACING_TOLERANCE = 0.01
# Two slices closer than this (mm) along the normal sit at one position.
SAME_POSITION_MM = 0.01
# Direction cosines and pixel spacings agree across slices within this tolerance.
ORIENTATION_TOLERANCE = 1e-4
PIXEL_SPACING_TOLERANCE = 1e-4
# In-plane shift between consecutive slices, as a fraction of a pixel (gantry tilt).
SHEAR_TOLERANCE = 0.01


def _multiframe_classes() -> frozenset[str]:
    from pydicom import uid

    return frozenset(str(getattr(uid, name)) for name in (
        "EnhancedCTImageStorage", "EnhancedMRImageStorage", "EnhancedMRColorImageStorage",
        "EnhancedPETImageStorage", "LegacyConvertedEnhancedCTImageStorage",
        "LegacyConvertedEnhancedMRImageStorage", "LegacyConvertedEnhancedPETImageStorage"))


def is_series_folder(path: Path) -> bool:
    return path.is_dir()


def read_dicom_series(folder, *, max_voxels: int) -> Volume:
    """The series in ``folder`` as a canonical float32 :class:`Volume` (scanner units)."""
    folder = Path(folder)
    files = _slice_files(folder)
    with pydicom_silenced():
        headers = [_read_header(path) for path in files]
        geometry = _check_series(folder, files, headers)
        rows, columns = geometry["rows"], geometry["columns"]
        check_voxel_limit(folder, (len(files), rows, columns), max_voxels)
        order = geometry["order"]
        array = np.empty((len(files), rows, columns), dtype=np.float32)
        for slot, index in enumerate(order):
            array[slot] = _read_pixels(files[index], rows, columns)
    return to_canonical(array, geometry["affine"])


def _slice_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; a DICOM series is read from the folder "
                         "holding its slice files")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    folders = [p for p in entries if p.is_dir()]
    if folders:
        raise InputError(f"{folder}: holds the sub-folder {folders[0].name}; put each series "
                         "in its own folder with only its slice files in it")
    if not entries:
        raise InputError(f"{folder}: no DICOM files; put the slice files of one series in it")
    if len(entries) < 2:
        raise InputError(f"{folder}: holds one file; a volume needs the slices of a whole "
                         "series (a single slice is read by the 2D image readers)")
    return entries


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(path, specific_tags=[a for a in READ_ATTRIBUTES if a != "PixelData"])
    except InvalidDicomError:
        raise InputError(f"{path}: not a DICOM file (no DICM preamble); move every file that "
                         "is not a slice of the series out of its folder, or re-export the "
                         "series as standard DICOM files") from None
    except (OSError, ValueError, TypeError, AttributeError, KeyError, EOFError,
            NotImplementedError, RuntimeError) as error:
        # Only the exception type: pydicom messages may quote header elements.
        raise InputError(f"{path}: cannot read the DICOM header ({type(error).__name__}); "
                         "copy or export the series again") from None
    sop_class = str(getattr(header, "SOPClassUID", "") or
                    getattr(getattr(header, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    frames = _integer(header.get("NumberOfFrames"), default=1)
    if (frames or 1) > 1 or sop_class in _multiframe_classes():
        raise InputError(f"{path}: multi-frame (enhanced) DICOM is not supported; convert the "
                         "series with dcm2niix and give the .nii.gz, or export it as one file "
                         "per slice (classic single-frame)")
    if _integer(header.get("Rows"), 0) < 1 or _integer(header.get("Columns"), 0) < 1:
        raise InputError(f"{path}: DICOM file without an image (no Rows/Columns: a report, "
                         "DICOMDIR or structure set); move it out of the series folder")
    for name in ("RescaleSlope", "RescaleIntercept"):
        try:
            value = header.get(name)
            finite = value is None or np.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite:
            raise InputError(f"{path}: {name} is not a number, so the voxels have no scanner "
                             "units; export the series again from the scanner/PACS") from None
    return header


def _integer(value, default: int) -> int:
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def _vector(path: Path, header, name: str, length: int) -> np.ndarray:
    value = header.get(name)
    try:
        vector = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        vector = np.array([])
    if vector.shape != (length,) or not np.all(np.isfinite(vector)):
        raise InputError(f"{path}: {name} missing or malformed, so the slice has no position "
                         "in the patient; export the series from the scanner/PACS with its "
                         "geometry (a secondary capture or screenshot is not a volume)")
    return vector


def _check_series(folder: Path, files: list[Path], headers) -> dict:
    """Validate that the files are one regular stack and return its geometry."""
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise InputError(f"{folder}: holds slices of {len(series)} different series "
                         "(SeriesInstanceUID differs); put each series in its own folder")
    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(sizes) > 1:
        raise InputError(f"{folder}: slices differ in matrix size (Rows x Columns); the folder "
                         "mixes acquisitions: keep the slices of one volume only")
    (rows, columns), = sizes
    orientations = [_vector(p, h, "ImageOrientationPatient", 6) for p, h in zip(files, headers)]
    positions = np.array([_vector(p, h, "ImagePositionPatient", 3) for p, h in zip(files, headers)])
    spacings = [_vector(p, h, "PixelSpacing", 2) for p, h in zip(files, headers)]
    reference = orientations[0]
    for path, orientation in zip(files, orientations):
        if np.max(np.abs(orientation - reference)) > ORIENTATION_TOLERANCE:
            raise InputError(f"{folder}: slice orientation (ImageOrientationPatient) differs "
                             f"between {files[0].name} and {path.name}; the folder mixes "
                             "planes (e.g. a localizer): keep the slices of one volume only")
    for path, spacing in zip(files, spacings):
        if np.max(np.abs(spacing - spacings[0])) > PIXEL_SPACING_TOLERANCE * np.max(spacings[0]):
            raise InputError(f"{folder}: PixelSpacing differs between {files[0].name} and "
                             f"{path.name}; the folder mixes acquisitions: keep one volume only")
    row_direction, column_direction = reference[:3], reference[3:]
    if (abs(np.linalg.norm(row_direction) - 1) > 1e-3 or abs(np.linalg.norm(column_direction) - 1) > 1e-3
            or abs(row_direction @ column_direction) > 1e-3):
        raise InputError(f"{folder}: ImageOrientationPatient is not two orthogonal unit "
                         "vectors; the geometry is damaged: export the series again")
    if np.min(spacings[0]) <= 0:
        raise InputError(f"{folder}: PixelSpacing is not positive; export the series again")
    normal = np.cross(row_direction, column_direction)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    if np.any(steps < SAME_POSITION_MM):
        at = int(np.argmax(steps < SAME_POSITION_MM))
        raise InputError(f"{folder}: {files[order[at]].name} and {files[order[at + 1]].name} lie "
                         "at the same position (several echoes, phases or repeats in one "
                         "series); keep one slice per position, one volume per folder")
    step = float(np.median(steps))
    worst = int(np.argmax(steps))
    if steps[worst] > MISSING_SLICE_FACTOR * step:
        raise InputError(f"{folder}: a gap of {steps[worst]:.3g} mm between "
                         f"{files[order[worst]].name} and {files[order[worst + 1]].name} where "
                         f"slices are {step:.3g} mm apart: slices are missing; export the "
                         "complete series")
    uneven = np.abs(steps - step) > SPACING_TOLERANCE * step
    if np.any(uneven):
        at = int(np.argmax(uneven))
        raise InputError(f"{folder}: uneven slice spacing ({steps[at]:.3g} mm between "
                         f"{files[order[at]].name} and {files[order[at + 1]].name}, median "
                         f"{step:.3g} mm); resample the series to a regular grid (dcm2niix) "
                         "or export it again")
    row_spacing, column_spacing = (float(s) for s in spacings[0])
    shifts = np.diff(positions[order], axis=0)
    in_plane = np.abs(shifts @ np.stack([row_direction, column_direction]).T)
    if np.any(in_plane > SHEAR_TOLERANCE * min(row_spacing, column_spacing)):
        raise InputError(f"{folder}: consecutive slices are shifted within their plane (gantry "
                         "tilt or a sheared stack), which a voxel grid cannot hold; convert the "
                         "series with dcm2niix (it corrects gantry tilt) and give the .nii.gz")
    # Array (slice, row, column): a step of one row moves along the column direction by
    # the row spacing (PixelSpacing[0]); one column along the row direction by PixelSpacing[1].
    affine = np.eye(4)
    affine[:3, 0] = normal * step
    affine[:3, 1] = column_direction * row_spacing
    affine[:3, 2] = row_direction * column_spacing
    affine[:3, 3] = positions[order[0]]
    return {"rows": rows, "columns": columns, "order": order, "affine": affine}


def _read_pixels(path: Path, rows: int, columns: int) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        dataset = pydicom.dcmread(path, specific_tags=[*PIXEL_ATTRIBUTES, "Rows", "Columns"])
        if "PixelData" not in dataset:
            raise InputError(f"{path}: DICOM file without pixel data; move it out of the "
                             "series folder or export the series again")
        if _integer(dataset.get("SamplesPerPixel"), 1) != 1:
            raise InputError(f"{path}: colour DICOM (several samples per pixel) is not a "
                             "scanner volume; export the original grayscale series")
        values = apply_modality_lut(dataset.pixel_array, dataset)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, AttributeError, KeyError, EOFError,
            NotImplementedError, RuntimeError) as error:
        # Only the exception type: pydicom messages may quote header elements.
        raise InputError(f"{path}: cannot decode DICOM pixel data ({type(error).__name__}); "
                         "re-export the series uncompressed (e.g. gdcmconv --raw) or convert "
                         "it with dcm2niix") from None
    if values.shape != (rows, columns):
        raise InputError(f"{path}: pixel data does not match Rows x Columns; the file is "
                         "damaged: export the series again")
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: pixel values are not finite after the rescale; export the "
                         "series again")
    return values


class DicomSeriesReader:
    name = "dicom_series"

    def accepts(self, path: Path) -> bool:
        return is_series_folder(path)

    def read(self, path: Path, *, max_voxels: int) -> Volume:
        return read_dicom_series(path, max_voxels=max_voxels)


READER = DicomSeriesReader()
