"""Preprocessing stage: crop, grayscale, resize once, cache as uint8 arrays.

Training and inference read only this cache, so no job ever decodes a PNG again and the
bytes every model sees are fixed by one file per sequence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spinedx.annotations import open_image
from spinedx.errors import InputError
from spinedx.io import atomic_output


def to_grayscale_uint8(image: Image.Image) -> np.ndarray:
    """Any PNG/JPEG mode to one 8-bit channel.

    16-bit and 32-bit images are stretched linearly from their own minimum to maximum:
    MR intensities have no absolute scale, and the per-image window keeps contrast.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        if high <= low:
            return np.zeros(array.shape, dtype=np.uint8)
        return np.round((array - low) / (high - low) * 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become black rather than whatever colour hides under them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def crop_box(row, margin: float, keep_aspect: bool) -> tuple[int, int, int, int]:
    """The crop window around the labelme box: margin on each side, squared if asked.

    Squaring keeps the lesion's shape (elongated vs round is diagnostic); squashing a
    box to a square would erase it.
    """
    x0, y0, x1, y1 = row.x0, row.y0, row.x1, row.y1
    width, height = x1 - x0, y1 - y0
    x0, x1 = x0 - margin * width, x1 + margin * width
    y0, y1 = y0 - margin * height, y1 + margin * height
    if keep_aspect:
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1, y0, y1 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def preprocess_image(path: Path, row, settings: dict, max_pixels: int) -> np.ndarray:
    image = open_image(path, max_pixels)
    if image.size != (row.width, row.height):
        raise InputError(
            f"{path}: the image changed since the annotations stage ({image.size[0]}x"
            f"{image.size[1]} now, {row.width}x{row.height} then); rerun the workflow"
        )
    gray = Image.fromarray(to_grayscale_uint8(image))
    if settings["crop"] == "box":
        # PIL pads a window that extends past the border with zeros (black background).
        gray = gray.crop(crop_box(row, settings["margin"], settings["keep_aspect"]))
    size = settings["size"]
    return np.asarray(gray.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def build_cache(images: pd.DataFrame, images_dir: str | Path, config: dict) -> dict[str, np.ndarray]:
    """Preprocess every image of the table; arrays in table order."""
    images_dir = Path(images_dir)
    settings = config["preprocessing"]
    max_pixels = config["data"]["max_image_pixels"]
    stack = np.stack([
        preprocess_image(images_dir / row.image_path, row, settings, max_pixels)
        for row in images.itertuples(index=False)
    ]) if len(images) else np.zeros((0, settings["size"], settings["size"]), np.uint8)
    return {"images": stack, "image_id": images["image_id"].to_numpy(dtype=str)}


def write_cache(cache: dict[str, np.ndarray], path: str | Path) -> None:
    # np.savez appends ".npz" to a name without it: hand it the name it will use.
    with atomic_output(path, suffix=".npz") as partial:
        np.savez(partial, **cache)


def read_cache(path: str | Path) -> dict[str, np.ndarray]:
    """Load a cache written by :func:`write_cache` (never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            cache = {key: data[key] for key in ("images", "image_id")}
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: unreadable preprocessing cache ({error}); delete it and rerun") from error
    if cache["images"].dtype != np.uint8 or cache["images"].ndim != 3:
        raise InputError(f"{path}: cache images must be a uint8 N x H x W array")
    return cache


def align(cache: dict[str, np.ndarray], images: pd.DataFrame, cache_path) -> np.ndarray:
    """Cache rows in the order of ``images`` (by image_id); every image must be cached."""
    index = pd.Index(cache["image_id"])
    positions = index.get_indexer(images["image_id"])
    if (positions < 0).any():
        missing = images.loc[positions < 0, "image_id"].tolist()[:5]
        raise InputError(f"{cache_path}: images missing from the cache: {missing}; rerun preprocessing")
    return cache["images"][positions]
