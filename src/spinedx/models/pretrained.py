"""Pretrained weights of the backbones: what config ``training.pretrained`` asks for, where
the file comes from, and its hash.

``training.pretrained`` is ``true`` (every backbone), ``false`` (none: random
initialisation), or per backbone ``{resnet50: true, efficientnet_b2: /path/file}``:
``true`` takes timm's published weights for the model name (its default pretrained tag,
e.g. ``resnet50`` -> ``timm/resnet50.a1_in1k``) through timm's own loading path, which
downloads them with huggingface_hub into the Hugging Face cache (``HF_HOME`` /
``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` reads the cache only) or, for weights published
only at a URL, into torch's hub cache (``TORCH_HOME``). spinedx has no downloader of its
own. A string is a local weight file (``.safetensors``, ``.pth``, ``.bin``), loaded by
timm's ``pretrained_cfg_overlay=dict(file=...)``.

The workflow resolves each backbone once, on the submitting node, before any training
job starts (rule ``pretrained_weights``): :func:`resolve` loads the weights through timm
(so a wrong file fails there, not in 45 jobs), finds the file timm read, and returns a
record of its source and sha256. Training jobs load that file, after checking its hash
(:func:`verified_file`), so every fold model starts from the same bytes, and a compute
node never talks to the hub. The record goes into the checkpoints, the model card and the
provenance record.
"""

from __future__ import annotations

import os
from pathlib import Path

from spinedx.config import PRETRAINED_HUB, pretrained_request
from spinedx.errors import InputError
from spinedx.io import sha256_file

RECORD_FORMAT = "spinedx-pretrained/1"


def _hub_caches() -> str:
    from huggingface_hub import constants

    offline = "set" if constants.HF_HUB_OFFLINE else "not set"
    return (f"Hugging Face cache {constants.HF_HUB_CACHE} (HF_HOME / HF_HUB_CACHE; "
            f"HF_HUB_OFFLINE is {offline}), torch hub cache {_torch_checkpoints()} (TORCH_HOME)")


def _torch_checkpoints() -> str:
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _published_source(model) -> tuple[str, str]:
    """(source, local file) of the weights timm just loaded for ``model``, found in the
    cache timm used: the Hugging Face hub cache, else torch's hub cache (URL weights)."""
    from huggingface_hub import try_to_load_from_cache

    cfg = model.pretrained_cfg
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        repo, _, revision = hub_id.partition("@")
        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else [
            "model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return f"hf-hub:{hub_id}/{name}", found
    url = cfg.get("url")
    if url:
        found = os.path.join(_torch_checkpoints(), os.path.basename(url.split("?")[0]))
        if os.path.isfile(found):
            return url, found
    raise InputError(f"{cfg.get('architecture')}: timm loaded pretrained weights but spinedx cannot find "
                     f"the file it read in the caches ({_hub_caches()}); give a local weight file in "
                     "config training.pretrained instead")


def _weights_file(path: str, backbone: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"{path}: pretrained weight file for {backbone} not found (config "
                         "training.pretrained); give the path of a weight file (.safetensors, .pth, "
                         ".bin) or `true` for timm's published weights")
    return file.absolute()  # not resolved: a link's target may lack the suffix timm reads


def resolve(setting, backbone: str, in_chans: int = 3) -> dict | None:
    """Fetch (timm's published weights) or check (a local file) ``backbone``'s weights,
    load them once through timm, and return the record: backbone, source, file, sha256,
    bytes. None when the backbone starts from random initialisation."""
    import timm

    wanted = pretrained_request(setting, backbone)
    if wanted is None:
        return None
    if not timm.is_model(backbone):
        raise InputError(f"unknown timm backbone {backbone!r} (config `backbones`)")
    if wanted == PRETRAINED_HUB:
        try:
            # timm's own path: huggingface_hub (or torch.hub for URL-only weights) downloads
            # into its cache, or reads the cache when offline.
            model = timm.create_model(backbone, pretrained=True, num_classes=2, in_chans=in_chans)
        except Exception as error:  # hub client errors: LocalEntryNotFoundError, HTTP, OSError...
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            raise InputError(
                f"training.pretrained: timm's published weights for {backbone} are neither in the "
                f"cache nor downloadable here ({type(error).__name__}: {first_line}). Searched: "
                f"{_hub_caches()}. Fix one of: run once where the hub is reachable with the same "
                "HF_HOME/HF_HUB_CACHE (the cache is then reused offline; on a cluster the "
                "submitting node fetches them before any training job starts); point HF_HOME or "
                "HF_HUB_CACHE at a cache that holds them and set HF_HUB_OFFLINE=1; or give a "
                f"local file: training.pretrained: {{{backbone}: /path/to/weights.safetensors}}"
            ) from None
        source, file = _published_source(model)
        # The snapshot path, not the blob it links to: timm tells formats by the suffix.
        file = Path(file)
    else:
        file = _weights_file(wanted, backbone)
        source = "file"
        from spinedx.models.backbones import build_model

        build_model(backbone, 2, in_chans, str(file))  # refuses a file that does not fit
    return {"format": RECORD_FORMAT, "backbone": backbone, "source": source, "file": str(file),
            "sha256": sha256_file(file), "bytes": file.stat().st_size}


def verified_file(record: dict, record_path=None) -> str:
    """The weight file of a resolved record, after checking it still has the recorded hash."""
    where = f"{record_path}: " if record_path else ""
    file = Path(record["file"])
    if not file.is_file():
        raise InputError(f"{where}the pretrained weight file {file} of {record['backbone']} is gone "
                         "(a cache cleaned, or a cluster node that does not share it); rerun so the "
                         "weights are fetched again, or put HF_HOME on a file system the nodes share")
    digest = sha256_file(file)
    if digest != record["sha256"]:
        raise InputError(f"{where}the pretrained weight file {file} of {record['backbone']} changed "
                         f"since it was resolved (sha256 {digest[:12]}..., recorded "
                         f"{record['sha256'][:12]}...); delete the record to resolve it again")
    return str(file)


def summary(record: dict | None) -> dict | None:
    """What a checkpoint, the model card and provenance keep of a record."""
    if record is None:
        return None
    return {"source": record["source"], "sha256": record["sha256"], "bytes": int(record["bytes"])}
