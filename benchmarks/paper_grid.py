"""Benchmark: wall time of the paper's whole grid on one device, extrapolated from
measured training on a synthetic paper-sized cohort.

Grid: 3 backbones x 3 sequences x 5 folds = 45 training jobs of 50 epochs at 500 px,
batch 128, on the study's image counts (internal T1/T2/CE-T1 229/332/247, external
124/182/134), plus inference of every fold model. Per backbone the real FoldTrainer runs
on random uint8 images: by default --epochs full epochs (the first one also pays cuDNN
autotuning and compilation and is reported apart); with --steps N only N training steps
and one validation pass are timed (for slow CPUs). Per-image training and evaluation
times then scale to every job's image counts, plus the measured per-epoch resume
checkpoint and the per-job start-up (process start, imports, model build, cache to
device, first-epoch warm-up).

    .venv/bin/python benchmarks/paper_grid.py --device cuda            # on a GPU
    .venv/bin/python benchmarks/paper_grid.py --device cpu --batch-size 8 --steps 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

# synthetic puts this checkout's src/ first on sys.path, so it is imported before spinedx.
from synthetic import (PAPER_BACKBONES, PAPER_IMAGES, add_recipe_arguments, describe_machine, paper_config, prepare,
                       process_startup_seconds, synthetic_trainer, synchronize, timed)

from spinedx.models.checkpoints import save_checkpoint

N_FOLDS = 5


def measure_backbone(config, backbone, device, acceleration, epochs: int, steps: int | None) -> dict:
    """Seconds per training image, per evaluated image, per resume checkpoint, and the
    one-off costs of a job (model build + cache to device, warm-up epoch)."""
    n_internal = PAPER_IMAGES["T2"][0]  # the largest sequence
    started = time.perf_counter()
    trainer = synthetic_trainer(config, backbone, n_internal, device, acceleration)
    synchronize(device)
    build = time.perf_counter() - started
    n_train, n_val = len(trainer.train_idx), len(trainer.val_idx)
    with tempfile.TemporaryDirectory() as scratch:
        save = timed(lambda: save_checkpoint(trainer.state("benchmark"), Path(scratch) / "last.pt"), device)
    if steps:  # a few steps only: the first one warms up, the rest are timed
        batches = trainer.epoch_batches()
        trainer.model.train()
        first = timed(lambda: trainer.train_step(batches[0]), device)
        timed_batches = [batches[1 + i % (len(batches) - 1)] for i in range(steps)]
        train = timed(lambda: [trainer.train_step(index) for index in timed_batches], device)
        per_train_image = train / sum(len(b) for b in timed_batches)
        trainer.validate()  # warm-up of the evaluation path
        per_eval_image = timed(trainer.validate, device) / n_val
        warmup = first - per_train_image * len(batches[0])
        measured = f"{steps} steps of {len(timed_batches[0])} images + 1 validation pass"
    else:
        records = [trainer.run_epoch() for _ in range(epochs)]
        later = records[1:] or records
        per_eval_image = timed(trainer.validate, device) / n_val
        epoch_seconds = sum(r["seconds"] for r in later) / len(later)
        per_train_image = (epoch_seconds - per_eval_image * n_val) / n_train
        warmup = records[0]["seconds"] - epoch_seconds if len(records) > 1 else 0.0
        measured = f"{epochs} full epochs of {n_train} + {n_val} images (epoch 1 = warm-up)"
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return dict(per_train_image=per_train_image, per_eval_image=per_eval_image, save=save,
                build=build, warmup=max(warmup, 0.0), measured=measured, peak_gib=peak)


def grid_seconds(figures: dict, epochs: int, startup: float) -> dict:
    """Sequential wall time of one backbone's 15 training jobs and 3 inference jobs."""
    training = inference = 0.0
    for n_internal, n_external in PAPER_IMAGES.values():
        n_val = n_internal / N_FOLDS
        n_train = n_internal - n_val
        epoch = n_train * figures["per_train_image"] + n_val * figures["per_eval_image"] + figures["save"]
        training += N_FOLDS * (startup + figures["build"] + figures["warmup"] + epochs * epoch)
        # One inference job per sequence: each fold model scores the external cohort and its
        # validation patients.
        inference += startup + N_FOLDS * (figures["build"] + (n_external + n_val) * figures["per_eval_image"])
    return dict(training=training, inference=inference)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--backbones", nargs="+", default=PAPER_BACKBONES)
    parser.add_argument("--epochs", type=int, default=2, help="full epochs to time per backbone")
    parser.add_argument("--steps", type=int, help="time only this many training steps instead")
    parser.add_argument("--grid-epochs", type=int, help="epochs of the grid (paper: 50)")
    args = parser.parse_args()
    config = paper_config(args)
    device, acceleration = prepare(config)
    grid_epochs = args.grid_epochs or config["training"]["epochs"]
    startup = process_startup_seconds()
    print(describe_machine(device))
    print(f"recipe: {config['preprocessing']['size']} px, batch {config['training']['batch_size']}, "
          f"{grid_epochs} epochs, {N_FOLDS} folds, sequences {PAPER_IMAGES} (internal, external); {acceleration}")
    print(f"job start-up (python + torch + timm imports), measured: {startup:.1f} s")
    total = 0.0
    for backbone in args.backbones:
        figures = measure_backbone(config, backbone, device, acceleration, args.epochs, args.steps)
        if device.type == "cuda":  # the trainer is gone: the next backbone starts afresh
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        grid = grid_seconds(figures, grid_epochs, startup)
        total += grid["training"] + grid["inference"]
        print(f"{backbone}: measured {figures['measured']}")
        print(f"  train {figures['per_train_image'] * 1000:.2f} ms/image ({1 / figures['per_train_image']:.1f} img/s), "
              f"evaluate {figures['per_eval_image'] * 1000:.2f} ms/image, resume checkpoint {figures['save']:.2f} s/epoch, "
              f"model build + cache to device {figures['build']:.1f} s, warm-up {figures['warmup']:.1f} s"
              + (f", peak GPU memory {figures['peak_gib']:.1f} GiB" if device.type == "cuda" else ""))
        print(f"  15 training jobs x {grid_epochs} epochs: {grid['training'] / 60:.1f} min; "
              f"3 inference jobs: {grid['inference'] / 60:.2f} min", flush=True)
    hours = total / 3600
    print(f"paper grid, jobs one after another on this device: {total / 60:.1f} min ({hours:.2f} h"
          + (f", {hours / 24:.1f} days)" if hours > 48 else ")"))
    print("target: under 15 minutes on one H100-class GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
