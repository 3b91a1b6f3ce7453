"""The model-input cache of a volume study: one ``.npz`` per sequence and input mode.

``images`` holds the crops exactly as the recipe made them (float32 in [0, 1]; (N, C, H, W)
for 2d/2.5d, (N, C, D, H, W) for 3d), ``image_id`` one id per crop (the key of the crops
table), ``mode`` the input mode. Training, inference and Grad-CAM read only this cache.
The same keys as the 2-D cache (:mod:`spinedx.imaging.cache`), so
:func:`spinedx.imaging.cache.align` orders either by an image table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinedx.errors import InputError
from spinedx.imaging.cache import write_cache

_DIMENSIONS = {"2d": 4, "2.5d": 4, "3d": 5}


def write_volume_cache(images: np.ndarray, image_ids, mode: str, path) -> None:
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != _DIMENSIONS[mode]:
        raise ValueError(f"{mode} crops are {_DIMENSIONS[mode]}-D (N, C, ...), got {images.shape}")
    write_cache({"images": images, "image_id": np.asarray(image_ids, dtype=str), "mode": np.array(mode)}, path)


def read_volume_cache(path: str | Path) -> dict[str, np.ndarray]:
    """Load a cache written by :func:`write_volume_cache` (never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            cache = {key: data[key] for key in ("images", "image_id", "mode")}
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: unreadable volume cache ({error}); delete it and rerun") from error
    mode = str(cache["mode"])
    if mode not in _DIMENSIONS or cache["images"].dtype != np.float32 or cache["images"].ndim != _DIMENSIONS[mode]:
        raise InputError(f"{path}: not a volume cache of float32 crops; delete it and rerun")
    cache["mode"] = mode
    return cache
