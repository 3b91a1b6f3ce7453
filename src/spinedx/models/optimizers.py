"""The optimizer a training job builds from config ``training`` (``optimizer``, ``lr``,
``weight_decay``): shared by the classification and the detection training stages."""

from __future__ import annotations

import torch


def build_optimizer(params, settings) -> torch.optim.Optimizer:
    """SGD (momentum 0.9), Adam or AdamW over ``params``, as ``settings["optimizer"]`` says."""
    if settings["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=settings["lr"], momentum=0.9, weight_decay=settings["weight_decay"])
    optimizer = torch.optim.AdamW if settings["optimizer"] == "adamw" else torch.optim.Adam
    return optimizer(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
