"""Benchmark: Grad-CAM time per image and memory growth over many images.

Five random-initialised fold models of one backbone (as a 5-fold study has) score N
random uint8 images of the configured size through ``spinedx.models.gradcam.fold_mean_cams``,
for growing N. Prints seconds per image (per fold model) and the resident memory after
each N: with pytorch-grad-cam used inside its context manager, memory must stay flat as
N grows (hooks and activations released after every model).

    .venv/bin/python benchmarks/gradcam.py [--backbone resnet10t] [--size 64] [--n 32 128 512]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    from spinedx.models.backbones import build_model
    from spinedx.models.device import set_up
    from spinedx.models.gradcam import fold_mean_cams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    # The Grad-CAM stage's set-up on one deterministic CPU thread.
    device, acceleration = set_up({"threads": 1, "deterministic": True, "device": "cpu"}, precision="fp32",
                                  compile=False)
    checkpoints = []
    for fold in range(args.folds):
        model = build_model(args.backbone, 2, 1)
        checkpoints.append({"backbone": args.backbone, "fold": fold, "n_classes": 2, "in_chans": 1,
                            "image_size": args.size, "mean": 0.5, "std": 0.5, "state_dict": model.state_dict()})
    rng = np.random.default_rng(0)
    print(f"{platform.node()} {platform.machine()}, torch {torch.__version__}, 1 thread; "
          f"{args.backbone} at {args.size} px, {args.folds} fold models")
    print(f"start: RSS {rss_mib():.0f} MiB")
    for n in args.n:
        pixels = rng.integers(0, 256, (n, args.size, args.size), dtype=np.uint8)
        targets = rng.integers(0, 2, n)
        started = time.perf_counter()
        cams = fold_mean_cams(checkpoints, pixels, targets, device, args.batch_size, acceleration=acceleration)
        seconds = time.perf_counter() - started
        assert cams.shape == pixels.shape and np.isfinite(cams).all()
        del cams
        print(f"N={n:5d} images: {seconds:7.2f} s ({1000 * seconds / (n * args.folds):.1f} ms per image per "
              f"fold model); RSS after: {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
