"""Benchmark: DeepMedic training patches/s and sliding-window volumes/s at the paper's sizes.

The network is spinedx.models.deepmedic.DeepMedic with its defaults (the published
configuration: 8 layers of 30-50 maps per pathway, context subsampled by 3, two FC layers
of 150), on two input channels (black blood + bright blood). Training: the detection
job's step (spinedx.models.detection.detection_loss under the job's autocast, Adam) on
batches of random regions of ``--patch`` output voxels (9^3 -> 57^3 input regions, as
DeepMedic trains). Inference: spinedx.models.detection.probability_map (the detection
inference stage's sliding window, DeepMedic two-pathway windows of ``--window`` output
voxels, Gaussian blending) over a whole random volume of ``--volume`` voxels (default a
1 mm head: 160 x 240 x 200). Device and precision come from the jobs' one set-up
(spinedx.models.device.set_up, config ``training``).

    .venv/bin/python benchmarks/detection_throughput.py --device cuda
    .venv/bin/python benchmarks/detection_throughput.py --device cpu --threads 2 \
        --batch-size 4 --steps 3 --volume 48 96 96 --volumes 1

Random inputs: the numbers are throughput only (no accuracy). Process CPU time is printed
beside wall time: on a shared CPU it is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from synthetic import describe_machine, timed

from spinedx import config as configuration  # noqa: E402  (synthetic puts the checkout's src first)
from spinedx.models import device as devices  # noqa: E402
from spinedx.models.detection import build_detector, detection_loss, probability_map  # noqa: E402


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--channels", type=int, default=2, help="input sequences (paper: 2)")
    parser.add_argument("--patch", type=int, default=9, help="training output patch per axis (DeepMedic: 9)")
    parser.add_argument("--batch-size", type=int, default=10, help="training patches per step (DeepMedic: 10)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--window", type=int, default=45, help="inference output window per axis (multiple of 3)")
    parser.add_argument("--sw-batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--volume", type=int, nargs=3, default=[160, 240, 200], metavar=("Z", "Y", "X"))
    parser.add_argument("--volumes", type=int, default=3, help="volumes timed (after one warm-up volume)")
    return parser.parse_args()


def main() -> int:
    args = parse()
    settings = configuration.resolve({"training": {
        "device": args.device, "precision": args.precision, "deterministic": False,
        "threads": args.threads or os.cpu_count()}})
    device, acceleration = devices.set_up(settings["training"], channels_last=False, compile=False)
    model = build_detector("deepmedic", {}, args.channels).to(device)
    region = model.input_size(args.patch)
    print(describe_machine(device))
    print(f"DeepMedic (defaults), {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"precision {acceleration.precision}; patch {args.patch}^3 output <- {region[0]}^3 region; "
          f"batch {args.batch_size}")

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=acceleration.precision == "fp16")
    inputs = torch.randn(args.batch_size, args.channels, *region, device=device)
    target = (torch.rand(args.batch_size, 1, *(args.patch,) * 3, device=device) < 0.2).float()

    def steps(n):
        model.train()
        for _ in range(n):
            with acceleration.autocast(device):
                logits = model(inputs)
            loss = detection_loss(logits.float(), target, "bce")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    timed(lambda: steps(args.warmup), device)
    cpu = time.process_time()
    seconds = timed(lambda: steps(args.steps), device)
    cpu = time.process_time() - cpu
    print(f"training: {args.steps * args.batch_size / seconds:.1f} patches/s "
          f"({seconds / args.steps * 1000:.0f} ms per step of {args.batch_size}; "
          f"{cpu / args.steps * 1000:.0f} ms process CPU time per step)")

    volume = torch.randn(args.channels, *args.volume).numpy()
    inference = {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": args.sw_batch_size}

    def score(n):
        for _ in range(n):
            probability_map(model, volume, window=(args.window,) * 3, settings=inference, device=device,
                            autocast=acceleration.autocast)

    timed(lambda: score(1), device)
    cpu = time.process_time()
    seconds = timed(lambda: score(args.volumes), device)
    cpu = time.process_time() - cpu
    memory = (f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
              if device.type == "cuda" else "")
    print(f"sliding window: {args.volumes / seconds:.3f} volumes/s ({seconds / args.volumes:.1f} s per "
          f"{'x'.join(map(str, args.volume))} volume, window {args.window}^3, overlap 0.5; "
          f"{cpu / args.volumes:.1f} s process CPU time per volume){memory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
