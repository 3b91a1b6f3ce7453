"""Training stage: one timm CNN per backbone x sequence x fold (or hold-out repeat).

Fold k's patients (from the persisted split) validate; the other internal patients
train. With a hold-out (config ``splits.scheme``), repeat r's train partition trains and
its validation partition validates; its internal-test patients are never seen. The loss
is the cross-entropy over all classes (class-weighted with ``training.class_weights:
balanced``). The epoch with the best validation accuracy (the balanced accuracy, i.e.
the mean per-class recall, with ``class_weights: balanced``) is kept (a tie keeps the
earlier epoch). A per-epoch ``last.pt`` lets a killed or preempted job resume exactly
where it stopped; it is removed once the job finishes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

from spinedx import paths
from spinedx.config import pretrained_request
from spinedx.imaging.augmentation import augment
from spinedx.imaging.cache import align, read_cache
from spinedx.imaging.volume_cache import read_volume_cache
from spinedx.imaging.volume_inputs import intensity_recipe
from spinedx.input_modes import volume_study
from spinedx.io import write_csv, write_text
from spinedx.models.backbones import build_model, to_model_input
from spinedx.models.checkpoints import CHECKPOINT_FORMAT, matching_resume_state, save_checkpoint
from spinedx.models import pretrained
from spinedx.models.device import Acceleration, set_up
from spinedx.models.optimizers import build_optimizer
from spinedx.models.volumetric import VolumeInputs, VolumeJob
from spinedx.records import environment
from spinedx.splitting import read_folds, split_indices
from spinedx.stats.binary import roc_auc

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "val_auc", "seconds", "selected"]


def job_seed(base_seed: int, backbone: str, sequence: str, fold: int) -> int:
    """A distinct, stable seed per job (Python's hash() is salted per process)."""
    return (base_seed * 1_000_003 + zlib.crc32(f"{backbone}/{sequence}/{fold}".encode())) % 2**31


class FoldTrainer:
    """State of one training job, checkpointable after every epoch.

    The hot path has no host round trip per step: the uint8 cache and the labels live on
    the device (moved once), batches are index lookups there, augmentation is one batched
    resampling there, and losses and hit counts are summed on the device and read once
    per epoch.
    """

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, train_idx, val_idx,
                 backbone: str, n_classes: int, config: dict, seed: int, device: torch.device,
                 acceleration: Acceleration, pretrained_file: str | None = None, build=None, inputs=None):
        settings = config["training"]
        self.settings = settings
        self.device = device
        self.acceleration = acceleration  # the job's set-up (spinedx.models.device.set_up)
        self.images = images_u8.to(device)  # the whole cache once; batches are index lookups
        self.labels = labels.to(device)
        self.train_idx = torch.as_tensor(train_idx, dtype=torch.long)
        self.val_idx = torch.as_tensor(val_idx, dtype=torch.long).to(device)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        if build is None:
            # Initial weights: a resolved, hash-checked file (spinedx.models.pretrained) or none.
            model = build_model(backbone, n_classes, settings["in_chans"], pretrained_file).to(device)
        else:  # volume studies: the mode's network (spinedx.models.volumetric), built after the seed
            model = build().to(device)
        self.model = self.acceleration.prepare(model)
        # Volume studies: float crops in [0, 1] -> model input (models.volumetric.VolumeInputs).
        self.volume_inputs = inputs
        self.optimizer = self._optimizer()
        self.class_weight = class_weights(labels[self.train_idx], n_classes, settings["class_weights"], device)
        # Loss scaling only for fp16 (bf16 has fp32's exponent range).
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.acceleration.precision == "fp16")
        self.history: list[dict] = []
        self.best_state: dict | None = None

    def _optimizer(self):
        return build_optimizer(self.model.parameters(), self.settings)

    def _inputs(self, index: torch.Tensor, train: bool) -> torch.Tensor:
        """Normalised model input of the cached images at ``index`` (a device tensor);
        augmentation runs in fp32, outside autocast, exactly as in the safe path."""
        if self.volume_inputs is not None:
            return self.acceleration.layout(self.volume_inputs(self.images[index], train, self.generator))
        batch = self.images[index].float().div_(255).unsqueeze(1)
        if train:
            batch = augment(batch, self.generator, self.settings)
        batch = to_model_input(batch, self.settings["mean"], self.settings["std"], self.settings["in_chans"])
        return self.acceleration.layout(batch)

    def epoch_batches(self) -> list[torch.Tensor]:
        """This epoch's shuffled training batches (device index tensors)."""
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.generator)].to(self.device)
        batches = list(torch.split(order, self.settings["batch_size"]))
        # A last batch of one image breaks BatchNorm's batch statistics: fold it into the previous.
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def train_step(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the cached images at ``index``; returns the batch's summed
        loss and hit count, on the device."""
        return self.optimise(self._inputs(index, train=True), self.labels[index])

    def optimise(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and optimizer step on a ready model input (benchmarks time
        this alone, on random tensors, as the limit of a training step)."""
        with self.acceleration.autocast(self.device):
            logits = self.model(inputs)
        loss = F.cross_entropy(logits.float(), target, weight=self.class_weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach() * len(target), (logits.detach().argmax(1) == target).sum()

    def train_epoch(self) -> tuple[float, float]:
        self.model.train()
        batches = self.epoch_batches()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for index in batches:
            batch_loss, batch_correct = self.train_step(index)
            loss_sum += batch_loss
            correct += batch_correct
        n = sum(len(index) for index in batches)
        # One host read per epoch; a non-finite step loss makes the sum non-finite.
        loss_sum, correct = loss_sum.item(), int(correct.item())
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"training loss became {loss_sum / n} at epoch {len(self.history) + 1}; lower "
                "training.lr or check the input images (the cache may hold constant images)"
            )
        return loss_sum / n, correct / n

    @torch.no_grad()
    def validate(self) -> tuple[float, float, float]:
        self.model.eval()
        with self.acceleration.autocast(self.device):
            logits = torch.cat([self.model(self._inputs(index, train=False)).float()
                                for index in torch.split(self.val_idx, self.settings["batch_size"])])
        target = self.labels[self.val_idx]
        loss = F.cross_entropy(logits, target, weight=self.class_weight).item()
        hits = (logits.argmax(1) == target).float()
        if self.class_weight is None:
            accuracy = hits.mean().item()
        else:  # balanced accuracy: the mean recall of the classes present
            present = torch.unique(target)
            accuracy = torch.stack([hits[target == k].mean() for k in present]).mean().item()
        probabilities = torch.softmax(logits.float(), 1).cpu().numpy().astype(np.float64)
        if not np.isfinite(probabilities).all():  # weights diverged without a NaN training loss yet
            raise FloatingPointError(
                f"validation outputs became non-finite at epoch {len(self.history) + 1}; lower "
                "training.lr or check the input images (the cache may hold constant images)"
            )
        return loss, accuracy, validation_auc(target.cpu().numpy(), probabilities)

    def run_epoch(self) -> dict:
        started = time.perf_counter()
        train_loss, train_accuracy = self.train_epoch()
        val_loss, val_accuracy, val_auc = self.validate()
        record = dict(epoch=len(self.history) + 1, train_loss=train_loss, train_accuracy=train_accuracy,
                      val_loss=val_loss, val_accuracy=val_accuracy, val_auc=val_auc,
                      seconds=time.perf_counter() - started)
        best = self.best_epoch()
        # Strictly better only: on a tie the earlier epoch stays selected.
        if best is None or val_accuracy > best["val_accuracy"]:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.history.append(record)
        return record

    def best_epoch(self) -> dict | None:
        if not self.history:
            return None
        return max(self.history, key=lambda r: (r["val_accuracy"], -r["epoch"]))

    # --- resumable state -------------------------------------------------------------
    def state(self, signature: str) -> dict:
        return {
            "format": "spinedx-resume/1", "signature": signature,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": copy.deepcopy(self.history), "best_state": self.best_state,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = state["history"]
        self.best_state = state["best_state"]


def class_weights(train_labels: torch.Tensor, n_classes: int, rule: str, device) -> torch.Tensor | None:
    """Cross-entropy class weights (config ``training.class_weights``): None for "none";
    "balanced": n / (n_classes x n_k) per class present in training (absent classes 0)."""
    if rule == "none":
        return None
    counts = torch.bincount(train_labels.cpu(), minlength=n_classes).double()
    weights = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float().to(device)


def validation_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Two classes: the AUC of the last (positive) class (spinedx.task.BinaryTask); more:
    the macro one-vs-rest AUC over the classes present."""
    if probabilities.shape[1] == 2:
        return roc_auc(labels, probabilities[:, -1])
    aucs = np.array([roc_auc(labels == k, probabilities[:, k]) for k in range(probabilities.shape[1])])
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def load_job_data(cache_path, images_path, folds_path, fold: int, read=read_cache):
    images = pd.read_parquet(images_path)
    cache = read(cache_path)
    pixels = torch.from_numpy(align(cache, images, cache_path))
    labels = torch.tensor(images["label"].to_numpy(copy=True), dtype=torch.long)
    train_idx, val_idx = split_indices(images, read_folds(folds_path), fold, folds_path)
    return images, pixels, labels, train_idx, val_idx


def initial_weights(settings: dict, backbone: str, record_path=None) -> dict | None:
    """The pretrained-weights record of ``backbone`` (None: random initialisation): the
    one the workflow resolved before training (rule pretrained_weights), else resolved
    here (a job run by hand)."""
    if pretrained_request(settings["pretrained"], backbone) is None:
        return None
    if record_path is not None:
        return json.loads(Path(record_path).read_text())
    return pretrained.resolve(settings["pretrained"], backbone, settings["in_chans"])


def train(cache_path, images_path, folds_path, backbone: str, sequence: str, fold: int,
          config: dict, out_dir, pretrained_record=None) -> dict:
    """Train one fold model; write best.pt, history.tsv and config.yaml into ``out_dir``.
    ``pretrained_record``: the resolved initial weights (rule pretrained_weights)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = config["training"]
    device, acceleration = set_up(settings)
    volume = VolumeJob.of(backbone) if volume_study(config) else None
    if volume is None:
        images, pixels, labels, train_idx, val_idx = load_job_data(cache_path, images_path, folds_path, fold)
        options = {}
    else:  # a volume study's model: cached float crops of its input mode, its own network
        acceleration = volume.acceleration(acceleration)
        images, pixels, labels, train_idx, val_idx = load_job_data(cache_path, images_path, folds_path, fold,
                                                                   read_volume_cache)
        # Volume models start from random weights (training.pretrained names timm backbones).
        options = {"build": lambda: volume.build(pixels.shape[1:], len(config["classes"])),
                   "inputs": VolumeInputs(volume.mode, settings, device)}
    seed = job_seed(settings["seed"], backbone, sequence, fold)
    weights = None if volume is not None else initial_weights(settings, backbone, pretrained_record)
    absent = [name for k, name in enumerate(config["classes"]) if not (labels[train_idx] == k).any()]
    if absent:  # a rare class may have no image in a sequence's training part
        log.warning("%s %s model %d: no training image of class(es) %s; the model cannot learn them",
                    backbone, sequence, fold, absent)
    trainer = FoldTrainer(pixels, labels, train_idx, val_idx, backbone, len(config["classes"]),
                          config, seed, device, acceleration,
                          pretrained.verified_file(weights, pretrained_record) if weights else None, **options)

    # Resume only a run of exactly the same job and settings.
    signature = yaml.safe_dump({"backbone": backbone, "sequence": sequence, "fold": fold,
                                "training": settings, "preprocessing": config["preprocessing"],
                                "classes": config["classes"],
                                **({"initial_weights": weights["sha256"]} if weights else {})}, sort_keys=True)
    resume_path = out_dir / paths.RESUME_FILE
    state = matching_resume_state(resume_path, signature)
    if state is not None:
        trainer.restore(state)
        log.info("resumed from %s after epoch %d", resume_path, len(trainer.history))

    log.info("%s %s fold %d: %d training / %d validation images on %s (%s), seed %d",
             backbone, sequence, fold, len(train_idx), len(val_idx), device, acceleration, seed)
    while len(trainer.history) < settings["epochs"]:
        try:
            record = trainer.run_epoch()
        except FloatingPointError as error:  # name the job; last.pt keeps the finished epochs
            raise FloatingPointError(f"{out_dir} ({cache_path}): {error}") from error
        log.info("epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.3f (%.1f s)",
                 record["epoch"], record["train_loss"], record["train_accuracy"], record["val_loss"],
                 record["val_accuracy"], record["val_auc"], record["seconds"])
        save_checkpoint(trainer.state(signature), resume_path)

    best = trainer.best_epoch()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "backbone": backbone, "sequence": sequence, "fold": int(fold),
        "epoch": int(best["epoch"]), "val_accuracy": float(best["val_accuracy"]),
        "classes": list(config["classes"]), "n_classes": len(config["classes"]),
        "in_chans": int(settings["in_chans"]), "image_size": int(config["preprocessing"]["size"]),
        "mean": float(settings["mean"]), "std": float(settings["std"]),
        "state_dict": trainer.best_state,
    }
    if volume is not None:
        checkpoint.update(volume.checkpoint_fields(pixels.shape[1:], config["preprocessing"],
                                                   intensity_recipe(config["preprocessing"])))
    if weights:  # only then: checkpoints of randomly initialised models keep their bytes
        checkpoint["pretrained"] = pretrained.summary(weights)
    save_checkpoint(checkpoint, out_dir / paths.CHECKPOINT_FILE)
    history = pd.DataFrame(trainer.history, columns=HISTORY_COLUMNS[:-1])
    history["selected"] = history["epoch"] == best["epoch"]
    write_csv(history, out_dir / paths.HISTORY_FILE, sep="\t")
    write_resolved_config(out_dir / paths.JOB_CONFIG_FILE, config, backbone, sequence, fold, seed, device,
                          images, train_idx, val_idx, best, acceleration, weights)
    resume_path.unlink(missing_ok=True)
    log.info("selected epoch %d (validation accuracy %.3f)", best["epoch"], best["val_accuracy"])
    return best


def write_resolved_config(path, config, backbone, sequence, fold, seed, device, images,
                          train_idx, val_idx, best, acceleration: Acceleration, weights: dict | None = None) -> None:
    """Everything needed to rerun this job, beside its outputs (as timm's train.py does)."""
    def describe(index):
        subset = images.iloc[index]
        return {"images": int(len(subset)), "patients": int(subset["patient_id"].nunique()),
                "images_per_class": {config["classes"][k]: int(v) for k, v in
                                     subset["label"].value_counts().sort_index().items()}}
    resolved = {
        "job": {"backbone": backbone, "sequence": sequence, "fold": int(fold), "seed": int(seed)},
        "selected": {"epoch": int(best["epoch"]), "val_accuracy": float(best["val_accuracy"])},
        "data": {"training": describe(train_idx), "validation": describe(val_idx)},
        "config": {key: config[key] for key in ("classes", "preprocessing", "splits", "training")},
        "environment": environment(device),
        "acceleration": dataclasses.asdict(acceleration),
    }
    if weights:
        resolved["pretrained"] = {key: weights[key] for key in ("source", "file", "sha256", "bytes")}
    write_text(yaml.safe_dump(resolved, sort_keys=False), path)


# --- several fold models in one job (workflow setting training_jobs: per_sequence) --------

def train_folds(jobs: list[dict], config: dict, workers: int) -> None:
    """Train several fold models in one job, each exactly as its own ``spinedx training``
    job would: every fold runs in a worker process forked from this one after the imports
    (one fold per worker, ``workers`` at a time), seeded by its own job seed, so the
    weights equal those of one job per fold on the same machine. What the job saves is
    the process start-up and imports (torch, timm, pandas), paid once instead of once per
    fold. Each fold logs to its own file (``job["log"]``); a failed fold fails the job.

    ``jobs``: dicts with cache, images, folds, backbone, sequence, fold, out_dir, log and
    pretrained_record (or None), the arguments of :func:`train`.
    """
    import multiprocessing

    # fork: the workers inherit the imported modules; nothing has started a thread or
    # touched a device in this process yet (spinedx.models.device.set_up runs per fold).
    context = multiprocessing.get_context("fork")
    with context.Pool(max(1, min(workers, len(jobs))), maxtasksperchild=1) as pool:
        for job, best in zip(jobs, pool.imap(_train_fold_job, [(job, config) for job in jobs])):
            log.info("%s %s fold %s: selected epoch %d (validation accuracy %.3f)", job["backbone"],
                     job["sequence"], job["fold"], best["epoch"], best["val_accuracy"])


def _train_fold_job(job_and_config: tuple[dict, dict]) -> dict:
    """One fold in a forked worker: its log to its own file, then :func:`train`."""
    job, config = job_and_config
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job["log"], mode="w")
    if formatter is not None:
        handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        return train(job["cache"], job["images"], job["folds"], job["backbone"], job["sequence"],
                     int(job["fold"]), config, job["out_dir"], job.get("pretrained_record"))
    except Exception:
        log.exception("%s %s fold %s failed", job["backbone"], job["sequence"], job["fold"])
        raise
    finally:
        handler.close()
