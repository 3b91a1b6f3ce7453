"""Gray levels: any decoded image to the 8-bit gray slice every stage works on."""

from __future__ import annotations

import numpy as np
from PIL import Image


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
