"""Intensity recipes: CT windows and percentile normalisation against hand-computed values,
JSON round trips that re-apply bit-identically, refused recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinedx.errors import InputError
from spinedx.imaging.intensity import (WINDOW_PRESETS, apply_recipe, channels, check_recipe,
                                       ct_window_recipe, percentile_bounds, percentile_recipe)


def test_bone_window_by_hand():
    """Bone W1800 L400: black at -500 HU, white at 1300 HU."""
    hu = np.array([-1000, -500, -50, 400, 850, 1300, 3000], dtype=np.float32)
    out = apply_recipe(hu, ct_window_recipe(["bone"]))
    assert out.shape == (1, 7) and out.dtype == np.float32
    assert np.array_equal(out[0], np.float32([0, 0, 0.25, 0.5, 0.75, 1, 1]))


def test_several_windows_stack_as_channels_in_order():
    hu = np.array([[-75.0, 50.0], [175.0, 400.0]], dtype=np.float32)
    recipe = ct_window_recipe(["spine_soft_tissue", "bone", ("custom", 0, 100)])
    out = apply_recipe(hu, recipe)
    assert out.shape == (3, 2, 2)
    assert channels(recipe) == ["spine_soft_tissue", "bone", "custom"]
    # Soft tissue W250 L50: -75 -> 0, 50 -> 0.5, 175 -> 1.
    assert np.array_equal(out[0], np.float32([[0, 0.5], [1, 1]]))
    assert np.array_equal(out[1], np.float32([[425, 550], [675, 900]]) / np.float32(1800))
    assert np.array_equal(out[2], np.float32([[0, 1], [1, 1]]))


def test_presets_are_the_documented_numbers():
    assert WINDOW_PRESETS["bone"] == (400.0, 1800.0)
    assert WINDOW_PRESETS["spine_soft_tissue"] == (50.0, 250.0)
    assert ct_window_recipe(["lung"]) == {"kind": "ct_window",
                                          "windows": [{"name": "lung", "level": -600.0, "width": 1500.0}]}


def test_percentile_normalisation_by_hand():
    values = np.arange(101, dtype=np.float32)  # the p-th percentile of 0..100 is p
    recipe = percentile_recipe(10, 90, "volume")
    assert percentile_bounds(values, recipe) == (10.0, 90.0)
    out = apply_recipe(values, recipe)
    assert out.shape == (1, 101)
    assert np.array_equal(out[0, [0, 10, 30, 50, 70, 90, 100]], np.float32([0, 0, 0.25, 0.5, 0.75, 1, 1]))
    # 0.5-99.5 %: bounds 0.5 and 99.5 exactly (numpy's linear method).
    assert percentile_bounds(values, percentile_recipe(0.5, 99.5, "volume")) == (0.5, 99.5)


def test_percentiles_inside_a_mask():
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mask = np.zeros(values.shape, dtype=np.uint16)
    mask[1] = 3  # voxels 12..23
    recipe = percentile_recipe(0, 100, "mask")
    assert percentile_bounds(values, recipe, mask=mask) == (12.0, 23.0)
    out = apply_recipe(values, recipe, mask=mask)
    assert np.array_equal(out[0, 1, 0], (np.float32([12, 13, 14, 15]) - 12) / np.float32(11))
    assert np.all(out[0, 0] == 0)


def test_recorded_recipe_reapplies_bit_identically():
    rng = np.random.default_rng(3)
    volume = rng.normal(200, 400, size=(6, 7, 8)).astype(np.float32)
    mask = (rng.random(volume.shape) > 0.5).astype(np.uint8)
    for recipe in (ct_window_recipe(["bone", "soft_tissue", ("narrow", 37.5, 123.25)]),
                   percentile_recipe(0.5, 99.5, "mask"), percentile_recipe(1, 99, "volume")):
        first = apply_recipe(volume, recipe, mask=mask)
        card = json.dumps({"intensity": recipe})  # as the model card stores it
        recorded = json.loads(card)["intensity"]
        assert recorded == recipe
        assert apply_recipe(volume, recorded, mask=mask).tobytes() == first.tobytes()
        assert float(first.min()) >= 0 and float(first.max()) <= 1


@pytest.mark.parametrize("recipe, problem", [
    ({"kind": "gamma"}, "kind"),
    ({"kind": "ct_window", "windows": []}, "at least one window"),
    ({"kind": "ct_window", "windows": [{"name": "w", "level": 40, "width": 0}]}, "positive width"),
    ({"kind": "ct_window", "windows": [{"name": "w", "level": float("nan"), "width": 80}]}, "JSON values|finite"),
    ({"kind": "ct_window", "windows": [{"name": "w", "level": 40, "width": 80, "gamma": 2}]}, "name', 'level', 'width"),
    ({"kind": "percentile", "low": 99, "high": 1, "region": "volume"}, "low < high"),
    ({"kind": "percentile", "low": 1, "high": 99, "region": "brain"}, "region"),
    ({"kind": "percentile", "low": 1, "high": 99}, "exactly kind, low, high, region"),
    ({"kind": "percentile", "low": np.float64(1), "high": 99, "region": "volume"}, "JSON values"),
])
def test_refused_recipes(recipe, problem):
    with pytest.raises(ValueError, match=problem):
        check_recipe(recipe)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="bone, spine_soft_tissue"):
        ct_window_recipe(["bones"])


def test_degenerate_data_names_the_source():
    recipe = percentile_recipe(1, 99, "mask")
    with pytest.raises(InputError, match="^ct/P1: the mask is empty"):
        apply_recipe(np.ones((2, 2, 2)), recipe, mask=np.zeros((2, 2, 2)), source="ct/P1")
    with pytest.raises(InputError, match="^ct/P2: the 1 and 99 percentiles coincide"):
        apply_recipe(np.ones((2, 2, 2)), percentile_recipe(1, 99, "volume"), source="ct/P2")
    with pytest.raises(ValueError, match="needs the mask"):
        apply_recipe(np.ones((2, 2, 2)), recipe)
