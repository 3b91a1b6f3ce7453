"""What every image reader shares: the pixel-count guard against decompression bombs."""

from __future__ import annotations

from pathlib import Path

from spinedx.errors import InputError


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{path}: {width}x{height} pixels exceeds the limit of {max_pixels} "
            "(config data.max_image_pixels); refusing a possible decompression bomb"
        )
