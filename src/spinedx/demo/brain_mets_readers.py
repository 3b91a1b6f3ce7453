"""Synthetic readers of the brain-metastasis demo: lesion marks of plausible skill.

Each reader reads every case of the chosen cohort and

- **finds** a lesion of equivalent diameter ``d`` with probability
  ``1 / (1 + exp(-(d - d50) / 0.8 mm))``: ``d50`` (the diameter found half the time) is
  drawn per reader around ``diameter_50_mm`` (sd ``diameter_50_sd_mm``), so 2 mm lesions
  are mostly missed and lesions above 7 mm almost never; the mark is set at the lesion's
  centroid plus a click error (normal, sd ``click_sd_mm`` per axis), so a mark on a
  lesion of one or two voxels may land beside it (a miss and a false positive, as in a
  real reading);
- **mistakes** a few bright spots for lesions: a Poisson number of false-positive marks
  per case with the reader's own rate (gamma-distributed around ``fp_per_case`` with sd
  ``fp_per_case_sd``), placed on the brightest voxels of the bright-blood image (the
  enhancing vessels a reader takes for lesions) at least two voxels from any lesion;
- gives a **confidence** 1-5: found lesions around 3.5-4.5 (higher for larger ones),
  false positives around 2.

The study's 12 radiologists reached 88.7 +- 3.7 % at 0.17 +- 0.09 false positives per
case on their lesions; the defaults give a similar false-positive rate, and a lower
sensitivity on the demo's lesions, 45 % of which are below 5 mm. Everything derives from
``seed`` through independent streams per reader and case, so the marks do not depend on
the order cases are read in. Marks are in LPS millimetres (columns of
:mod:`spinedx.readers.lesion_marks`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from spinedx.imaging.components import lesions_from_mask
from spinedx.readers.lesion_marks import MARK_COLUMNS
from spinedx.readers.volume import Volume

SETTING_KEYS = ("seed", "n_readers", "diameter_50_mm", "diameter_50_sd_mm", "fp_per_case", "fp_per_case_sd",
                "click_sd_mm")
SLOPE_MM = 0.8
# Candidate false-positive places: the brightest share of the head's bright-blood voxels.
BRIGHT_SHARE = 0.005
LESION_CLEARANCE_VOXELS = 2
# The head: voxels brighter than this share of the image's 99.9th percentile (air is near 0).
HEAD_LEVEL = 0.1


def reader_names(n_readers: int) -> list[str]:
    return [f"R{k + 1}" for k in range(int(n_readers))]


def reader_skills(settings: dict) -> pd.DataFrame:
    """Per reader: the diameter found half the time and the false-positive rate."""
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise ValueError(f"demo reader settings lack {missing}; resolve them from the config schema")
    rows = []
    for index, name in enumerate(reader_names(settings["n_readers"])):
        rng = np.random.default_rng([int(settings["seed"]), 1, index])
        d50 = max(float(rng.normal(settings["diameter_50_mm"], settings["diameter_50_sd_mm"])), 0.0)
        mean, sd = float(settings["fp_per_case"]), float(settings["fp_per_case_sd"])
        fp = float(rng.gamma((mean / sd) ** 2, sd ** 2 / mean)) if mean > 0 and sd > 0 else mean
        rows.append({"reader": name, "diameter_50_mm": d50, "fp_per_case": fp})
    return pd.DataFrame(rows)


def read_case(patient_id: str, case_index: int, labels: Volume, bright_blood: Volume, settings: dict,
              skills: pd.DataFrame) -> pd.DataFrame:
    """Every reader's marks on one case (columns of :data:`MARK_COLUMNS`)."""
    lesions = lesions_from_mask(labels.array, labels.spacing, instances=True, affine=labels.affine)
    near_lesion = ndimage.binary_dilation(labels.array > 0, iterations=LESION_CLEARANCE_VOXELS)
    head = bright_blood.array > HEAD_LEVEL * np.percentile(bright_blood.array, 99.9)
    places = np.flatnonzero(head & ~near_lesion)
    values = bright_blood.array.ravel()[places]
    if places.size:
        places = places[values >= np.quantile(values, 1 - BRIGHT_SHARE)]
    rows = []
    for reader_index, skill in enumerate(skills.itertuples()):
        rng = np.random.default_rng([int(settings["seed"]), 2, reader_index, case_index])
        for region in lesions.regions:
            found = 1 / (1 + np.exp(-(region.equivalent_diameter_mm - skill.diameter_50_mm) / SLOPE_MM))
            if rng.random() < found:
                point = np.asarray(region.centroid_world) + rng.normal(0, settings["click_sd_mm"], 3)
                confidence = np.clip(np.round(3 + 1.5 * found + rng.normal(0, 0.6)), 1, 5)
                rows.append((skill.reader, patient_id, *point, float(confidence)))
        n_fp = int(rng.poisson(skill.fp_per_case)) if places.size else 0
        for flat in rng.choice(places, size=n_fp, replace=True) if n_fp else []:
            index = np.array(np.unravel_index(flat, labels.shape), dtype=float)
            point = labels.voxel_to_world(index) + rng.normal(0, settings["click_sd_mm"], 3)
            confidence = np.clip(np.round(2 + rng.normal(0, 0.8)), 1, 5)
            rows.append((skill.reader, patient_id, *point, float(confidence)))
    return pd.DataFrame(rows, columns=list(MARK_COLUMNS))
