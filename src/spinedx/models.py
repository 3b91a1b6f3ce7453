"""What training, inference and (later) Grad-CAM share: model construction, the exact
input transform, devices and safe checkpoint I/O."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from spinedx import runtime
from spinedx.errors import InputError

CHECKPOINT_FORMAT = "spinedx-checkpoint/1"


def select_device(name: str = "auto") -> torch.device:
    """The configured device; ``auto``/``cuda`` on a machine with several visible GPUs
    claim the least-used one, so concurrent local jobs spread over the devices (under
    SLURM each job sees only its allocated GPUs)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"config training.device is {name!r} but no CUDA device is available; use auto or cpu")
    if device.type == "cuda" and device.index is None:
        count = torch.cuda.device_count()
        device = torch.device("cuda", runtime.claim_gpu(count) if count > 1 else 0)
    return device


def configure_threads(threads: int, deterministic: bool) -> None:
    """One thread in deterministic mode: with more, CPU reductions may reorder and the
    last bits of the weights differ between runs."""
    torch.set_num_threads(1 if deterministic else threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # cuBLAS needs this to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


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
        # No hub access anywhere: timm reads the local file; the classifier is re-initialised
        # because n_classes differs from ImageNet's.
        return timm.create_model(backbone, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(pretrained_file)), **options)
    return timm.create_model(backbone, pretrained=False, **options)


def to_model_input(batch: torch.Tensor, mean: float, std: float, in_chans: int) -> torch.Tensor:
    """uint8 or [0, 1] float N x H x W (or N x 1 x H x W) -> normalised N x C x H x W float."""
    if batch.dtype == torch.uint8:
        batch = batch.float().div_(255)
    if batch.ndim == 3:
        batch = batch.unsqueeze(1)
    batch = (batch - mean) / std
    return batch.expand(-1, in_chans, -1, -1) if in_chans != 1 else batch


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """Atomic save; the payload holds tensors and plain Python types only, so it loads
    with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without executing code from it (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise InputError(
            f"{path}: cannot load checkpoint safely ({type(error).__name__}: {str(error)[:300]}); "
            "it is truncated, corrupt, or contains objects other than tensors and plain "
            "Python values (refused: loading it could execute code). Retrain to recreate it."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a spinedx checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def model_from_checkpoint(payload: dict, device: torch.device):
    model = build_model(payload["backbone"], payload["n_classes"], payload["in_chans"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
