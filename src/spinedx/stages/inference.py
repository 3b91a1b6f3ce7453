"""Inference stage: score images with the fold models of one backbone x sequence.

Each fold model scores the external cohorts and its own validation patients (giving the
out-of-fold predictions of the internal cohort); training patients are not scored. A
hold-out model (config ``splits.scheme``) scores the external cohorts and its repeat's
validation and internal-test patients. ``role`` says which: external, validation or
internal_test. The output has one probability column per class (:mod:`spinedx.task`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from spinedx.errors import InputError
from spinedx.imaging.cache import align, read_cache
from spinedx.imaging.volume_cache import read_volume_cache
from spinedx.input_modes import volume_study
from spinedx.io import write_parquet
from spinedx.models import volumetric
from spinedx.models.backbones import to_model_input
from spinedx.models.checkpoints import load_checkpoint, model_from_checkpoint
from spinedx.models.device import Acceleration, set_up, softmax_in_batches
from spinedx.splitting import SCORED_PARTITIONS, model_partitions, read_folds
from spinedx.task import task_from_config

#: Columns before the probability columns (one per class).
KEY_COLUMNS = ["image_id", "patient_id", "sequence", "cohort", "label", "fold", "role"]


@torch.no_grad()
def predict(model, pixels: torch.Tensor, checkpoint: dict, batch_size: int,
            acceleration: Acceleration = Acceleration()) -> np.ndarray:
    """Softmax probabilities (N x classes, float64) of every image (uint8 N x H x W
    tensor, ideally already on the model's device), batched; one host read at the end."""
    if tuple(pixels.shape[1:]) != (checkpoint["image_size"],) * 2:
        raise InputError(
            f"images are {pixels.shape[1]}x{pixels.shape[2]} but the model was trained on "
            f"{checkpoint['image_size']}px; preprocess with the same preprocessing.size"
        )
    return softmax_in_batches(
        model, pixels, batch_size, acceleration, n_classes=checkpoint["n_classes"],
        prepare=lambda batch: to_model_input(batch, checkpoint["mean"], checkpoint["std"], checkpoint["in_chans"]))


def score_folds(checkpoint_paths, cache_path, images_path, folds_path, config) -> pd.DataFrame:
    """Every fold model of one backbone x sequence on its validation patients and the
    external cohort. The cache is read and moved to the device once for all folds; the
    external images go through each fold model once, and the later stages (ensembling,
    tables, figures) reuse this table instead of scoring again."""
    task = task_from_config(config, decisions=False)
    images = pd.read_parquet(images_path)
    splits = None if folds_path is None else read_folds(folds_path)  # None: audit mode, all external
    external = (images["cohort"] != "internal").to_numpy()
    volume = volume_study(config)  # crops of a volume study's input mode (spinedx.models.volumetric)
    cache = (read_volume_cache if volume else read_cache)(cache_path)
    # Scoring never compiles: one pass per model does not repay the compile time.
    device, acceleration = set_up(config["training"], compile=False,
                                  **({"channels_last": False} if volume and cache["mode"] == "3d" else {}))
    pixels = torch.from_numpy(align(cache, images, cache_path)).to(device)
    tables = []
    for path in checkpoint_paths:
        checkpoint = load_checkpoint(path)
        if list(checkpoint["classes"]) != list(task.classes):
            raise InputError(f"{path}: trained for classes {checkpoint['classes']}, config says "
                             f"{list(task.classes)}; retrain or fix config `classes`")
        fold = checkpoint["fold"]
        role = (np.where(external, "external", "train") if splits is None
                else model_partitions(images, splits, fold, folds_path))
        keep = external | np.isin(role, SCORED_PARTITIONS)  # training patients are not scored
        selected = images[keep].reset_index(drop=True)
        model = acceleration.prepare(model_from_checkpoint(checkpoint, device))
        table = selected[["image_id", "patient_id", "sequence", "cohort", "label"]].copy()
        table["fold"] = int(fold)
        table["role"] = role[keep]
        rows = torch.from_numpy(np.flatnonzero(keep)).to(device)
        if volume:
            probabilities = volumetric.predict(model, pixels[rows], checkpoint, config["inference"]["batch_size"],
                                               acceleration, cache_path)
        else:
            probabilities = predict(model, pixels[rows], checkpoint, config["inference"]["batch_size"], acceleration)
        tables.append(pd.concat([table[KEY_COLUMNS], task.probability_table(probabilities)], axis=1))
    scored = [int(t["fold"].iloc[0]) for t in tables if len(t)]
    if len(set(scored)) != len(tables):
        raise InputError(f"checkpoints {list(map(str, checkpoint_paths))} do not hold distinct folds: {scored}")
    return pd.concat(tables, ignore_index=True)


def main_stage(config, checkpoint_paths, cache_path, images_path, folds_path, out) -> pd.DataFrame:
    table = score_folds(checkpoint_paths, cache_path, images_path, folds_path, config)
    write_parquet(table, out)
    return table
