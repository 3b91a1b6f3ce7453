"""Pretrained weights (config training.pretrained; spinedx.models.pretrained): timm's
published weights through timm's own hub cache, a local file, and the refusal when
neither the cache nor the network has them.

These machines cannot reach the Hugging Face hub, so the published weights are stood in
for by a weight file saved from a randomly initialised timm model, put into a temporary
Hugging Face cache in the hub's own layout (``models--timm--<name>/blobs/<sha256>``, a
``snapshots/<commit>/model.safetensors`` link and ``refs/main``). With ``HF_HUB_CACHE``
pointing there and ``HF_HUB_OFFLINE=1``, timm's ``create_model(pretrained=True)`` finds
them through huggingface_hub exactly as it finds downloaded ones. The stage runs as the
workflow runs it (``python -m spinedx pretrained_weights``) in a subprocess, because
huggingface_hub reads its environment variables at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO, snakemake
from spinedx import config as configuration
from spinedx.errors import InputError
from spinedx.models import backbones, checkpoints, pretrained
from spinedx.stages import bundle, training
from test_training import job  # noqa: F401  (fixture: a learnable toy sequence)

BACKBONE = "mobilenetv3_small_050"  # small: a 6 MB weight file
HUB_ID = "timm/mobilenetv3_small_050.lamb_in1k"  # timm's default tag for the name
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def published_stand_in(path: Path, seed: int = 0, backbone: str = BACKBONE) -> dict:
    """ImageNet-shaped weights (1000 classes, 3 channels) of a random model, as a file."""
    import timm

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in timm.create_model(backbone, pretrained=False).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def populate_hub_cache(cache: Path, weights: Path) -> Path:
    """``weights`` as the hub's ``model.safetensors`` of HUB_ID, in the cache layout
    huggingface_hub writes; returns the snapshot path."""
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / digest).write_bytes(weights.read_bytes())
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs") / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot / "model.safetensors"


def hub_env(tmp_path: Path, cache: Path) -> dict:
    """Offline, with every cache timm or huggingface_hub may use inside ``tmp_path``."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch_home"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def run_stage(tmp_path: Path, setting, env: dict, backbone: str = BACKBONE) -> subprocess.CompletedProcess:
    settings = json.dumps({"training": {"pretrained": setting, "in_chans": 1}})
    command = [sys.executable, "-m", "spinedx", "pretrained_weights", "--settings", settings,
               "--backbone", backbone, "--out", str(tmp_path / "record.json")]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_the_setting_means_what_the_readme_says():
    request = configuration.pretrained_request
    assert request(False, "resnet50") is None and request(True, "resnet50") == configuration.PRETRAINED_HUB
    per_backbone = {"resnet50": True, "efficientnet_b2": "/w/b2.safetensors", "inception_v3": False}
    assert request(per_backbone, "resnet50") == configuration.PRETRAINED_HUB
    assert request(per_backbone, "efficientnet_b2") == "/w/b2.safetensors"
    assert request(per_backbone, "inception_v3") is None and request(per_backbone, "resnet10t") is None
    assert configuration.resolve({})["training"]["pretrained"] is False  # the schema's default
    for value in (True, per_backbone, {}):
        configuration.resolve({"backbones": list(per_backbone), "training": {"pretrained": value}})
    with pytest.raises(configuration.ConfigError, match="not in backbones"):
        configuration.resolve({"backbones": ["resnet50"], "training": {"pretrained": {"resnet18": True}}})
    with pytest.raises(configuration.ConfigError):
        configuration.resolve({"training": {"pretrained": "yes"}})


def test_offline_without_the_weights_refuses_naming_the_alternatives(tmp_path):
    done = run_stage(tmp_path, True, hub_env(tmp_path, tmp_path / "empty_cache"))
    assert done.returncode != 0 and not (tmp_path / "record.json").exists()
    message = done.stderr
    for part in ("timm's published weights for mobilenetv3_small_050 are neither in the cache nor downloadable",
                 f"Hugging Face cache {tmp_path / 'empty_cache'}", "HF_HUB_OFFLINE is set", "HF_HOME",
                 "HF_HUB_CACHE", "TORCH_HOME",
                 "training.pretrained: {mobilenetv3_small_050: /path/to/weights.safetensors}"):
        assert part in message, message[-3000:]
    assert "Traceback" not in message  # a refusal, not a crash


