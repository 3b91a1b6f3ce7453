"""The networks: timm backbones with a fresh head, and the exact input transform every
model-running stage applies."""

from __future__ import annotations

from pathlib import Path

import torch

from spinedx.errors import InputError


def build_model(backbone: str, n_classes: int, in_chans: int, pretrained_file: str | None = None):
    """A timm model with a fresh ``n_classes`` head; weights from a local file if given."""
    import timm  # imported here: timm pulls torchvision, slow to import

    if not timm.is_model(backbone):
        raise InputError(f"unknown timm backbone {backbone!r} (config `backbones`)")
    options = dict(num_classes=n_classes, in_chans=in_chans)
    if pretrained_file:
        if not Path(pretrained_file).is_file():
            raise InputError(f"{pretrained_file}: pretrained weight file for {backbone} not found "
                             "(config training.pretrained)")
        # A local file (published weights were fetched and hashed beforehand:
        # spinedx.models.pretrained); the classifier is re-initialised because n_classes
        # differs from ImageNet's, and a 1-channel stem sums the RGB filters (timm).
        try:
            return timm.create_model(backbone, pretrained=True,
                                     pretrained_cfg_overlay=dict(file=str(pretrained_file)), **options)
        except (RuntimeError, KeyError, ValueError, OSError) as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            raise InputError(f"{pretrained_file}: cannot load as {backbone} weights ({type(error).__name__}: "
                             f"{first_line}); give weights of this architecture (config "
                             "training.pretrained)") from None
    return timm.create_model(backbone, pretrained=False, **options)


def to_model_input(batch: torch.Tensor, mean: float, std: float, in_chans: int) -> torch.Tensor:
    """uint8 or [0, 1] float N x H x W (or N x 1 x H x W) -> normalised N x C x H x W float."""
    if batch.dtype == torch.uint8:
        batch = batch.float().div_(255)
    if batch.ndim == 3:
        batch = batch.unsqueeze(1)
    batch = (batch - mean) / std
    return batch.expand(-1, in_chans, -1, -1) if in_chans != 1 else batch
