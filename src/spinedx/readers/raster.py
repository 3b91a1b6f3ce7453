"""PNG, JPEG and every other raster format Pillow decodes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from spinedx.errors import InputError
from spinedx.readers.base import check_pixels


def accepts(path: Path) -> bool:
    """Pillow identifies the format from the bytes: the reader of last resort."""
    return True


def open_raster(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode a raster image, with a clear error for anything unreadable."""
    Image.MAX_IMAGE_PIXELS = None  # our own limit below gives a clearer message
    try:
        with Image.open(path) as probe:
            width, height = probe.size
            check_pixels(path, width, height, max_pixels)
            image = probe.copy()  # decodes every pixel: truncated files fail here
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot decode image ({error}); re-export it as PNG, JPEG or DICOM") from error
    return image