def test_a_prepopulated_hub_cache_is_loaded_through_timms_own_path(tmp_path):
    state = published_stand_in(tmp_path / "stand_in.safetensors")
    snapshot = populate_hub_cache(tmp_path / "cache", tmp_path / "stand_in.safetensors")
    env = hub_env(tmp_path, tmp_path / "cache")
    done = run_stage(tmp_path, {BACKBONE: True}, env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "record.json").read_text())
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert record["source"] == f"hf-hub:{HUB_ID}/model.safetensors"
    assert record["sha256"] == digest and record["file"] == str(snapshot)
    assert record["file"].startswith(str(tmp_path / "cache"))

    # timm itself, offline, reads the same weights from that cache (its hub path) ...
    script = (f"import timm, torch; m = timm.create_model({BACKBONE!r}, pretrained=True, num_classes=2, "
              f"in_chans=1); torch.save(m.state_dict(), {str(tmp_path / 'via_hub.pt')!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    via_hub = torch.load(tmp_path / "via_hub.pt", weights_only=True)
    # ... as a training job does from the recorded file (hash-checked first).
    job = backbones.build_model(BACKBONE, 2, 1, pretrained.verified_file(record)).state_dict()
    head = {"classifier.weight", "classifier.bias"}  # re-initialised: 2 classes, not 1000
    for name, tensor in job.items():
        if name in head:
            continue
        assert torch.equal(tensor, via_hub[name]), name
        expected = state[name].sum(dim=1, keepdim=True) if name == "conv_stem.weight" else state[name]
        assert torch.equal(tensor, expected), name  # 1-channel stem: timm sums the RGB filters
    assert job["classifier.weight"].shape == (2, job["classifier.weight"].shape[1])


def test_a_local_weight_file_is_recorded_and_a_wrong_one_refused(tmp_path):
    published_stand_in(tmp_path / "w.safetensors")
    record = pretrained.resolve({BACKBONE: str(tmp_path / "w.safetensors")}, BACKBONE, in_chans=1)
    assert record["source"] == "file" and record["file"] == str(tmp_path / "w.safetensors")
    assert record["sha256"] == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    with pytest.raises(InputError, match="pretrained weight file for resnet10t not found"):
        pretrained.resolve({"resnet10t": str(tmp_path / "missing.safetensors")}, "resnet10t")
    with pytest.raises(InputError, match="cannot load as resnet10t weights") as error:
        pretrained.resolve({"resnet10t": str(tmp_path / "w.safetensors")}, "resnet10t")
    assert str(tmp_path / "w.safetensors") in str(error.value)
    assert pretrained.resolve({"resnet10t": True}, BACKBONE) is None  # not asked for this one


def test_a_training_job_refuses_weights_that_changed_since_they_were_resolved(tmp_path):
    published_stand_in(tmp_path / "w.safetensors")
    record = pretrained.resolve({BACKBONE: str(tmp_path / "w.safetensors")}, BACKBONE)
    published_stand_in(tmp_path / "w.safetensors", seed=1)
    with pytest.raises(InputError, match="changed since it was resolved"):
        pretrained.verified_file(record, "record.json")
    (tmp_path / "w.safetensors").unlink()
    with pytest.raises(InputError, match="is gone"):
        pretrained.verified_file(record, "record.json")


def test_training_starts_from_the_recorded_weights_and_says_so(job, tmp_path):
    """A short training job with a resolved record: the checkpoint and the resolved config
    name the weights (source, sha256), and the bundle's model card reports them."""
    args, _ = job
    published_stand_in(tmp_path / "w.safetensors")
    args["config"]["training"]["pretrained"] = {BACKBONE: str(tmp_path / "w.safetensors")}
    args["config"]["training"]["epochs"] = 1
    record = pretrained.resolve(args["config"]["training"]["pretrained"], BACKBONE, 1)
    (tmp_path / "record.json").write_text(json.dumps(record))
    training.train(**args, out_dir=tmp_path / "m", pretrained_record=tmp_path / "record.json")
    checkpoint = checkpoints.load_checkpoint(tmp_path / "m/best.pt")
    assert checkpoint["pretrained"] == {"source": "file", "sha256": record["sha256"], "bytes": record["bytes"]}
    resolved = (tmp_path / "m/config.yaml").read_text()
    assert record["sha256"] in resolved and str(tmp_path / "w.safetensors") in resolved
    card = bundle.build_card([{"file": "models/x.pt", "backbone": BACKBONE, "sequence": "T1", "fold": 0,
                               "epoch": 1, "val_accuracy": 0.5, "pretrained": checkpoint["pretrained"]},
                              {"file": "models/y.pt", "backbone": "resnet10t", "sequence": "T1", "fold": 0,
                               "epoch": 1, "val_accuracy": 0.5, "pretrained": None}],
                             *_card_inputs(tmp_path, args["config"]))
    assert card["initial_weights"] == {BACKBONE: checkpoint["pretrained"], "resnet10t": "random initialisation"}
    text = bundle.render_card(card)
    assert f"{BACKBONE}: pretrained file (sha256 {record['sha256']})" in text
    assert "resnet10t: random initialisation" in text


def _card_inputs(tmp_path, config):
    import pandas as pd

    images = pd.DataFrame({"patient_id": ["A"], "cohort": ["internal"], "label": [0], "sequence": "T1",
                           "image_sha256": ["a" * 64]})
    metrics = pd.DataFrame({"backbone": [BACKBONE], "input": ["ALL"], "auc": [0.9]})
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    return images, tmp_path / "metrics.csv", tmp_path / "metrics.csv", config, tmp_path


@pytest.mark.parametrize("training_jobs, rule, n_jobs", [("per_fold", "training", 18),
                                                         ("per_sequence", "training_folds", 6)])
def test_the_workflow_resolves_weights_once_before_every_training_job(tmp_path, training_jobs, rule, n_jobs):
    """Dry run: one pretrained_weights job per pretrained backbone, a local rule every
    training job of that backbone waits for and is told about; none for the others
    (one job per fold, as under SLURM, or the folds of a backbone x sequence together)."""
    (tmp_path / "pretrained.yaml").write_text(f"training_jobs: {training_jobs}\n"
                                              "training:\n  pretrained: {resnet10t: true}\n")
    done = snakemake(tmp_path, "-n", "-p", "--cores", "2", extra_configs=[tmp_path / "pretrained.yaml"])
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.MULTILINE))
    assert counts["pretrained_weights"] == "1" and counts[rule] == str(n_jobs)
    record = ".test/results/pretrained/resnet10t.json"
    commands = [line for line in done.stdout.splitlines() if f"spinedx {rule} " in line]
    assert len(commands) == n_jobs
    for command in commands:
        assert (f"--pretrained-record {record}" in command) == ("--backbone resnet10t" in command), command
    assert f"--pretrained-records {record}" in done.stdout  # provenance records them
