"""Shared fixtures: hand-made labelme trees (independent of the demo generator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinedx import config as configuration

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def config():
    return configuration.resolve({})


def write_labelme(json_path: Path, image_name: str | None, points, *, shape_type="rectangle",
                  size=(40, 30), extra: dict | None = None, image: np.ndarray | None = None,
                  image_mode: str = "L", shapes=None):
    """Write an image (unless image_name is None) and a labelme 5.x JSON next to it."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    if image_name is not None and image is not False:
        # Distinct pixels per file: identical images under two patients are refused.
        offset = sum(json_path.as_posix().encode())
        pixels = image if image is not None else ((np.arange(width * height) + offset) % 251).reshape(height, width).astype(np.uint8)
        Image.fromarray(pixels).convert(image_mode).save(json_path.parent / image_name)
    document = {
        "version": "5.4.1", "flags": {},
        "shapes": shapes if shapes is not None else [
            {"label": "tumor", "points": points, "group_id": None, "description": "",
             "shape_type": shape_type, "flags": {}, "mask": None}],
        "imagePath": image_name, "imageData": None, "imageHeight": height, "imageWidth": width,
    }
    document.update(extra or {})
    json_path.write_text(json.dumps(document))
    return json_path


@pytest.fixture
def tree(tmp_path):
    """A minimal valid study: 2 patients x T1 folder with one image each."""
    images = tmp_path / "images"
    for patient in ("P1", "P2"):
        write_labelme(images / patient / "T1WI" / f"{patient}_a.json", f"{patient}_a.png", [[5, 4], [20, 18]])
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["P1", "P2"], "diagnosis": ["ependymoma", "schwannoma"],
                  "cohort": ["internal", "external"], "age": [40, 70], "sex": ["F", "M"]}).to_csv(cases, index=False)
    return images, cases
