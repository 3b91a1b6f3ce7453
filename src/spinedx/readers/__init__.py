"""Readers of a study's inputs, one module per format or file kind.

Images of every format come in through one call, :func:`open_image`, which picks the
reader by format: each reader module has ``accepts(path)`` and an opener taking
``(path, max_pixels)``; a new format (NIfTI, DICOM series) joins by one row of
:data:`IMAGE_READERS`. ``cases`` (the cases table), ``labelme`` (annotations), ``tree``
(the annotation folder tree) and ``bundle`` (a released model bundle) read the other
inputs.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from spinedx.errors import InputError
from spinedx.readers import dicom, raster

#: (name, accepts(path), open(path, max_pixels)) in the order they are asked: the first
#: reader that accepts a file opens it; the raster reader accepts anything, so it is last.
IMAGE_READERS = (
    ("DICOM", dicom.is_dicom, dicom.open_dicom),
    ("raster", raster.accepts, raster.open_raster),
)


def open_image(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode an image (PNG/JPEG/... or DICOM), with a clear error for
    anything unreadable. The one image reader of every stage."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file is missing; restore it or correct imagePath in its labelme JSON")
    for _, accepts, opener in IMAGE_READERS:
        if accepts(path):
            return opener(path, max_pixels)
    raise InputError(f"{path}: no reader for this file; use PNG, JPEG or DICOM")
