"""A model's penultimate-layer features: what its classifier head sees, per image.

timm models (labelme backbones; a volume study's 2d and 2.5d models) split the forward
pass into ``forward_features`` (the backbone) and ``forward_head``;
``forward_head(..., pre_logits=True)`` stops before the last linear layer, after pooling
(and, for some families, a head convolution), so the features are one vector per image
whatever the architecture. MONAI's 3-D networks (a volume study's 3d models) have no such
split: their features are the input of the last linear layer the forward pass calls
(ResNet ``fc``, DenseNet121 ``class_layers.out``, Classifier ``final``), read by a hook.
The input transform is the one the scoring stages apply: labelme images through
:func:`spinedx.models.backbones.to_model_input`, a volume study's cached crops through
:func:`spinedx.models.volumetric.normalise` (a checkpoint with a ``mode`` is a volume model).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spinedx.errors import InputError
from spinedx.models.backbones import to_model_input
from spinedx.models.device import Acceleration
from spinedx.models.volumetric import check_inputs, normalise


def _input_transform(checkpoint: dict):
    """The stored batch -> the network's input (the transform inference applies)."""
    if "mode" in checkpoint:  # a volume model: float32 crops in [0, 1]
        return lambda batch: normalise(batch.float(), checkpoint["mean"], checkpoint["std"])
    return lambda batch: to_model_input(batch, checkpoint["mean"], checkpoint["std"], checkpoint["in_chans"])


def _last_linear_input(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The input of the last ``nn.Linear`` the forward pass calls (the classifier's)."""
    seen: list[torch.Tensor] = []
    hooks = [module.register_forward_hook(lambda m, args, output: seen.append(args[0]))
             for module in model.modules() if isinstance(module, nn.Linear)]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise InputError(f"{type(model).__name__}: no linear classifier layer to take features before")
    return seen[-1]


@torch.no_grad()
def penultimate_features(model, pixels: torch.Tensor, checkpoint: dict, batch_size: int,
                         acceleration: Acceleration = Acceleration()) -> np.ndarray:
    """Features (N x D, float64) of every image (uint8 N x H x W tensor) or cached crop of a
    volume model (float32 N x C x ... tensor), batched."""
    if "mode" in checkpoint:
        check_inputs(pixels, checkpoint, "cache")
    device = next(model.parameters()).device
    model.eval()
    prepare = _input_transform(checkpoint)
    features = []
    for batch in torch.split(pixels, batch_size):
        inputs = acceleration.layout(prepare(batch.to(device)))
        with acceleration.autocast(device):
            if hasattr(model, "forward_head"):  # timm
                pooled = model.forward_head(model.forward_features(inputs), pre_logits=True)
            else:  # MONAI 3-D networks
                pooled = _last_linear_input(model, inputs)
        features.append(pooled.float().flatten(1))
    if not features:
        width = getattr(model, "num_features", 0)
        return np.zeros((0, width))
    return torch.cat(features).cpu().numpy().astype(np.float64)
