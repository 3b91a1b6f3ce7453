"""A model's penultimate-layer features: what its classifier head sees, per image.

timm models split the forward pass into ``forward_features`` (the backbone) and
``forward_head``; ``forward_head(..., pre_logits=True)`` stops before the last linear
layer, after pooling (and, for some families, a head convolution), so the features are
one vector per image whatever the architecture. The input transform is the one every
model-running stage applies (:func:`spinedx.models.backbones.to_model_input`).
"""

from __future__ import annotations

import numpy as np
import torch

from spinedx.models.backbones import to_model_input
from spinedx.models.device import Acceleration


@torch.no_grad()
def penultimate_features(model, pixels: torch.Tensor, checkpoint: dict, batch_size: int,
                         acceleration: Acceleration = Acceleration()) -> np.ndarray:
    """Features (N x D, float64) of every image (uint8 N x H x W tensor), batched."""
    device = next(model.parameters()).device
    model.eval()
    features = []
    for batch in torch.split(pixels, batch_size):
        inputs = to_model_input(batch.to(device), checkpoint["mean"], checkpoint["std"], checkpoint["in_chans"])
        with acceleration.autocast(device):
            pooled = model.forward_head(model.forward_features(acceleration.layout(inputs)), pre_logits=True)
        features.append(pooled.float().flatten(1))
    if not features:
        return np.zeros((0, model.num_features))
    return torch.cat(features).cpu().numpy().astype(np.float64)
