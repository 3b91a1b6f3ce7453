"""Inference stage: score images with the fold models of one backbone x sequence.

Each fold model scores the external cohort and its own validation patients (giving the
out-of-fold predictions of the internal cohort); training patients are not scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from spinedx import models
from spinedx.errors import InputError
from spinedx.preprocessing import align, read_cache
from spinedx.splits import read_folds

PREDICTION_COLUMNS = ["image_id", "patient_id", "sequence", "cohort", "label", "fold", "role", "prob"]


@torch.no_grad()
def predict(model, pixels: torch.Tensor, checkpoint: dict, batch_size: int,
            acceleration: models.Acceleration = models.Acceleration()) -> np.ndarray:
    """Positive-class probability of every image (uint8 N x H x W tensor, ideally already
    on the model's device), batched; one host read at the end."""
    if tuple(pixels.shape[1:]) != (checkpoint["image_size"],) * 2:
        raise InputError(
            f"images are {pixels.shape[1]}x{pixels.shape[2]} but the model was trained on "
            f"{checkpoint['image_size']}px; preprocess with the same preprocessing.size"
        )
    device = next(model.parameters()).device
    probabilities = []
    for batch in torch.split(pixels, batch_size):
        inputs = models.to_model_input(batch.to(device), checkpoint["mean"], checkpoint["std"], checkpoint["in_chans"])
        with acceleration.autocast(device):
            logits = model(acceleration.layout(inputs))
        probabilities.append(torch.softmax(logits.float(), 1)[:, -1])
    return torch.cat(probabilities).cpu().numpy().astype(np.float64) if probabilities else np.zeros(0)


def score_folds(checkpoint_paths, cache_path, images_path, folds_path, config: dict) -> pd.DataFrame:
    """Every fold model of one backbone x sequence on its validation patients and the
    external cohort. The cache is read and moved to the device once for all folds; the
    external images go through each fold model once, and the later stages (ensembling,
    tables, figures) reuse this table instead of scoring again."""
    images = pd.read_parquet(images_path)
    if folds_path is None:  # audit mode: released models, no cross-validation patients
        fold_of = np.full(len(images), -1)
    else:
        folds = read_folds(folds_path)
        fold_of = images["patient_id"].map(folds.set_index("patient_id")["fold"]).to_numpy()
    external = (images["cohort"] == "external").to_numpy()
    cache = read_cache(cache_path)
    models.configure_threads(config["training"]["threads"], config["training"]["deterministic"])
    device = models.select_device(config["training"]["device"])
    # Scoring never compiles: one pass per model does not repay the compile time.
    acceleration = dataclasses.replace(models.resolve_acceleration(config["training"], device), compile=False)
    models.apply_backend_settings(acceleration, device)
    pixels = torch.from_numpy(align(cache, images, cache_path)).to(device)
    tables = []
    for path in checkpoint_paths:
        checkpoint = models.load_checkpoint(path)
        fold = checkpoint["fold"]
        keep = external | (fold_of == fold)  # training patients are not scored
        selected = images[keep].reset_index(drop=True)
        model = acceleration.prepare(models.model_from_checkpoint(checkpoint, device))
        table = selected[["image_id", "patient_id", "sequence", "cohort", "label"]].copy()
        table["fold"] = int(fold)
        table["role"] = np.where(external[keep], "external", "validation")
        rows = torch.from_numpy(np.flatnonzero(keep)).to(device)
        table["prob"] = predict(model, pixels[rows], checkpoint, config["inference"]["batch_size"], acceleration)
        tables.append(table[PREDICTION_COLUMNS])
    scored = [int(t["fold"].iloc[0]) for t in tables if len(t)]
    if len(set(scored)) != len(tables):
        raise InputError(f"checkpoints {list(map(str, checkpoint_paths))} do not hold distinct folds: {scored}")
    return pd.concat(tables, ignore_index=True)
