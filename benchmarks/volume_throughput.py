"""Benchmark: the volume study's input modes (3d above all) in a paper-sized setting.

Each mode's real training step (spinedx.stages.training.FoldTrainer with the mode's
network and inputs from spinedx.models.volumetric: cached float crops on the device,
augmentation, normalisation, forward, backward, optimizer step) on random crops of the
paper-sized shape, against its limit (the same step on a ready random input), the input
pipeline alone (for 3d MONAI's RandAffine + RandZoom + RandFlip, one draw per
sub-volume), scoring throughput, peak GPU memory, and the wall time this gives for the
grid (folds x epochs over the training crops, plus scoring).

The paper-sized setting is an assumption stated here, not the study's published recipe
(the digest gives none): 300 internal cases in 5 folds, 50 epochs, two CT windows,
96 mm crops at 1 mm (96^3 voxels for 3d, 96 x 96 slices for 2d/2.5d, 16 slices per case,
2.5d with one neighbour each side), batch 16 for 3d and 64 for slices, MONAI resnet18
for 3d, timm resnet18 for 2d/2.5d.

    .venv/bin/python benchmarks/volume_throughput.py --device cuda
    .venv/bin/python benchmarks/volume_throughput.py --device cpu --size 32 --steps 3 --warmup 1 \
        --batch-size-3d 4 --batch-size-2d 16 --network-3d resnet10 --backbone resnet10t
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from synthetic import describe_machine, timed

from spinedx import config as configuration  # noqa: E402  (synthetic puts src on the path)
from spinedx.models import device as devices  # noqa: E402
from spinedx.models.volumetric import VolumeInputs, VolumeJob, predict  # noqa: E402
from spinedx.stages.training import FoldTrainer  # noqa: E402


def settings(args, mode: str) -> dict:
    flag = {"true": True, "false": False}
    training = {"deterministic": bool(args.deterministic), "device": args.device,
                "threads": args.threads or os.cpu_count(),
                "batch_size": args.batch_size_3d if mode == "3d" else args.batch_size_2d}
    for key in ("precision", "cudnn_benchmark"):
        value = getattr(args, key)
        if value is not None:
            training[key] = flag.get(value, value)
    return configuration.resolve({
        "data": {"format": "volume"}, "classes": ["osteoporotic", "malignant"], "sequences": {"CT": ["CT"]},
        "input_modes": [mode], "backbones": [args.backbone], "networks_3d": [args.network_3d],
        "preprocessing": {"spacing": [1.0, 1.0, 1.0], "crop_mm": [args.size] * 3, "neighbours": 1,
                          "intensity": {"kind": "ct_window", "windows": ["bone", "spine_soft_tissue"]}},
        "training": training,
    })


def crop_shape(mode: str, size: int) -> tuple[int, ...]:
    channels = 2 * (3 if mode == "2.5d" else 1)
    return (channels, size, size, size) if mode == "3d" else (channels, size, size)


def measure(args, mode: str) -> dict:
    config = settings(args, mode)
    device, acceleration = devices.set_up(config["training"])
    network = args.network_3d if mode == "3d" else args.backbone
    job = VolumeJob.of(f"{mode}_{network}")
    acceleration = job.acceleration(acceleration)
    per_case = 1 if mode == "3d" else args.slices
    n = max(args.batch_size_3d if mode == "3d" else args.batch_size_2d, 2) * 4
    shape = crop_shape(mode, args.size)
    generator = torch.Generator().manual_seed(0)
    crops = torch.rand((n, *shape), generator=generator)
    labels = torch.arange(n) % 2
    trainer = FoldTrainer(crops, labels, torch.arange(n), torch.arange(min(n, 8)), job.name, 2, config, 0, device,
                          acceleration, build=lambda: job.build(shape, 2),
                          inputs=VolumeInputs(mode, config["training"], device))
    batch_size = config["training"]["batch_size"]
    batches = [torch.arange(batch_size, device=device) + (i * batch_size) % (n - batch_size + 1)
               for i in range(args.warmup + args.steps)]
    ready = trainer._inputs(batches[0], train=True)
    random_input, target = torch.randn_like(ready), trainer.labels[batches[0]]
    trainer.model.train()
    warm_up = timed(lambda: [trainer.train_step(b) for b in batches[:args.warmup]], device)
    step = timed(lambda: [trainer.train_step(b) for b in batches[args.warmup:]], device) / args.steps
    limit = timed(lambda: [trainer.optimise(random_input, target) for _ in range(args.steps)], device) / args.steps
    pipeline = timed(lambda: [trainer._inputs(b, train=True) for b in batches[args.warmup:]], device) / args.steps
    checkpoint = {"input_shape": list(shape), "mean": 0.5, "std": 0.5, "n_classes": 2}
    trainer.model.eval()
    predict(trainer.model, trainer.images[:batch_size], checkpoint, batch_size, acceleration)  # warm
    scoring = timed(lambda: predict(trainer.model, trainer.images, checkpoint, batch_size, acceleration), device) / n
    train_crops = args.cases * (args.folds - 1) / args.folds * per_case
    grid_seconds = args.folds * args.epochs * (train_crops / batch_size * step
                                               + args.cases / args.folds * per_case * scoring)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return {"mode": mode, "network": network, "shape": shape, "batch": batch_size, "step": step, "limit": limit,
            "pipeline": pipeline, "scoring": scoring, "warm_up": warm_up, "grid_minutes": grid_seconds / 60,
            "memory": memory, "acceleration": acceleration, "device": device}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--modes", nargs="+", default=["3d", "2.5d", "2d"], choices=["2d", "2.5d", "3d"])
    parser.add_argument("--network-3d", default="resnet18", help="config networks_3d entry (paper-sized: resnet18)")
    parser.add_argument("--backbone", default="resnet18", help="timm backbone of 2d/2.5d")
    parser.add_argument("--size", type=int, default=96, help="crop side in voxels (1 mm)")
    parser.add_argument("--slices", type=int, default=16, help="2d/2.5d slices per case")
    parser.add_argument("--batch-size-3d", type=int, default=16)
    parser.add_argument("--batch-size-2d", type=int, default=64)
    parser.add_argument("--cases", type=int, default=300, help="internal cases (assumed)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--cudnn-benchmark", choices=["auto", "true", "false"])
    parser.add_argument("--deterministic", action="store_true", help="the safe (slow) settings")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    args = parser.parse_args()
    printed = False
    for mode in args.modes:
        figures = measure(args, mode)
        if not printed:
            print(describe_machine(figures["device"]))
            print(f"{'mode':<5} {'network':<10} {'crop':<18} {'batch':>5} {'crops/s':>8} {'limit/s':>8} "
                  f"{'overhead':>8} {'pipeline ms':>11} {'score/s':>8} {'warm-up s':>9} {'grid min':>9} {'GPU GiB':>8}")
            printed = True
        overhead = figures["step"] / figures["limit"] - 1
        print(f"{mode:<5} {figures['network']:<10} {'x'.join(map(str, figures['shape'])):<18} {figures['batch']:>5} "
              f"{figures['batch'] / figures['step']:>8.1f} {figures['batch'] / figures['limit']:>8.1f} "
              f"{overhead:>8.1%} {figures['pipeline'] * 1000:>11.1f} {1 / figures['scoring']:>8.1f} "
              f"{figures['warm_up']:>9.1f} {figures['grid_minutes']:>9.1f} {figures['memory']:>8.2f}", flush=True)
        print(f"      ({figures['acceleration']})")
    print(f"grid: {args.folds} folds x {args.epochs} epochs over {args.cases} cases (assumed paper-sized setting), "
          "one job after another on this device")
    return 0


if __name__ == "__main__":
    sys.exit(main())
