"""Small volumes of known geometry written as NIfTI files and DICOM series for the volume
tests. Written with nibabel and pydicom directly, independent of spinedx's readers.

The reference phantom is given in spinedx's canonical layout: ``PHANTOM[z, y, x]`` with
``AFFINE`` mapping (z, y, x, 1) to LPS mm (x toward the patient's left, y posterior, z
superior). Each test stores it in some other layout (``native`` array + ``native_affine``
LPS) and checks that reading gives back exactly ``PHANTOM`` and ``AFFINE``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SHAPE = (4, 5, 6)  # z, y, x
SPACING = (2.5, 0.75, 0.5)  # mm along z, y, x (binary fractions: exact arithmetic)
ORIGIN = (-40.0, -30.5, 100.25)  # LPS mm of voxel (0, 0, 0)
# Hounsfield units, all different, whole numbers: -1000, -990, ..., 190.
PHANTOM = (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 10 - 1000).astype(np.float32)
AFFINE = np.array([
    [0.0, 0.0, SPACING[2], ORIGIN[0]],
    [0.0, SPACING[1], 0.0, ORIGIN[1]],
    [SPACING[0], 0.0, 0.0, ORIGIN[2]],
    [0.0, 0.0, 0.0, 1.0],
])
# The lesion: slices 1-2, rows 2-3, columns 1-3 (box start (1, 2, 1), stop (3, 4, 4)).
LESION = np.zeros(SHAPE, dtype=np.uint16)
LESION[1:3, 2:4, 1:4] = 1
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

IDENTIFYING = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "MRN-8675309",
    "PatientBirthDate": "19470203",
    "PatientAddress": "12 Elm Street Springfield",
    "InstitutionName": "Saint Example General Hospital",
    "ReferringPhysicianName": "Roe^Richard",
    "AccessionNumber": "ACC4455667",
    "StudyDescription": "SPINE CT FOR JANE DOE",
    "SeriesDescription": "Sagittal bone Doe",
    "OperatorsName": "Tech^Tamsin",
    "StudyDate": "20240131",
}


def layout(name: str):
    """(native array, native affine LPS) of PHANTOM stored in another axis layout.

    Each layout is written out by hand: ``native[a, b, c] = PHANTOM[...]`` and the affine
    ``native_affine = AFFINE @ M`` with M the index map (a, b, c) -> (z, y, x).
    """
    nz, ny, nx = SHAPE
    if name == "canonical":  # (z, y, x), SPL
        return PHANTOM.copy(), AFFINE.copy()
    if name == "ras_xyz":  # NIfTI-typical: (x, y, z), x toward Right, y toward Anterior
        native = PHANTOM[:, ::-1, ::-1].transpose(2, 1, 0)  # native[i, j, k] = P[k, ny-1-j, nx-1-i]
        index_map = np.array([[0, 0, 1, 0], [0, -1, 0, ny - 1], [-1, 0, 0, nx - 1], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    if name == "lps_xyz":  # ITK-typical: (x, y, z), x toward Left, y toward Posterior
        native = PHANTOM.transpose(2, 1, 0)  # native[i, j, k] = P[k, j, i]
        index_map = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    if name == "permuted_flipped":  # (y, z, x), y toward Anterior, z toward Inferior
        native = PHANTOM[::-1, ::-1, :].transpose(1, 0, 2)  # native[a, b, c] = P[nz-1-b, ny-1-a, c]
        index_map = np.array([[0, -1, 0, nz - 1], [-1, 0, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    if name == "axial_feet_first":  # slices (z) toward Inferior, rows P, columns toward Right
        native = PHANTOM[::-1, :, ::-1]  # native[s, r, c] = P[nz-1-s, r, nx-1-c]
        index_map = np.array([[-1, 0, 0, nz - 1], [0, 1, 0, 0], [0, 0, -1, nx - 1], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    if name == "sagittal":  # slices along x, rows toward Inferior, columns toward Posterior
        native = PHANTOM[::-1].transpose(2, 0, 1)  # native[s, r, c] = P[nz-1-r, c, s]
        index_map = np.array([[0, -1, 0, nz - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    if name == "coronal":  # slices along y, rows toward Inferior, columns toward Left
        native = PHANTOM[::-1].transpose(1, 0, 2)  # native[s, r, c] = P[nz-1-r, s, c]
        index_map = np.array([[0, -1, 0, nz - 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        return native, AFFINE @ index_map
    raise KeyError(name)


LAYOUTS = ("canonical", "ras_xyz", "lps_xyz", "permuted_flipped", "axial_feet_first",
           "sagittal", "coronal")


def write_nifti(path: Path, data, affine_lps, *, sform_code=1, qform_code=1, slope=None,
                inter=None, qform_affine_lps=None, dtype=None) -> Path:
    """NIfTI-1 of ``data`` whose voxel->RAS affine corresponds to ``affine_lps``."""
    data = np.asarray(data)
    image = nib.Nifti1Image(data if dtype is None else data.astype(dtype), None)
    affine_ras = LPS_TO_RAS @ np.asarray(affine_lps, dtype=float)
    image.set_sform(affine_ras, code=sform_code)
    qform = affine_ras if qform_affine_lps is None else LPS_TO_RAS @ qform_affine_lps
    image.set_qform(qform, code=qform_code)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    return path


def dicom_slice(pixels, *, position, row_direction, column_direction, pixel_spacing,
                slope=1.0, intercept=-1024.0, series_uid, instance, extra=None) -> FileDataset:
    """One CT slice (int16 stored values; HU = stored * slope + intercept)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = series_uid
    dataset.Modality = "CT"
    dataset.InstanceNumber = instance
    dataset.ImagePositionPatient = [f"{v:.6f}" for v in position]
    dataset.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_direction, *column_direction)]
    dataset.PixelSpacing = [f"{v:.6f}" for v in pixel_spacing]
    dataset.SliceThickness = "9.0"  # deliberately wrong: spacing comes from the positions
    dataset.SpacingBetweenSlices = "7.0"  # likewise
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 1
    dataset.RescaleSlope = f"{slope:g}"
    dataset.RescaleIntercept = f"{intercept:g}"
    stored = np.round((np.asarray(pixels, dtype=np.float64) - intercept) / slope)
    dataset.PixelData = stored.astype("<i2").tobytes()
    for key, value in (extra or {}).items():
        setattr(dataset, key, value)
    return dataset


