"""Shared by the GPU benchmarks: the paper's recipe and a synthetic paper-sized cohort of
random uint8 images, fed through the real FoldTrainer (no files, no Snakemake)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from spinedx import config as configuration  # noqa: E402
from spinedx.models import device as devices  # noqa: E402
from spinedx.stages.training import FoldTrainer  # noqa: E402

# Images per sequence in the reference study (internal cohort for cross-validation,
# external cohort for testing): T1, T2, CE-T1.
PAPER_IMAGES = {"T1": (229, 124), "T2": (332, 182), "CE-T1": (247, 134)}
PAPER_BACKBONES = ["efficientnet_b2", "resnet50", "inception_v3"]


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every benchmark shares; None means the value of config/paper.yaml."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--size", type=int, help="image size (paper: 500)")
    parser.add_argument("--batch-size", type=int, help="batch size (paper: 128)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--channels-last", choices=["auto", "true", "false"])
    parser.add_argument("--compile", choices=["true", "false"])
    parser.add_argument("--cudnn-benchmark", choices=["auto", "true", "false"])
    parser.add_argument("--deterministic", action="store_true", help="the safe (slow) settings")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")


def paper_config(args) -> dict:
    """config/paper.yaml with the command line's overrides, resolved against the schema."""
    flag = {"true": True, "false": False}
    training = {"deterministic": bool(args.deterministic), "device": args.device,
                "threads": args.threads or os.cpu_count()}
    for key in ("batch_size", "precision", "channels_last", "compile", "cudnn_benchmark"):
        value = getattr(args, key)
        if value is not None:
            training[key] = flag.get(value, value)
    overrides = {"training": training}
    if args.size:
        overrides["preprocessing"] = {"size": args.size}
    return configuration.load(REPO / "config/paper.yaml", overrides)


def prepare(config: dict) -> tuple[torch.device, devices.Acceleration]:
    """The training jobs' own set-up (spinedx.models.device.set_up)."""
    return devices.set_up(config["training"])


def synthetic_cohort(config: dict, n_images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images at the configured size, alternating labels."""
    size = config["preprocessing"]["size"]
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n_images) % 2


def synthetic_trainer(config: dict, backbone: str, n_internal: int, device, acceleration,
                      fold: int = 0, n_folds: int = 5, cohort=None) -> FoldTrainer:
    """A FoldTrainer on ``n_internal`` random images; every n_folds-th image from
    ``fold`` on validates. Trainers given the same device-resident ``cohort`` share it."""
    images, labels = cohort if cohort is not None else synthetic_cohort(config, n_internal)
    validation = torch.arange(len(images)) % n_folds == fold
    return FoldTrainer(images, labels, torch.nonzero(~validation).flatten(), torch.nonzero(validation).flatten(),
                       backbone, len(config["classes"]), config, fold, device, acceleration)


def process_startup_seconds() -> float:
    """A training job's fixed cost before any data: interpreter, torch, timm imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, timm, spinedx.stages.training"], check=True,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def describe_machine(device: torch.device) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=REPO).stdout.strip()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    return (f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; device {device} ({where}); "
            f"torch {torch.__version__}; commit {commit}{' + local changes' if dirty else ''}")
