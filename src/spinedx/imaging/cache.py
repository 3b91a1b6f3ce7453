"""The preprocessing cache: every image of one sequence as the model sees it (uint8
size x size), in one ``.npz`` per sequence, read by training, inference and Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import atomic_output


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
