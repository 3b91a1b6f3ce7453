"""Detection preprocessing stage: every case as the networks see it, in one file.

Per case (:func:`spinedx.imaging.detection_cache.prepare_case`): the sequences resampled
to ``detection_preprocessing.spacing_mm``, normalised by the MR percentile recipe of
``detection_preprocessing.intensity``, stacked as channels in the order of ``sequences``, cropped to
the head plus ``detection_preprocessing.crop_margin_mm``; the lesion labels on the same crop (training
targets and validation ground truth only: the study's own evaluation uses the original
labels). A table records per case and sequence what was done (percentile bounds, grid,
crop), for the report and the model card.
"""

from __future__ import annotations

import logging

import pandas as pd

from spinedx.detection_task import LESIONS_NAME
from spinedx.imaging.detection_cache import prepare_case, write_cache
from spinedx.imaging.intensity import percentile_recipe
from spinedx.io import write_parquet
from spinedx.readers.detection_cases import path_column, read_cases_table
from spinedx.readers.volume import read_mask, read_volume

log = logging.getLogger(__name__)


def intensity_recipe(config) -> dict:
    """The study's intensity recipe (config ``detection_preprocessing.intensity``) as a plain dict."""
    settings = config["detection_preprocessing"]["intensity"]
    return percentile_recipe(settings["low"], settings["high"], "volume")


def main_stage(config, cases_path, out_cache, out_table) -> None:
    sequences = list(config["sequences"])
    preprocessing = config["detection_preprocessing"]
    recipe = intensity_recipe(config)
    max_voxels = config["data"]["max_volume_voxels"]
    cases = read_cases_table(cases_path)
    prepared, rows = {}, []
    for case in cases.to_dict("records"):
        patient_id = case["patient_id"]
        images = [read_volume(case[path_column(s)], max_voxels=max_voxels) for s in sequences]
        labels = read_mask(case[path_column(LESIONS_NAME)], max_voxels=max_voxels)
        prepared[patient_id] = prepare_case(
            images, labels, sequences=sequences, spacing_mm=preprocessing["spacing_mm"], recipe=recipe,
            foreground_threshold=preprocessing["foreground_threshold"], crop_margin_mm=preprocessing["crop_margin_mm"],
            source=f"patient {patient_id}")
        record = prepared[patient_id].record
        for sequence in sequences:
            low, high = record["percentiles"][sequence]
            rows.append({"patient_id": patient_id, "sequence": sequence, "p_low": low, "p_high": high,
                         **{f"spacing_{a}": s for a, s in zip("zyx", record["spacing_mm"])},
                         **{f"crop_start_{a}": s for a, s in zip("zyx", record["crop_start"])},
                         **{f"crop_shape_{a}": s for a, s in zip("zyx", record["crop_shape"])},
                         "foreground_voxels": record["foreground_voxels"]})
    write_cache(out_cache, prepared, sequences)
    write_parquet(pd.DataFrame(rows), out_table)
    voxels = sum(case.labels.size for case in prepared.values())
    log.info("%d cases, %d channels, %.1f M voxels after cropping -> %s", len(prepared), len(sequences),
             voxels / 1e6, out_cache)
