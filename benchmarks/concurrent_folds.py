"""Benchmark: k fold models trained one after another vs concurrently on one device.

Three ways to train k folds of one backbone x sequence for E epochs, each timed as the
wall time of everything it starts (real processes, as Snakemake would run them):
  sequential   k training processes, one after another (one job per fold, one device);
  processes    k training processes at the same time on the same device (several
               Snakemake jobs sharing a GPU through resources);
  interleaved  one process holding the cache once and k FoldTrainers, stepping them in
               turn (one job training the folds of a sequence together).
The cohort is synthetic (the paper's largest sequence, 332 internal images by default).

    .venv/bin/python benchmarks/concurrent_folds.py --device cuda --k 5 --epochs 3
    .venv/bin/python benchmarks/concurrent_folds.py --device cpu --backbone resnet10t \\
        --size 64 --batch-size 16 --k 2 --epochs 2 --threads 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from synthetic import (REPO, add_recipe_arguments, describe_machine, paper_config, prepare,
                       process_startup_seconds, synthetic_cohort, synthetic_trainer, synchronize)


def worker(args) -> None:
    """Train ``args.folds`` (stepped in turn when several) for ``args.epochs`` epochs."""
    config = paper_config(args)
    device, acceleration = prepare(config)
    images, labels = synthetic_cohort(config, args.images)
    cohort = (images.to(device), labels.to(device))  # once, shared by every trainer
    trainers = [synthetic_trainer(config, args.backbone, args.images, device, acceleration, fold=fold, cohort=cohort)
                for fold in args.folds]
    for _ in range(args.epochs):
        for trainer in trainers:
            trainer.model.train()
        schedules = [trainer.epoch_batches() for trainer in trainers]
        for step in range(max(map(len, schedules))):
            for trainer, batches in zip(trainers, schedules):
                if step < len(batches):
                    trainer.train_step(batches[step])
        for trainer in trainers:
            trainer.validate()
    synchronize(device)


def forwarded(args) -> list[str]:
    """The recipe options of this run, for the worker processes."""
    options = []
    for name in ("device", "size", "batch_size", "precision", "channels_last", "compile", "cudnn_benchmark",
                 "threads", "backbone", "epochs", "images"):
        value = getattr(args, name)
        if value is not None:
            options += [f"--{name.replace('_', '-')}", str(value)]
    return options + (["--deterministic"] if args.deterministic else [])


def launch(args, folds: list[int]) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--folds", *map(str, folds), *forwarded(args)]
    return subprocess.Popen(command, cwd=REPO)


def wall(processes_of_waves) -> float:
    started = time.perf_counter()
    for wave in processes_of_waves:
        running = [launch(*job) for job in wave]
        if any(p.wait() != 0 for p in running):
            raise SystemExit("a worker failed")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--backbone", default="inception_v3")
    parser.add_argument("--k", type=int, default=5, help="folds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=332)
    parser.add_argument("--modes", nargs="+", default=["sequential", "processes", "interleaved"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folds", type=int, nargs="+", default=[0], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    config = paper_config(args)
    device, acceleration = prepare(config)
    print(describe_machine(device))
    print(f"{args.k} folds of {args.backbone}, {args.epochs} epochs each, {args.images} images at "
          f"{config['preprocessing']['size']} px, batch {config['training']['batch_size']}, "
          f"{config['training']['threads']} CPU threads per process; {acceleration}")
    print(f"one process start-up (python + torch + timm imports): {process_startup_seconds():.1f} s")
    folds = list(range(args.k))
    plans = {"sequential": [[(args, [fold])] for fold in folds],
             "processes": [[(args, [fold]) for fold in folds]],
             "interleaved": [[(args, folds)]]}
    results = {}
    for mode in args.modes:
        results[mode] = wall(plans[mode])
        print(f"{mode:<12} {results[mode]:8.1f} s wall (includes process start-up)", flush=True)
    if "sequential" in results:
        for mode, seconds in results.items():
            print(f"{mode:<12} speed-up over sequential: {results['sequential'] / seconds:.2f}x")
    print(f"fastest: {min(results, key=results.get)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
