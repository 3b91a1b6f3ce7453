"""NIfTI-1/NIfTI-2 volumes (``.nii``, ``.nii.gz``) through nibabel.

Geometry: the sform when its code is set (as nibabel and FSL choose), else the qform;
a file with neither has no patient orientation and is refused, and so is a file whose
sform and qform are both set but disagree (tools differ on which one they believe, so
the right grid is unknown). Spacing is the length of the chosen affine's columns (for
the qform that is pixdim by definition). Intensities are scaled by scl_slope/scl_inter as
the NIfTI standard says (nibabel applies them). Only voxels and geometry are read: the
free-text fields (descrip, aux_file, intent_name, db_name) are never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinedx.errors import InputError
from spinedx.readers.volume import Volume, check_voxel_limit, to_canonical

SUFFIXES = (".nii", ".nii.gz")
# sform and qform agree when every affine entry differs by less than this (mm): the
# qform is stored as a float32 quaternion, so even identical geometry differs ~1e-5 mm.
FORM_TOLERANCE_MM = 1e-3
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def read_nifti(path, *, max_voxels: int) -> Volume:
    """A 3D NIfTI image as a canonical float32 :class:`Volume` (see ``readers.volume``)."""
    import nibabel as nib  # only volume cohorts need it

    path = Path(path)
    try:
        image = nib.load(path)
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such file; check the path in the cases table") from error
    except Exception as error:  # nibabel raises many types for a damaged header
        raise InputError(f"{path}: cannot read the NIfTI header ({type(error).__name__}); "
                         "re-export the volume as .nii.gz (e.g. dcm2niix, 3D Slicer)") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image ({type(image).__name__}); convert it to "
                         ".nii.gz (e.g. nibabel, 3D Slicer, mri_convert)")
    shape = tuple(int(n) for n in image.shape)
    shape = _three_dimensional(path, shape)
    check_voxel_limit(path, shape, max_voxels)
    kind = image.header.get_data_dtype().kind
    if kind not in "biuf" or image.header.get_data_dtype().names is not None:
        raise InputError(f"{path}: voxel type {image.header.get_data_dtype()} is not one gray "
                         "value per voxel (RGB or complex); save a scalar volume")
    affine_ras = _patient_affine(path, image)
    try:
        # get_fdata applies scl_slope/scl_inter (NIfTI-1 standard; not when slope is 0).
        data = image.get_fdata(dtype=np.float64).reshape(shape)
    except Exception as error:  # truncated or damaged data: gzip, EOF, size errors
        raise InputError(f"{path}: cannot read the voxel data ({type(error).__name__}); the "
                         "file is truncated or damaged: copy or export it again") from error
    finite = np.isfinite(data)
    values = data.astype(np.float32)
    if not finite.all() or not np.all(np.isfinite(values)):
        bad = int(data.size - np.count_nonzero(finite & np.isfinite(values)))
        raise InputError(f"{path}: {bad} voxel(s) are NaN, infinite or beyond float32 after "
                         "scl_slope/scl_inter; fix the export (replace them with a background "
                         "value) or the header's scaling")
    del data, finite
    return to_canonical(values, _RAS_TO_LPS @ affine_ras)


def _three_dimensional(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D shape; trailing singleton dimensions (a 4D file of one volume) are dropped."""
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise InputError(f"{path}: {len(shape)}D NIfTI of shape {shape} holds several volumes "
                         "(time points, echoes or diffusion directions); split it (fslsplit, "
                         "nibabel.funcs.four_to_three) and give one 3D volume")
    if len(shape) < 3 or min(shape) < 2:
        raise InputError(f"{path}: NIfTI of shape {shape} is a single slice, not a volume; give "
                         "the whole 3D series, or use the 2D image readers for single slices")
    return shape


def _patient_affine(path: Path, image) -> np.ndarray:
    """The voxel -> RAS+ mm affine the file declares (sform first, then qform)."""
    sform, sform_code = image.header.get_sform(coded=True)
    qform, qform_code = image.header.get_qform(coded=True)
    if not sform_code and not qform_code:
        raise InputError(f"{path}: sform_code and qform_code are both 0, so the file has no "
                         "patient orientation; re-export it from the DICOM (dcm2niix) or set "
                         "the scanner geometry (nibabel set_sform/set_qform with code 1)")
    if sform_code and qform_code and not np.allclose(sform, qform, rtol=0, atol=FORM_TOLERANCE_MM):
        raise InputError(f"{path}: the sform and qform describe different grids, so which one "
                         "is right is unknown; set both to the scanner geometry (e.g. "
                         "fslorient -copysform2qform, or re-export with dcm2niix)")
    affine = sform if sform_code else qform
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: the header's affine is singular or not finite; re-export "
                         "the volume with its scanner geometry (dcm2niix)")
    return np.asarray(affine, dtype=np.float64)


def write_nifti(volume: Volume, path) -> Path:
    """Write ``volume`` as NIfTI-1 (gzip when the name ends in .gz), atomically.

    The file's voxel axes are (x, y, z) as NIfTI tools expect, its sform and qform (code
    1, scanner) the volume's geometry in RAS+; nothing else (descrip stays empty), so the
    file holds voxels and geometry only.
    """
    import nibabel as nib

    from spinedx.io import atomic_output  # imports pandas: only writers pay for it

    path = Path(path)
    # Array (z, y, x) -> file (x, y, z): index (i, j, k) of the file is (x, y, z) here.
    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    affine_ras = _RAS_TO_LPS @ volume.affine @ swap
    data = np.ascontiguousarray(volume.array.transpose(2, 1, 0))
    image = nib.Nifti1Image(data, affine_ras)
    image.set_sform(affine_ras, code=1)
    image.set_qform(affine_ras, code=1)
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    with atomic_output(path, suffix=suffix) as partial:
        nib.save(image, partial)
    return path


class NiftiReader:
    name = "nifti"

    def accepts(self, path: Path) -> bool:
        return is_nifti(path)

    def read(self, path: Path, *, max_voxels: int) -> Volume:
        return read_nifti(path, max_voxels=max_voxels)


READER = NiftiReader()
