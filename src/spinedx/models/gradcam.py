"""Grad-CAM of timm classifiers (pytorch-grad-cam): the target layer of a backbone, the
maps of one model, and the mean over the fold models of one backbone x sequence.

Maps are computed on the model's input (the cached crop), each scaled to [0, 1] by the
package; :func:`spinedx.imaging.slice_view.to_original` places them on the uncropped slice.
"""

from __future__ import annotations

import numpy as np
import torch

from spinedx.errors import InputError
from spinedx.models.backbones import to_model_input
from spinedx.models.checkpoints import model_from_checkpoint
from spinedx.models.device import Acceleration

# Modules that only rescale or gate a feature map: the CAM of the layer before is the same.
_PASS_THROUGH = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm,
                 torch.nn.ReLU, torch.nn.SiLU, torch.nn.GELU, torch.nn.Hardswish, torch.nn.Identity,
                 torch.nn.Dropout)


def find_target_layer(model, image_size: int, in_chans: int, override: str | None = None):
    """The layer whose activations Grad-CAM weighs, and its module path.

    Generic rule: the last top-level module, in forward order, whose output is a feature
    map of the spatial size of ``forward_features`` and which is not a norm or
    activation. This gives Inception-v3 ``Mixed_7c``, EfficientNet ``conv_head``, ResNet
    ``layer4`` (its last block's output) and MobileNetV3 ``blocks``; ``override`` (config
    gradcam.target_layers) names another module path.
    """
    if override:
        try:
            return model.get_submodule(override), override
        except AttributeError as error:
            raise InputError(f"config gradcam.target_layers: {type(model).__name__} has no module "
                             f"{override!r}; names: {[n for n, _ in model.named_children()]}") from error
    outputs: list[tuple[str, torch.nn.Module, tuple]] = []
    hooks = [module.register_forward_hook(
        lambda m, i, o, name=name: outputs.append((name, m, tuple(o.shape)))
        if isinstance(o, torch.Tensor) else None)
        for name, module in model.named_children()]
    try:
        # forward_features only: modules of the head (e.g. MobileNetV3's conv_head after
        # the pooling) never qualify, even when a tiny input makes every map 1 x 1.
        with torch.no_grad():
            features = model.forward_features(torch.zeros(1, in_chans, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = tuple(features.shape[-2:])
    candidates = [(name, module) for name, module, shape in outputs
                  if len(shape) == 4 and shape[-2:] == spatial and not isinstance(module, _PASS_THROUGH)]
    if not candidates:
        raise InputError(f"{type(model).__name__}: no feature-map layer found for Grad-CAM; name one "
                         "in config gradcam.target_layers")
    name, module = candidates[-1]
    return module, name


def fold_mean_cams(checkpoints: list[dict], pixels: np.ndarray, targets: np.ndarray,
                   device: torch.device, batch_size: int, target_layers: dict | None = None,
                   acceleration: Acceleration = Acceleration()) -> np.ndarray:
    """Grad-CAM of every image (uint8 N x S x S) for its target class, mean over the folds.

    ``acceleration`` sets the model's and the inputs' memory layout; the forward and
    backward passes run in fp32 (pytorch-grad-cam calls the model itself, outside any
    autocast) on an uncompiled model (its hooks need the eager modules).
    """
    total = np.zeros(pixels.shape, dtype=np.float64)
    for checkpoint in checkpoints:
        model = acceleration.prepare(model_from_checkpoint(checkpoint, device))
        layer, _ = find_target_layer(model, checkpoint["image_size"], checkpoint["in_chans"],
                                     (target_layers or {}).get(checkpoint["backbone"]))

        def inputs(batch: np.ndarray, checkpoint=checkpoint) -> torch.Tensor:
            return acceleration.layout(to_model_input(torch.from_numpy(batch).to(device), checkpoint["mean"],
                                                      checkpoint["std"], checkpoint["in_chans"]))

        total += grad_cams(model, layer, pixels, targets, inputs, batch_size,
                           f"{checkpoint['backbone']} fold {checkpoint['fold']}")
        del model
    return total / max(len(checkpoints), 1)


def grad_cams(model, layer, pixels: np.ndarray, targets: np.ndarray, to_input, batch_size: int,
              name: str = "model") -> np.ndarray:
    """pytorch-grad-cam's GradCAM of one model (each map scaled to [0, 1], input size)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    maps = []
    # The context manager removes the package's hooks afterwards, so memory does not grow
    # over many models and images.
    with GradCAM(model=model, target_layers=[layer]) as cam:
        for start in range(0, len(pixels), batch_size):
            classes = targets[start:start + batch_size]
            maps.append(cam(input_tensor=to_input(pixels[start:start + batch_size]),
                            targets=[ClassifierOutputTarget(int(c)) for c in classes]))
    # The package's __exit__ swallows IndexError: check that every batch came back.
    if sum(len(m) for m in maps) != len(pixels):
        raise InputError(f"Grad-CAM failed for {name}")
    return np.concatenate(maps).astype(np.float64) if maps else np.zeros(pixels.shape)
