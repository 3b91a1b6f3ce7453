"""Training augmentation: random rotation, zoom and horizontal flip as one batched affine
resampling on the device, its random parameters drawn on the CPU from the job's seeded
generator (so every device sees the same numbers)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augmentation_parameters(n: int, generator: torch.Generator, settings: dict):
    """Per-image rotation (radians, uniform in +-rotation_degrees), zoom (uniform in
    [1, max_scale]) and horizontal flip (-1 with p=0.5, else 1), drawn on the CPU from the
    job's generator so every device sees the same numbers."""
    draws = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    angle = (draws[:, 0] * 2 - 1) * math.radians(settings["rotation_degrees"])
    scale = 1 + draws[:, 1] * (settings["max_scale"] - 1)
    flip = torch.where(draws[:, 2] < 0.5, -1.0, 1.0) if settings["hflip"] else torch.ones(n, dtype=torch.float64)
    return angle, scale, flip


def augment(batch: torch.Tensor, generator: torch.Generator, settings: dict) -> torch.Tensor:
    """Random rotation, horizontal flip and zoom as one batched affine resampling.

    ``batch`` is N x 1 x H x W in [0, 1]. The resampling runs where the batch lives, with
    no per-image loop; per image it equals torchvision's ``affine(rotate, scale)`` followed
    by ``horizontal_flip`` (tested), i.e. the classic CPU augmentation.
    """
    n = batch.shape[0]
    angle, scale, flip = augmentation_parameters(n, generator, settings)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps output to input coordinates: input = R(angle) / scale @ diag(flip, 1).
    theta = torch.stack([
        torch.stack([cos * flip, -sin, torch.zeros(n, dtype=torch.float64)], 1),
        torch.stack([sin * flip, cos, torch.zeros(n, dtype=torch.float64)], 1),
    ], 1).to(device=batch.device, dtype=batch.dtype)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