def write_series(folder: Path, native, native_affine, *, slope=1.0, intercept=-1024.0,
                 extra=None, series_uid=None, names=None, skip=(), position_jitter=None) -> list[Path]:
    """One DICOM file per native slice ``native[s]`` (rows, columns) of geometry
    ``native_affine`` (native index (s, r, c) -> LPS mm).

    File names and InstanceNumbers run against the slice order (so sorting by either
    would be wrong); ``skip`` leaves slices out; ``position_jitter`` {s: offset (3,)} moves
    a slice's ImagePositionPatient.
    """
    folder.mkdir(parents=True, exist_ok=True)
    native_affine = np.asarray(native_affine, dtype=float)
    column_step, row_step = native_affine[:3, 2], native_affine[:3, 1]
    row_direction = column_step / np.linalg.norm(column_step)  # along a row: columns increase
    column_direction = row_step / np.linalg.norm(row_step)
    pixel_spacing = (np.linalg.norm(row_step), np.linalg.norm(column_step))
    series_uid = series_uid or generate_uid()
    paths = []
    count = len(native)
    for s in range(count):
        if s in skip:
            continue
        position = native_affine[:3, :3] @ [s, 0, 0] + native_affine[:3, 3]
        if position_jitter and s in position_jitter:
            position = position + np.asarray(position_jitter[s])
        dataset = dicom_slice(native[s], position=position, row_direction=row_direction,
                              column_direction=column_direction, pixel_spacing=pixel_spacing,
                              slope=slope, intercept=intercept, series_uid=series_uid,
                              instance=count - s, extra=extra)
        name = names[s] if names else f"IMG{count - s:05d}.dcm"  # unique, against slice order
        path = folder / name
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
