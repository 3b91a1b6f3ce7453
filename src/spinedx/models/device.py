"""Where and how a job runs its models: the device, CPU threads and the acceleration
switches (config ``training``: precision, channels_last, compile, cudnn_benchmark).

:func:`set_up` is the one set-up of every model-running job (training, inference,
Grad-CAM, the benchmarks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass

import torch

from spinedx import runtime
from spinedx.errors import InputError


def select_device(name: str = "auto") -> torch.device:
    """The configured device; ``auto``/``cuda`` on a machine with several visible GPUs
    claim the least-used one, so concurrent local jobs spread over the devices (under
    SLURM each job sees only its allocated GPUs)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"config training.device is {name!r} but no CUDA device is available; use auto or cpu")
    if device.type == "cuda" and device.index is None:
        count = torch.cuda.device_count()
        device = torch.device("cuda", runtime.claim_gpu(count) if count > 1 else 0)
    return device


def configure_threads(threads: int, deterministic: bool) -> None:
    """One thread in deterministic mode: with more, CPU reductions may reorder and the
    last bits of the weights differ between runs."""
    torch.set_num_threads(1 if deterministic else threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # cuBLAS needs this to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclass(frozen=True)
class Acceleration:
    """How a job runs its model on the device (config training.precision, channels_last,
    compile, cudnn_benchmark), resolved once per job by :func:`resolve_acceleration`."""

    precision: str = "fp32"  # bf16 | fp16 | fp32
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    # TF32 tensor-core matmuls/convolutions for what still runs in fp32 on a GPU (10-bit
    # mantissa, ample for training); off in the safe path for exact fp32.
    tf32: bool = False

    def autocast(self, device: torch.device):
        """Mixed precision around forward passes (a no-op context in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Memory format and compilation of a model already on its device."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()  # in place: state_dict keys stay those of the plain model
        return model

    def layout(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPUs with AVX512-BF16 or AMX run bf16 convolutions natively (oneDNN); others emulate.
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private: may move
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and probe is not None and bool(probe())


def resolve_acceleration(settings: dict, device: torch.device) -> Acceleration:
    """The ``auto`` values made concrete for ``device``; the deterministic mode forces the
    safe settings (fp32, contiguous, eager, no cuDNN autotuning), which are slower."""
    if settings["deterministic"]:
        return Acceleration()
    cuda = device.type == "cuda"
    precision = settings["precision"]
    if precision == "auto":
        # Measured (benchmarks/RESULTS.md): bf16 autocast was 1.2-1.9x faster on a CPU with
        # native bf16 for 3 of 4 backbones; it is the fast path on Ampere+ GPUs; fp16
        # needs loss scaling.
        precision = "bf16" if bf16_supported(device) else ("fp16" if cuda else "fp32")
    if precision == "bf16" and cuda and not bf16_supported(device):
        raise InputError(f"config training.precision is bf16 but {device} does not support it; use auto, fp16 or fp32")
    channels_last = settings["channels_last"]
    cudnn_benchmark = settings["cudnn_benchmark"]
    return Acceleration(
        precision=precision,
        # NHWC: what GPU tensor cores want; on CPU measured faster or equal for 3 of the 4
        # backbones in bf16 and for all four in fp32 (benchmarks/RESULTS.md).
        channels_last=True if channels_last == "auto" else bool(channels_last),
        compile=bool(settings["compile"]),
        cudnn_benchmark=cuda if cudnn_benchmark == "auto" else bool(cudnn_benchmark),
        tf32=cuda,
    )


def apply_backend_settings(acceleration: Acceleration, device: torch.device) -> None:
    """Process-wide switches that follow the job's acceleration settings."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = acceleration.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = acceleration.tf32
        torch.backends.cudnn.allow_tf32 = acceleration.tf32


def set_up(settings: dict, **forced) -> tuple[torch.device, Acceleration]:
    """Threads, device and acceleration of a model-running job, from config ``training``
    (``threads``, ``deterministic``, ``device`` and the acceleration switches), with the
    process-wide backend switches applied. ``forced`` replaces fields of the resolved
    :class:`Acceleration` that a job cannot use (e.g. ``compile=False`` for scoring)."""
    configure_threads(settings["threads"], settings["deterministic"])
    device = select_device(settings["device"])
    acceleration = dataclasses.replace(resolve_acceleration(settings, device), **forced)
    apply_backend_settings(acceleration, device)
    return device, acceleration


@torch.no_grad()
def softmax_in_batches(model, inputs: torch.Tensor, batch_size: int, acceleration: Acceleration,
                       prepare, n_classes: int):
    """Softmax probabilities (N x classes, float64 numpy) of ``inputs`` through ``model``,
    ``batch_size`` at a time, under the job's acceleration settings. ``prepare`` turns one
    stored batch into the network's input on the model's device (scaling, normalising,
    channels); the host reads the result once, at the end."""
    device = next(model.parameters()).device
    probabilities = []
    for batch in torch.split(inputs, batch_size):
        with acceleration.autocast(device):
            logits = model(acceleration.layout(prepare(batch.to(device))))
        probabilities.append(torch.softmax(logits.float(), 1))
    if not probabilities:
        return torch.zeros((0, n_classes), dtype=torch.float64).numpy()
    return torch.cat(probabilities).cpu().numpy().astype("float64")
