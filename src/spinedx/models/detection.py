"""Lesion-detection networks as the detection stages use them: built from a model's
config entry, saved and loaded as plain checkpoints, trained on patches, run over whole
volumes.

A network comes from :func:`spinedx.models.segmentation.build_network` (DeepMedic or a
MONAI U-Net), one output channel of logits; ``torch.sigmoid`` gives the lesion
probability of a voxel. Its checkpoint holds what rebuilds it (network name, options,
input channels) and the geometry it was trained with, as plain Python values, so it
loads with ``weights_only=True``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spinedx.errors import InputError
from spinedx.imaging.patches import network_geometry, sliding_window_probability
from spinedx.models.segmentation import build_network

#: Checkpoint fields that rebuild a detection network (plain Python values).
NETWORK_FIELDS = ("network", "options", "in_channels")
LOSSES = ("bce", "dice_bce")
# Soft Dice smoothing (keeps the loss defined on patches without lesion voxels).
DICE_SMOOTH = 1.0


def build_detector(network: str, options: dict, in_channels: int) -> nn.Module:
    """One-output-channel network; refuses options its constructor rejects, naming them."""
    try:
        return build_network(network, in_channels=in_channels, out_channels=1, **options)
    except (TypeError, ValueError, KeyError) as error:
        raise InputError(f"cannot build network {network!r} with options {options}: {error}; fix "
                         "config detection.models.<name>.options") from error


def check_geometry(model: nn.Module, patch, window, name: str) -> None:
    """Patch and window sizes the network can take (multiples of its size divisor)."""
    _, divisor = network_geometry(model)
    for key, sizes in (("patch", patch), ("window", window)):
        if any(int(s) % divisor for s in sizes):
            raise InputError(f"config detection.models.{name}.{key} {list(sizes)} must be multiples of "
                             f"{divisor} for network {type(model).__name__}")


def detector_from_checkpoint(payload: dict, device: torch.device) -> nn.Module:
    """The network of a detection checkpoint (``spinedx.models.checkpoints.load_checkpoint``)."""
    missing = [f for f in (*NETWORK_FIELDS, "state_dict") if f not in payload]
    if missing:
        raise InputError(f"checkpoint lacks {missing}: it is not a detection model (retrain it)")
    model = build_detector(payload["network"], payload["options"], payload["in_channels"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def detection_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean voxel-wise binary cross-entropy, plus (``dice_bce``) the soft Dice loss of the
    whole batch. ``logits`` (batch, 1, z, y, x), ``target`` the same shape, 0/1 floats."""
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {LOSSES}; got {loss!r}")
    value = F.binary_cross_entropy_with_logits(logits, target)
    if loss == "dice_bce":
        probability = torch.sigmoid(logits)
        overlap = (probability * target).sum()
        value = value + 1 - (2 * overlap + DICE_SMOOTH) / (probability.sum() + target.sum() + DICE_SMOOTH)
    return value


def probability_map(model: nn.Module, volume, *, window, settings: dict, device, autocast) -> np.ndarray:
    """Lesion probability of every voxel of a ``(channels, z, y, x)`` volume (float32,
    ``(z, y, x)``), by sliding windows (config ``detection.inference``: overlap, blend,
    windows per pass); ``autocast`` is the job's mixed-precision context factory."""
    with autocast(device):
        return sliding_window_probability(
            volume, model, window=tuple(int(w) for w in window), overlap=settings["overlap"],
            blend=settings["blend"], sw_batch_size=settings["sw_batch_size"], device=device,
            activation="sigmoid")
