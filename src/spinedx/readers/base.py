"""What every image reader shares: the pixel-count guard against decompression bombs,
and reading DICOM without pydicom quoting header values."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from spinedx.errors import InputError


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels} "
            "(config data.max_image_pixels); refusing a possible decompression bomb"
        )


@contextmanager
def pydicom_silenced():
    """No pydicom warning or log record while reading: they quote element values (e.g.
    "Invalid value for VR UI: '<value>'"), and a header value must reach no log."""
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
