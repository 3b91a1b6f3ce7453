"""Intensity recipes: CT windows in Hounsfield units and MR percentile normalisation.

A recipe is a plain JSON-serialisable dict (str, float, bool, lists): it is written into
the model card as is, and :func:`apply_recipe` applied to the same voxels with the
recorded recipe gives bit-identical output (float32 arithmetic, one IEEE-rounded operation
at a time, no thread-dependent reductions), which is what audit mode relies on.

``{"kind": "ct_window", "windows": [{"name": "bone", "level": 400.0, "width": 1800.0}, ...]}``
    One output channel per window, in the listed order:
    ``clip((hu - (level - width / 2)) / width, 0, 1)``, i.e. black at
    ``level - width/2`` HU and white at ``level + width/2`` HU (the plain linear window;
    DICOM's display VOI function differs by half a grey level and is meant for integer
    display values, not model inputs).

``{"kind": "percentile", "low": 0.5, "high": 99.5, "region": "volume" | "mask"}``
    One channel: ``clip((x - p_low) / (p_high - p_low), 0, 1)`` where p_low and p_high
    are percentiles (numpy's "linear" method, computed in float64) of all voxels
    ("volume") or of the voxels where the given mask is non-zero ("mask"). The bounds
    come from the volume itself, so the recipe is the method, re-applied per volume;
    :func:`percentile_bounds` returns them for the record.

Window presets (level/width in HU) follow the common radiology tables (Radiopaedia,
"Windowing (CT)": spine bone W1800 L400 and spine soft tissue W250 L50, abdomen soft
tissue W400 L50, mediastinum W350 L50, lung W1500 L-600, brain W80 L40, liver W150 L30).
Institutions vary; the recipe always records the numbers, never only the name.
"""

from __future__ import annotations

import json
import math

import numpy as np

from spinedx.errors import InputError

# name: (level, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "bone": (400.0, 1800.0),
    "spine_soft_tissue": (50.0, 250.0),
    "soft_tissue": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
    "liver": (30.0, 150.0),
}
PERCENTILE_METHOD = "linear"
REGIONS = ("volume", "mask")


def ct_window_recipe(windows) -> dict:
    """A CT window recipe from preset names and/or ``(name, level, width)`` triples."""
    entries = []
    for window in windows:
        if isinstance(window, str):
            if window not in WINDOW_PRESETS:
                raise ValueError(f"unknown CT window preset {window!r}; presets: "
                                 f"{', '.join(WINDOW_PRESETS)} (or give name, level, width)")
            level, width = WINDOW_PRESETS[window]
            entries.append({"name": window, "level": level, "width": width})
        else:
            name, level, width = window
            entries.append({"name": str(name), "level": float(level), "width": float(width)})
    recipe = {"kind": "ct_window", "windows": entries}
    check_recipe(recipe)
    return recipe


def percentile_recipe(low: float, high: float, region: str) -> dict:
    recipe = {"kind": "percentile", "low": float(low), "high": float(high), "region": str(region)}
    check_recipe(recipe)
    return recipe


def check_recipe(recipe) -> None:
    """Raise ValueError unless ``recipe`` is a complete, JSON-plain intensity recipe."""
    if not isinstance(recipe, dict) or recipe.get("kind") not in ("ct_window", "percentile"):
        raise ValueError("an intensity recipe is a dict with kind 'ct_window' or 'percentile'")
    if not _plain(recipe) or json.loads(json.dumps(recipe)) != recipe:
        raise ValueError("an intensity recipe holds only JSON values (str, number, list, dict; "
                         "plain Python types, no numpy scalars, no NaN)")
    if recipe["kind"] == "ct_window":
        windows = recipe.get("windows")
        if set(recipe) != {"kind", "windows"} or not isinstance(windows, list) or not windows:
            raise ValueError("a ct_window recipe is {'kind': 'ct_window', 'windows': [...]} "
                             "with at least one window")
        for window in windows:
            if (not isinstance(window, dict) or set(window) != {"name", "level", "width"}
                    or not all(_number(window[k]) for k in ("level", "width")) or window["width"] <= 0):
                raise ValueError("each CT window is {'name', 'level', 'width'} with a finite "
                                 "level and a positive width (HU)")
    else:
        if set(recipe) != {"kind", "low", "high", "region"}:
            raise ValueError("a percentile recipe has exactly kind, low, high, region")
        low, high = recipe["low"], recipe["high"]
        if not (_number(low) and _number(high) and 0 <= low < high <= 100):
            raise ValueError("percentile low and high satisfy 0 <= low < high <= 100")
        if recipe["region"] not in REGIONS:
            raise ValueError(f"percentile region is one of {REGIONS}")


def _plain(value) -> bool:
    """Only built-in JSON types (checkpoints load with weights_only, which refuses others)."""
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return type(value) in (str, int, float, bool) or value is None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def channels(recipe) -> list[str]:
    """Names of the output channels, in order."""
    check_recipe(recipe)
    if recipe["kind"] == "ct_window":
        return [w["name"] for w in recipe["windows"]]
    return ["percentile"]


def apply_recipe(array, recipe, *, mask=None, source="volume") -> np.ndarray:
    """``array`` (any shape) through ``recipe``: float32 channels ``(C, *array.shape)`` in [0, 1].

    ``mask`` (same shape) is needed only by a percentile recipe with region "mask";
    ``source`` (the image's path) names the data in an InputError (empty mask, constant
    region).
    """
    check_recipe(recipe)
    values = np.asarray(array, dtype=np.float32)
    if recipe["kind"] == "ct_window":
        out = np.empty((len(recipe["windows"]), *values.shape), dtype=np.float32)
        for channel, window in enumerate(recipe["windows"]):
            _linear_unit(values, window["level"] - window["width"] / 2, window["width"], out[channel])
        return out
    low, high = percentile_bounds(values, recipe, mask=mask, source=source)
    out = np.empty((1, *values.shape), dtype=np.float32)
    _linear_unit(values, low, high - low, out[0])
    return out


def percentile_bounds(array, recipe, *, mask=None, source="volume") -> tuple[float, float]:
    """The (low, high) intensities a percentile recipe maps to 0 and 1 on this volume."""
    check_recipe(recipe)
    if recipe["kind"] != "percentile":
        raise ValueError("percentile_bounds needs a percentile recipe")
    values = np.asarray(array)
    if recipe["region"] == "mask":
        if mask is None:
            raise ValueError("a percentile recipe with region 'mask' needs the mask")
        mask = np.asarray(mask)
        if mask.shape != values.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {values.shape}")
        values = values[mask != 0]
    values = values.astype(np.float64).ravel()
    if values.size == 0:
        raise InputError(f"{source}: the mask is empty, so there are no voxels to take "
                         "percentiles of; check the mask, or use region 'volume'")
    low, high = np.percentile(values, [recipe["low"], recipe["high"]], method=PERCENTILE_METHOD)
    if not high > low:
        raise InputError(f"{source}: the {recipe['low']:g} and {recipe['high']:g} percentiles "
                         "coincide (a constant region), so there is no range to normalise; "
                         "check the volume and its mask")
    return float(low), float(high)


def _linear_unit(values: np.ndarray, low: float, width: float, out: np.ndarray) -> None:
    """out = clip((values - low) / width, 0, 1), in float32, written in place."""
    np.subtract(values, np.float32(low), out=out)
    np.divide(out, np.float32(width), out=out)
    np.clip(out, 0, 1, out=out)
