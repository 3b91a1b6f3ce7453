"""Checkpoints of fold models: atomic saves and loads that never execute code from the
file (``torch.load(weights_only=True)``: tensors and plain Python values only)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from spinedx.errors import InputError
from spinedx.io import atomic_output
from spinedx.models.backbones import build_model

CHECKPOINT_FORMAT = "spinedx-checkpoint/1"

log = logging.getLogger(__name__)


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """Atomic save; the payload holds tensors and plain Python types only, so it loads
    with ``weights_only=True``."""
    with atomic_output(path) as partial:
        torch.save(payload, partial)


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


def matching_resume_state(path: Path, signature: str) -> dict | None:
    """The state a killed or requeued training job left at ``path`` (last.pt), when it
    belongs to exactly this job and these settings (``signature``); otherwise None, and
    the log says why the job starts from scratch."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a job killed mid-write leaves junk: start over, say so
        log.warning("cannot read %s (%s); training from scratch", path, error)
        return None
    if not isinstance(state, dict) or state.get("signature") != signature:
        log.info("ignoring %s: it belongs to other settings", path)
        return None
    return state


def model_from_checkpoint(payload: dict, device: torch.device):
    if "mode" in payload:  # a volume study's model (2d/2.5d/3d input): spinedx.models.volumetric
        from spinedx.models import volumetric

        return volumetric.model_from_checkpoint(payload, device)
    model = build_model(payload["backbone"], payload["n_classes"], payload["in_chans"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
