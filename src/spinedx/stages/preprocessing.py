"""Preprocessing stage: crop, grayscale, resize once, cache as uint8 arrays.

Training and inference read only this cache, so no job ever decodes a PNG again and the
bytes every model sees are fixed by one file per sequence. The image operations are
:mod:`spinedx.imaging`; the cache format is :mod:`spinedx.imaging.cache`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.imaging.cache import write_cache
from spinedx.imaging.gray import to_grayscale_uint8
from spinedx.imaging.slice_view import model_view
from spinedx.readers import open_image

log = logging.getLogger(__name__)


def preprocess_image(path: Path, row, settings: dict, max_pixels: int) -> np.ndarray:
    image = open_image(path, max_pixels)
    if image.size != (row.width, row.height):
        raise InputError(
            f"{path}: the image changed since the annotations stage ({image.size[0]}x"
            f"{image.size[1]} now, {row.width}x{row.height} then); rerun the workflow"
        )
    if settings["crop"] == "box" and not np.isfinite([row.x0, row.y0, row.x1, row.y1]).all():
        raise InputError(f"{path}: no lesion rectangle to crop to (an image without a shape); set "
                         "preprocessing.crop: image (labels.source annotation must frame every image alike)")
    return model_view(to_grayscale_uint8(image), row, settings)


def build_cache(images: pd.DataFrame, images_dir: str | Path, config) -> dict[str, np.ndarray]:
    """Preprocess every image of the table; arrays in table order."""
    images_dir = Path(images_dir)
    settings = config["preprocessing"]
    max_pixels = config["data"]["max_image_pixels"]
    stack = np.stack([
        preprocess_image(images_dir / row.image_path, row, settings, max_pixels)
        for row in images.itertuples(index=False)
    ]) if len(images) else np.zeros((0, settings["size"], settings["size"]), np.uint8)
    return {"images": stack, "image_id": images["image_id"].to_numpy(dtype=str)}


def main_stage(config, images_path, images_dir, out) -> None:
    """The workflow stage: the cache of one sequence's image table."""
    images = pd.read_parquet(images_path)
    write_cache(build_cache(images, images_dir, config), out)
    log.info("%d images cached at %dpx -> %s", len(images), config["preprocessing"]["size"], out)
