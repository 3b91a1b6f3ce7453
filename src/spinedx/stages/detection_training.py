"""Detection training stage: one network per model x input x fold, trained on patches.

Fold k's internal patients (the persisted split) validate, the other internal patients
train. Every epoch draws fresh patches from every training case
(``detection.patches_per_case``; a share ``detection.lesion_fraction`` centred on lesion
voxels, the rest anywhere in the head: :func:`spinedx.imaging.patches.sample_training_patches`),
optionally flipped left-right (``training.hflip``), and takes optimizer steps on batches
of ``training.batch_size`` with the model's loss. Every ``detection.selection.every``
epochs (and after the last) the network maps each validation case whole (sliding
windows), the map's candidates are matched to the case's lesions on the network's grid,
and the validation **detection** metric (CPM, or sensitivity at a false-positive rate) is
recorded; the epoch with the best one is kept, a tie keeping the earlier epoch. A
per-epoch ``last.pt`` lets a killed or preempted job resume where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from spinedx import paths
from spinedx.detection_task import DetectionTask
from spinedx.errors import InputError
from spinedx.imaging.components import extract_candidates, lesions_from_mask
from spinedx.imaging.detection_cache import VolumeCache
from spinedx.imaging.intensity import percentile_recipe
from spinedx.imaging.patches import network_geometry, sample_training_patches
from spinedx.io import write_csv, write_text
from spinedx.models.checkpoints import CHECKPOINT_FORMAT, matching_resume_state, save_checkpoint
from spinedx.models.detection import build_detector, check_geometry, detection_loss, probability_map
from spinedx.models.device import set_up
from spinedx.models.optimizers import build_optimizer
from spinedx.records import environment
from spinedx.splitting import read_folds
from spinedx.stats.froc import match_case, sensitivity_at_fp_rates

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_metric", "val_cpm", "val_sensitivity_at_fp", "val_lesions",
                   "val_candidates", "seconds", "selected"]
RESUME_FORMAT = "spinedx-detection-resume/1"


def job_seed(base_seed: int, model: str, input_: str, fold: int) -> int:
    """A distinct, stable seed per job (Python's hash() is salted per process)."""
    return (base_seed * 1_000_003 + zlib.crc32(f"detection/{model}/{input_}/{fold}".encode())) % 2**31


def fold_patients(cache: VolumeCache, cases: pd.DataFrame, folds: pd.DataFrame, fold: int, folds_path):
    """(training, validation) internal patient ids of ``fold``, checked against the split."""
    internal = cases.loc[cases["cohort"] == "internal", "patient_id"].tolist()
    fold_of = folds.set_index("patient_id")["fold"]
    missing = sorted(set(internal) - set(fold_of.index))
    if missing:
        raise InputError(f"{folds_path}: internal patient(s) {missing[:5]} have no fold; rerun the splits stage")
    if fold not in set(fold_of):
        raise InputError(f"{folds_path}: no fold {fold}; folds are {sorted(set(fold_of))}")
    validation = [p for p in internal if fold_of[p] == fold]
    training = [p for p in internal if fold_of[p] != fold]
    absent = sorted(set(internal) - set(cache.patients))
    if absent:
        raise InputError(f"{cache.path}: no preprocessed volumes of {absent[:5]}; rerun detection_preprocessing")
    return training, validation


class DetectionTrainer:
    """State of one detection training job, checkpointable after every epoch."""

    def __init__(self, cache: VolumeCache, training, validation, channels, spec, config, seed: int, device,
                 acceleration):
        self.spec, self.config, self.device, self.acceleration = spec, config, device, acceleration
        self.settings = config["training"]
        self.detection = config["detection"]
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        model = build_detector(spec.network, spec.options, len(channels))
        check_geometry(model, spec.patch, spec.window, spec.name)
        self.margin = network_geometry(model)[0]
        self.model = acceleration.prepare(model.to(device))
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler(device.type, enabled=acceleration.precision == "fp16")
        # Training cases stay in their stored precision (float16 images); patches become float32.
        self.training = {p: (cache.image(p, channels, dtype=None), cache.labels(p), cache.foreground(p))
                         for p in training}
        self.validation = {p: (cache.image(p, channels), cache.labels(p), cache.spacing(p)) for p in validation}
        if not any((labels > 0).any() for _, labels, _ in self.validation.values()):
            raise InputError(f"the validation cases of this fold ({sorted(validation)[:5]}) hold no lesion, so the "
                             "detection metric is undefined; add patients with lesions or lower splits.n_folds")
        self.history: list[dict] = []
        self.best_state: dict | None = None

    def _optimizer(self):
        return build_optimizer(self.model.parameters(), self.settings)

    def epoch_patches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's patches from every training case, shuffled, left-right flipped at
        random when ``training.hflip``: (inputs float32, targets 0/1 float32)."""
        images, targets = [], []
        for image, labels, foreground in self.training.values():
            x, y, _ = sample_training_patches(image, labels, foreground, self.detection["patches_per_case"],
                                              output_size=self.spec.patch, input_margin=self.margin,
                                              lesion_fraction=self.detection["lesion_fraction"], seed=self.rng,
                                              balance=self.detection["lesion_sampling"])
            images.append(x)
            targets.append(y > 0)
        x = torch.from_numpy(np.concatenate(images).astype(np.float32))
        y = torch.from_numpy(np.concatenate(targets).astype(np.float32))[:, None]
        order = torch.from_numpy(self.rng.permutation(len(x)))
        x, y = x[order], y[order]
        if self.settings["hflip"]:
            flip = torch.from_numpy(self.rng.random(len(x)) < 0.5)
            x[flip] = x[flip].flip(-1)
            y[flip] = y[flip].flip(-1)
        return x, y

    def train_epoch(self) -> float:
        self.model.train()
        x, y = self.epoch_patches()
        batch = self.settings["batch_size"]
        starts = list(range(0, len(x), batch))
        # A last batch of one patch breaks batch normalisation: fold it into the previous one.
        if len(starts) > 1 and len(x) - starts[-1] < 2:
            starts.pop()
        total = torch.zeros((), device=self.device)
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else len(x)
            inputs, target = x[start:stop].to(self.device), y[start:stop].to(self.device)
            with self.acceleration.autocast(self.device):
                logits = self.model(inputs)
            loss = detection_loss(logits.float(), target, self.spec.loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.detach() * (stop - start)
        value = total.item() / len(x)
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at epoch {len(self.history) + 1}; lower "
                                     "training.lr or check the preprocessed volumes")
        return value

    def validate(self) -> dict:
        """Candidates of the whole-volume maps of the validation cases, matched on the
        network's grid: CPM, sensitivity at the selection rate, and the selection metric."""
        candidates, matching = self.detection["candidates"], self.detection["matching"]
        matches, n_candidates = [], 0
        for patient_id, (image, labels, spacing) in self.validation.items():
            probability = probability_map(self.model, image, window=self.spec.window,
                                          settings=self.detection["inference"], device=self.device,
                                          autocast=self.acceleration.autocast)
            if not np.isfinite(probability).all():
                raise FloatingPointError(f"validation map of {patient_id} became non-finite at epoch "
                                         f"{len(self.history) + 1}; lower training.lr")
            found = extract_candidates(probability, spacing, threshold=candidates["threshold"],
                                       score=candidates["score"], connectivity=candidates["connectivity"],
                                       min_size_voxels=candidates["min_size_voxels"],
                                       min_volume_mm3=candidates["min_volume_mm3"])
            truth = lesions_from_mask(labels, spacing, instances=True)
            matches.append(match_case(found, truth, case_id=patient_id, criterion=matching["criterion"],
                                      min_iou=matching["min_iou"], duplicates=matching["duplicates"]))
            n_candidates += len(found)
        selection = self.detection["selection"]
        rates = sensitivity_at_fp_rates(matches, self.detection["fp_rates"])
        at_rate = sensitivity_at_fp_rates(matches, [selection["fp_per_case"]])[float(selection["fp_per_case"])]
        cpm = float(np.mean(list(rates.values())))
        return {"val_metric": cpm if selection["metric"] == "cpm" else at_rate, "val_cpm": cpm,
                "val_sensitivity_at_fp": at_rate, "val_lesions": int(sum(m.n_lesions for m in matches)),
                "val_candidates": n_candidates}

    def run_epoch(self, validate: bool) -> dict:
        started = time.perf_counter()
        record = {"epoch": len(self.history) + 1, "train_loss": self.train_epoch()}
        record.update(self.validate() if validate else
                      dict.fromkeys(("val_metric", "val_cpm", "val_sensitivity_at_fp"), math.nan))
        record["seconds"] = time.perf_counter() - started
        best = self.best_epoch()
        # Strictly better only: on a tie the earlier epoch stays selected.
        if validate and (best is None or record["val_metric"] > best["val_metric"]):
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.history.append(record)
        return record

    def best_epoch(self) -> dict | None:
        validated = [r for r in self.history if not math.isnan(r["val_metric"])]
        if not validated:
            return None
        return max(validated, key=lambda r: (r["val_metric"], -r["epoch"]))

    # --- resumable state -------------------------------------------------------------
    def state(self, signature: str) -> dict:
        return {"format": RESUME_FORMAT, "signature": signature, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "history": copy.deepcopy(self.history), "best_state": self.best_state}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.history = state["history"]
        self.best_state = state["best_state"]


def train(config, cache_path, cases_path, folds_path, model_name: str, input_: str, fold: int, out_dir) -> dict:
    """Train one fold model; write best.pt, history.tsv and config.yaml into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = DetectionTask.from_config(config)
    if model_name not in task.models or input_ not in task.models[model_name].inputs:
        raise InputError(f"model {model_name} x input {input_} is not in config detection.models/inputs")
    spec, settings, detection = task.models[model_name], config["training"], config["detection"]
    preprocessing = config["detection_preprocessing"]
    # channels_last is a 2D memory format: 3D networks keep the contiguous layout.
    device, acceleration = set_up(settings, channels_last=False)
    cache = VolumeCache(cache_path)
    cases = pd.read_parquet(cases_path)
    training, validation = fold_patients(cache, cases, read_folds(folds_path), fold, folds_path)
    channels = [cache.sequences.index(s) for s in task.inputs[input_]]
    seed = job_seed(settings["seed"], model_name, input_, fold)
    trainer = DetectionTrainer(cache, training, validation, channels, spec, config, seed, device, acceleration)

    signature = yaml.safe_dump({"model": spec.as_dict(), "input": input_, "fold": fold,
                                "training": settings, "detection": detection,
                                "sequences": list(task.inputs[input_])}, sort_keys=True)
    resume_path = out_dir / paths.RESUME_FILE
    state = matching_resume_state(resume_path, signature)
    if state is not None:
        trainer.restore(state)
        log.info("resumed from %s after epoch %d", resume_path, len(trainer.history))

    log.info("%s %s fold %d: %d training / %d validation cases, %s on %s (%s), seed %d", model_name, input_, fold,
             len(training), len(validation), spec.network, device, acceleration, seed)
    epochs, every = settings["epochs"], detection["selection"]["every"]
    while len(trainer.history) < epochs:
        epoch = len(trainer.history) + 1
        try:
            record = trainer.run_epoch(validate=epoch % every == 0 or epoch == epochs)
        except FloatingPointError as error:  # name the job; last.pt keeps the finished epochs
            raise FloatingPointError(f"{out_dir}: {error}") from error
        log.info("epoch %d: loss %.4f | validation %s %.3f, CPM %.3f (%.1f s)", record["epoch"],
                 record["train_loss"], detection["selection"]["metric"], record["val_metric"], record["val_cpm"],
                 record["seconds"])
        save_checkpoint(trainer.state(signature), resume_path)

    best = trainer.best_epoch()
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "task": "detection",
        "model": model_name, "input": input_, "sequences": list(task.inputs[input_]), "fold": int(fold),
        "epoch": int(best["epoch"]), "selection_metric": detection["selection"]["metric"],
        "val_metric": float(best["val_metric"]), "val_cpm": float(best["val_cpm"]),
        "network": spec.network, "options": copy.deepcopy(spec.options), "in_channels": len(channels),
        "patch": list(spec.patch), "window": list(spec.window), "loss": spec.loss,
        "spacing_mm": None if preprocessing["spacing_mm"] is None else [float(s) for s in preprocessing["spacing_mm"]],
        "intensity": percentile_recipe(preprocessing["intensity"]["low"], preprocessing["intensity"]["high"], "volume"),
        "state_dict": trainer.best_state,
    }
    save_checkpoint(checkpoint, out_dir / paths.CHECKPOINT_FILE)
    history = pd.DataFrame(trainer.history, columns=HISTORY_COLUMNS[:-1])
    history["selected"] = history["epoch"] == best["epoch"]
    write_csv(history, out_dir / paths.HISTORY_FILE, sep="\t")
    resolved = {
        "job": {"model": model_name, "input": input_, "sequences": list(task.inputs[input_]), "fold": int(fold),
                "seed": int(seed)},
        "selected": {"epoch": int(best["epoch"]), "metric": detection["selection"]["metric"],
                     "value": float(best["val_metric"])},
        "data": {"training_cases": len(training), "validation_cases": len(validation),
                 "validation_patients": sorted(validation)},
        "config": {"model": spec.as_dict(), "training": settings, "detection": detection,
                   "splits": config["splits"]},
        "environment": environment(device),
        "acceleration": dataclasses.asdict(acceleration),
    }
    write_text(yaml.safe_dump(resolved, sort_keys=False), out_dir / paths.JOB_CONFIG_FILE)
    resume_path.unlink(missing_ok=True)
    log.info("selected epoch %d (validation %s %.3f)", best["epoch"], detection["selection"]["metric"],
             best["val_metric"])
    return best
