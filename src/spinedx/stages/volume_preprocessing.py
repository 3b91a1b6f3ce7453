"""Preprocessing stage of a volume study: one sequence's model inputs in one input mode.

Each case of the annotations table is read again through the volume readers, resampled,
put through the intensity recipe and cropped around its lesion
(:mod:`spinedx.imaging.volume_inputs`); the crops go into the cache
(:mod:`spinedx.imaging.volume_cache`) and one row per crop into the crops table, which
training, inference and Grad-CAM read in place of the annotations table (same key
columns: image_id, patient_id, sequence, diagnosis, label, cohort). A crop's image_id is
``<patient>/<sequence folder>`` (3d) or ``<patient>/<sequence folder>/<plane><slice>``
(2d, 2.5d: the slice's index on the resampled grid).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.imaging.crops import PLANES
from spinedx.imaging.volume_cache import write_volume_cache
from spinedx.imaging.volume_inputs import crop_shape, input_channels, mode_crops, prepare_case
from spinedx.io import write_parquet
from spinedx.readers.volume_tree import read_case

log = logging.getLogger(__name__)

AXES = ("z", "y", "x")
#: Columns copied from the case's annotations row (enough to read the case again:
#: spinedx.readers.volume_tree.read_case; spacing for the distribution-shift statistics).
CASE_COLUMNS = ["patient_id", "sequence", "sequence_folder", "diagnosis", "label", "cohort",
                "image_path", "annotation_path", "annotation_kind", "image_sha256", "voxels_sha256",
                *(f"shape_{a}" for a in AXES), *(f"spacing_{a}" for a in AXES),
                *(f"box_{a}{end}" for a in AXES for end in ("0", "1"))]
#: window_*, grid_box_*: the crop's window and the lesion's box on the resampled grid
#: (grid_*: its shape); start inclusive, stop exclusive.
CROP_COLUMNS = ["image_id", "case_id", *CASE_COLUMNS, "mode", "plane", "slice",
                *(f"window_{a}{end}" for a in AXES for end in ("0", "1")),
                *(f"grid_box_{a}{end}" for a in AXES for end in ("0", "1")),
                *(f"grid_{a}" for a in AXES)]


def crop_rows(row, case, crops, mode: str, plane: str) -> list[dict]:
    """One crops-table row per crop of a case: where its window and the lesion's box lie
    on the resampled grid (start inclusive, stop exclusive; ``slice``: the index along the
    plane's normal, -1 for 3d)."""
    base = {"case_id": row.image_id, **{column: getattr(row, column) for column in CASE_COLUMNS},
            "mode": mode, "plane": plane if mode != "3d" else "",
            **{f"grid_box_{a}0": int(v) for a, v in zip(AXES, case.box.start)},
            **{f"grid_box_{a}1": int(v) for a, v in zip(AXES, case.box.stop)},
            **{f"grid_{a}": int(n) for a, n in zip(AXES, case.mask.shape)}}
    rows = []
    for window in crops.windows:
        normal = PLANES[plane][0]
        index = window.start[normal] if mode != "3d" else -1
        image_id = row.image_id if mode == "3d" else f"{row.image_id}/{plane}{index:04d}"
        rows.append({"image_id": image_id, "slice": int(index), **base,
                     **{f"window_{a}0": int(s) for a, s in zip(AXES, window.start)},
                     **{f"window_{a}1": int(s + n) for a, s, n in zip(AXES, window.start, window.shape)}})
    return rows


def build_cache(images: pd.DataFrame, images_dir, config, mode: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Every case's crops in ``mode`` (cases in table order) and their table."""
    settings = config["preprocessing"]
    arrays, rows = [], []
    for row in images.itertuples(index=False):
        image, lesion = read_case(row, images_dir, config["data"]["max_volume_voxels"])
        case = prepare_case(image, lesion, settings, source=Path(images_dir) / row.image_path)
        crops = mode_crops(case, mode, settings)
        arrays.append(crops.images)
        rows += crop_rows(row, case, crops, mode, settings["plane"])
    shape = (input_channels(mode, settings), *crop_shape(mode, settings))
    stack = np.concatenate(arrays) if arrays else np.zeros((0, *shape), np.float32)
    return stack, pd.DataFrame(rows, columns=CROP_COLUMNS)


def main_stage(config, images_path, images_dir, mode: str, out, crops_out) -> pd.DataFrame:
    """The workflow stage: the cache and crops table of one sequence in one input mode."""
    images = pd.read_parquet(images_path).sort_values("image_id").reset_index(drop=True)
    stack, crops = build_cache(images, images_dir, config, mode)
    write_volume_cache(stack, crops["image_id"], mode, out)
    write_parquet(crops, crops_out)
    log.info("%s: %d crops %s of %d cases -> %s", mode, len(crops), list(stack.shape[1:]), len(images), out)
    return crops
