"""The model's view of a slice: the crop window around the labelme box, resizing to the
model's input size, and the way back from the input onto the uncropped slice.

``row`` is one row of the image table (``x0, y0, x1, y1`` box, ``width``, ``height``);
``settings`` is config ``preprocessing`` (``crop``, ``margin``, ``keep_aspect``, ``size``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


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


def view_window(row, settings: dict) -> tuple[int, int, int, int]:
    """The region of the original slice the model saw (x0, y0, x1, y1), before clipping."""
    if settings["crop"] == "box":
        return crop_box(row, settings["margin"], settings["keep_aspect"])
    return 0, 0, int(row.width), int(row.height)


def model_view(gray: np.ndarray, row, settings: dict) -> np.ndarray:
    """The model's uint8 input (size x size) of an 8-bit gray slice: the crop window (or
    the whole slice), resized bilinearly."""
    image = Image.fromarray(gray)
    if settings["crop"] == "box":
        # PIL pads a window that extends past the border with zeros (black background).
        image = image.crop(crop_box(row, settings["margin"], settings["keep_aspect"]))
    size = settings["size"]
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def to_original(cam: np.ndarray, row, settings: dict) -> np.ndarray:
    """A map on the model's input (S x S) placed on the original slice (height x width),
    0 outside the view."""
    x0, y0, x1, y1 = view_window(row, settings)
    resized = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F")
                         .resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), dtype=np.float64)
    full = np.zeros((int(row.height), int(row.width)), dtype=np.float64)
    # The crop window may extend past the border (preprocessing padded it with black).
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, int(row.width)), min(y1, int(row.height))
    full[fy0:fy1, fx0:fx1] = resized[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return full
