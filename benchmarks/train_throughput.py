"""Benchmark: training images/s of one job per backbone against the limit of its device.

The job is the real FoldTrainer step on the uint8 cache held on the device: index lookup,
batched augmentation (rotation, flip, zoom), normalisation, forward, backward, optimizer
step. The limit is the same model's step (same precision, memory format, optimizer) on a
random input already on the device in its final form. The overhead of the input pipeline
is (job step - limit step) / limit step; the target is under 15% on a GPU. The input
pipeline alone (index, augment, normalise; no model) is timed too: on a busy machine its
share of the limit step is the steadier figure of the same overhead.

    .venv/bin/python benchmarks/train_throughput.py [--device cuda] [--backbones ...]
        [--size 500] [--batch-size 128] [--steps 20] [--warmup 5]

Defaults are the paper's recipe (config/paper.yaml: 500 px, batch 128) with the schema's
acceleration defaults; on a CPU use a small --batch-size and --steps.
"""

from __future__ import annotations

import argparse
import sys

import torch

from synthetic import (PAPER_BACKBONES, add_recipe_arguments, describe_machine, paper_config, prepare,
                       synthetic_trainer, timed)


def measure(trainer, steps: int, warmup: int, device) -> dict:
    batch_size = trainer.settings["batch_size"]
    trainer.model.train()
    order = trainer.train_idx.to(device)
    batches = [order[(i * batch_size) % (len(order) - batch_size + 1):][:batch_size] for i in range(warmup + steps)]
    fixed = trainer._inputs(batches[0], train=True)
    random_input = torch.randn_like(fixed)  # same shape, dtype and memory format as a real batch
    target = trainer.labels[batches[0]]

    def job_steps(which):
        for index in which:
            trainer.train_step(index)

    def limit_steps(n):
        for _ in range(n):
            trainer.optimise(random_input, target)

    def input_only(which):
        for index in which:
            trainer._inputs(index, train=True)

    warm_up = timed(lambda: job_steps(batches[:warmup]), device)  # cuDNN autotuning, compilation, caches
    timed(lambda: limit_steps(warmup), device)
    job = timed(lambda: job_steps(batches[warmup:]), device) / steps
    limit = timed(lambda: limit_steps(steps), device) / steps
    pipeline = timed(lambda: input_only(batches[warmup:]), device) / steps
    return {"job": job, "limit": limit, "pipeline": pipeline, "batch_size": batch_size, "warm_up": warm_up}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--backbones", nargs="+", default=PAPER_BACKBONES)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--images", type=int, default=332, help="cached images (paper's largest sequence: 332)")
    args = parser.parse_args()
    config = paper_config(args)
    device, acceleration = prepare(config)
    print(describe_machine(device))
    print(f"recipe: {config['preprocessing']['size']} px, batch {config['training']['batch_size']}, "
          f"in_chans {config['training']['in_chans']}, {acceleration}")
    print(f"{'backbone':<16} {'job img/s':>10} {'limit img/s':>12} {'job/limit step':>15} "
          f"{'overhead':>9} {'input pipeline alone':>21} {'pipeline/limit':>15} {'warm-up steps':>14}")
    for backbone in args.backbones:
        trainer = synthetic_trainer(config, backbone, args.images, device, acceleration)
        figures = measure(trainer, args.steps, args.warmup, device)
        n = figures["batch_size"]
        overhead = figures["job"] / figures["limit"] - 1
        print(f"{backbone:<16} {n / figures['job']:>10.1f} {n / figures['limit']:>12.1f} "
              f"{figures['job'] / figures['limit']:>15.3f} {overhead:>8.1%} "
              f"{figures['pipeline'] * 1000:>12.1f} ms/batch {figures['pipeline'] / figures['limit']:>14.1%} "
              f"{figures['warm_up']:>12.1f} s", flush=True)
        del trainer
        if device.type == "cuda":
            print(f"{'':<16} peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    print("target: input pipeline overhead under 15% of the limit step time on a GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
