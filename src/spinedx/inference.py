"""Inference stage: score images with one fold model.

Each fold model scores the external cohort and its own validation patients (giving the
out-of-fold predictions of the internal cohort); training patients are not scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinedx import models
from spinedx.errors import InputError
from spinedx.preprocessing import align, read_cache
from spinedx.splits import read_folds

PREDICTION_COLUMNS = ["image_id", "patient_id", "sequence", "cohort", "label", "fold", "role", "prob"]


@torch.no_grad()
def predict(model, pixels: np.ndarray, checkpoint: dict, device: torch.device, batch_size: int) -> np.ndarray:
    """Positive-class probability of every image (uint8 N x H x W), batched."""
    if pixels.shape[1:] != (checkpoint["image_size"],) * 2:
        raise InputError(
            f"images are {pixels.shape[1]}x{pixels.shape[2]} but the model was trained on "
            f"{checkpoint['image_size']}px; preprocess with the same preprocessing.size"
        )
    tensor = torch.from_numpy(pixels)
    probabilities = []
    for batch in torch.split(tensor, batch_size):
        inputs = models.to_model_input(batch.to(device), checkpoint["mean"], checkpoint["std"], checkpoint["in_chans"])
        probabilities.append(torch.softmax(model(inputs).float(), 1)[:, -1].cpu())
    return torch.cat(probabilities).numpy().astype(np.float64) if probabilities else np.zeros(0)


def score_fold(checkpoint_path, cache_path, images_path, folds_path, fold: int, config: dict) -> pd.DataFrame:
    checkpoint = models.load_checkpoint(checkpoint_path)
    if checkpoint["fold"] != fold:
        raise InputError(f"{checkpoint_path}: checkpoint of fold {checkpoint['fold']}, expected fold {fold}")
    images = pd.read_parquet(images_path)
    folds = read_folds(folds_path)
    fold_of = images["patient_id"].map(folds.set_index("patient_id")["fold"])
    role = np.where(images["cohort"] == "external", "external",
                    np.where(fold_of == fold, "validation", "training"))
    keep = role != "training"
    selected = images[keep].reset_index(drop=True)
    models.configure_threads(config["training"]["threads"], config["training"]["deterministic"])
    device = models.select_device(config["training"]["device"])
    model = models.model_from_checkpoint(checkpoint, device)
    pixels = align(read_cache(cache_path), selected, cache_path)
    table = selected[["image_id", "patient_id", "sequence", "cohort", "label"]].copy()
    table["fold"] = int(fold)
    table["role"] = role[keep]
    table["prob"] = predict(model, pixels, checkpoint, device, config["inference"]["batch_size"])
    return table[PREDICTION_COLUMNS]


def write_predictions(table: pd.DataFrame, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
