"""Distribution-shift stage: does an audited cohort look like the cohort the released
models were trained on? Answered before anyone reads its AUC.

Two entry points:

* :func:`reference_stage` (every study, at bundle time): per backbone x sequence (a
  volume study: per model ``<mode>_<network>`` x sequence), the training cohort's
  reference (:mod:`spinedx.stats.shift`): for each fold model the PPCA model of the
  penultimate-layer features of the images it trained on and the distances of its
  held-out internal images (out-of-fold; a hold-out repeat's validation and
  internal-test images; any number of classes), and the intensity and size statistics of
  the internal images (a volume study: of the crops the model reads, from the input
  mode's cache and crops table). Written as ``.npz`` (plain arrays, read without pickle), copied
  into the bundle and hashed with it.
* :func:`audit_stage` (audit mode): every image of the new cohort through every fold
  model: its feature score (median over the fold models of distance / threshold; above 1
  = outside the training distribution) and the distance of its image statistics, flagged
  against thresholds from the training data's own distribution (config
  ``distribution_shift.quantile``; about 1 - quantile of in-distribution images are
  flagged). Writes the per-image table, a summary per backbone x sequence (flagged
  images and patients, the expected rate, a one-sided exact binomial p-value of more
  flags than expected; images of one patient are correlated, so read it as a screen),
  a figure, and the summary into the log as warnings when a cohort looks shifted. In
  audit mode the evaluation tables wait for this stage.
"""

from __future__ import annotations

import logging
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spinedx.errors import InputError
from spinedx.imaging.cache import align, read_cache
from spinedx.imaging.intensity import channels
from spinedx.imaging.volume_cache import read_volume_cache
from spinedx.input_modes import model_names, volume_study
from spinedx.io import atomic_output, write_csv
from spinedx.models.checkpoints import load_checkpoint, model_from_checkpoint
from spinedx.models.device import set_up
from spinedx.models.features import penultimate_features
from spinedx.models.volumetric import VolumeJob
from spinedx.plotting import PAGE_WIDTH, PALETTE, pyplot, save_figure
from spinedx.splitting import model_partitions, read_folds
from spinedx.stats.shift import (BOX_STATISTICS, FeatureReference, StatisticsReference, crop_statistics,
                                 every_image_has_a_box, fit_feature_reference, fold_scores, image_statistics,
                                 images_without_a_box)

log = logging.getLogger(__name__)

REFERENCE_FORMAT = "spinedx-shift-reference/1"
#: Columns of the per-image table before the job's statistics (IMAGE_STATISTICS for labelme
#: images, stats.shift.crop_statistic_names for a volume study's crops).
KEY_COLUMNS = ["backbone", "sequence", "patient_id", "image_id", "feature_score", "feature_flag",
               "statistics_distance", "statistics_threshold", "statistics_flag", "flagged"]


def _checkpoints_by_job(checkpoint_paths) -> dict[tuple[str, str], dict[int, str]]:
    """(backbone, sequence) -> fold -> checkpoint path (from the checkpoints' own records)."""
    jobs: dict[tuple[str, str], dict[int, str]] = {}
    for path in checkpoint_paths:
        checkpoint = load_checkpoint(path)
        jobs.setdefault((checkpoint["backbone"], checkpoint["sequence"]), {})[int(checkpoint["fold"])] = str(path)
    return jobs


def _features_per_fold(fold_paths: dict[int, str], pixels: torch.Tensor, device, acceleration,
                       batch_size: int) -> dict[int, np.ndarray]:
    features = {}
    for fold, path in sorted(fold_paths.items()):
        checkpoint = load_checkpoint(path)
        job_acceleration = VolumeJob.of(checkpoint["backbone"]).acceleration(acceleration) if "mode" in checkpoint \
            else acceleration  # 3d inputs keep their layout
        model = job_acceleration.prepare(model_from_checkpoint(checkpoint, device))
        features[fold] = penultimate_features(model, pixels, checkpoint, batch_size, job_acceleration)
    return features


def _job_images(images: pd.DataFrame, cache: dict, cache_path, sequence: str, cohort: str | None, device):
    """The rows of one sequence (and cohort) of an image table (labelme images, or a volume
    study's crops table) and their cached model inputs, in the table's order."""
    chosen = images[images["sequence"] == sequence]
    if cohort is not None:
        chosen = chosen[chosen["cohort"] == cohort]
    chosen = chosen.reset_index(drop=True)
    crops = align(cache, chosen, cache_path)
    return chosen, crops, torch.from_numpy(crops).to(device)


def _statistics(crops: np.ndarray, images: pd.DataFrame, fold_paths: dict[int, str],
                names: list[str] | None = None) -> pd.DataFrame:
    """Intensity and size statistics of what the job's models read: labelme images
    (stats.shift.image_statistics) or a volume study's crops, per channel of the intensity
    recipe the models were trained with (stats.shift.crop_statistics). Labelme images: the
    reference (``names`` None) keeps the box fractions only when every training image has a
    box (labels from the annotation: lesion images only); an audit computes the reference's
    ``names``."""
    checkpoint = load_checkpoint(next(iter(fold_paths.values())))
    if "mode" in checkpoint:
        return crop_statistics(crops, images, channels(checkpoint["intensity_recipe"]))
    if names is None:
        return image_statistics(crops, images, every_image_has_a_box(images))
    boxes = BOX_STATISTICS[0] in names
    unboxed = images.loc[images_without_a_box(images), "json_path"]
    if boxes and len(unboxed):
        raise InputError(f"the bundle's shift reference of {images['sequence'].iloc[0]} holds box statistics "
                         f"(every training image had a rectangle); {len(unboxed)} image(s) of this cohort have "
                         f"none, e.g. {unboxed.tolist()[:3]}: draw the lesion's rectangle in labelme")
    return image_statistics(crops, images, boxes)


class _Inputs:
    """Image tables and caches by path, each read once (jobs of one sequence share them)."""

    def __init__(self, volumes: bool) -> None:
        self.read_cache = read_volume_cache if volumes else read_cache
        self.tables: dict[str, pd.DataFrame] = {}
        self.caches: dict[str, dict] = {}

    def table(self, path) -> pd.DataFrame:
        if str(path) not in self.tables:
            self.tables[str(path)] = pd.read_parquet(path)
        return self.tables[str(path)]

    def cache(self, path) -> dict:
        if str(path) not in self.caches:
            self.caches[str(path)] = self.read_cache(path)
        return self.caches[str(path)]


def _check_job_inputs(config, cache_paths, images_paths, outs, what: str) -> list[tuple[str, str]]:
    jobs = list(product(model_names(config), config["sequences"]))
    if not len(jobs) == len(cache_paths) == len(images_paths) == len(outs):
        raise InputError(f"{what}: give one output, one cache and one image table per model x sequence "
                         f"({len(jobs)}: {[f'{b}/{q}' for b, q in jobs]}), in the config's order; got "
                         f"{len(outs)} / {len(cache_paths)} / {len(images_paths)}")
    return jobs


def build_reference(fold_paths: dict[int, str], images: pd.DataFrame, crops: np.ndarray, pixels: torch.Tensor,
                    folds: pd.DataFrame, device, acceleration, settings: dict, batch_size: int) -> dict:
    """The arrays of one backbone x sequence's reference (internal images only). ``folds``:
    k-fold folds or hold-out partitions; a model's held-out images are those it did not
    train on (its fold; a repeat's validation and internal-test partitions)."""
    arrays: dict[str, np.ndarray] = {}
    for fold, features in _features_per_fold(fold_paths, pixels, device, acceleration, batch_size).items():
        held = model_partitions(images, folds, fold, "splits") != "train"
        reference = fit_feature_reference(features[~held], features[held], settings["components"])
        arrays.update(reference.to_arrays(f"fold{fold}_"))
    arrays["folds"] = np.array(sorted(fold_paths), dtype=np.int64)
    statistics = _statistics(crops, images, fold_paths)
    arrays["statistics_names"] = np.array(list(statistics.columns))
    arrays["statistics_training"] = statistics.to_numpy(dtype=np.float64)
    return arrays


def reference_stage(config, checkpoint_paths, cache_paths, images_paths, folds_path, outs) -> list[Path]:
    """Every model x sequence's reference, written to ``outs``; ``cache_paths`` and
    ``images_paths`` are the cache and image table each job's models read (labelme: the
    sequence's cache and the images table; volumes: the input mode's cache and crops
    table), all in the order models x sequences of the config."""
    job_list = _check_job_inputs(config, cache_paths, images_paths, outs, "distribution_shift reference")
    jobs = _checkpoints_by_job(checkpoint_paths)
    inputs = _Inputs(volume_study(config))
    folds = read_folds(folds_path)
    device, acceleration = set_up(config["training"], compile=False)
    written = []
    for (backbone, sequence), cache_path, images_path, out in zip(job_list, cache_paths, images_paths, outs):
        if (backbone, sequence) not in jobs:
            raise InputError(f"no fold checkpoint of {backbone}/{sequence} among {len(checkpoint_paths)} given")
        chosen, crops, pixels = _job_images(inputs.table(images_path), inputs.cache(cache_path), cache_path,
                                            sequence, "internal", device)
        arrays = build_reference(jobs[(backbone, sequence)], chosen, crops, pixels, folds, device, acceleration,
                                 config["distribution_shift"], config["inference"]["batch_size"])
        arrays.update(format=np.array(REFERENCE_FORMAT), backbone=np.array(backbone), sequence=np.array(sequence))
        with atomic_output(out, suffix=".npz") as partial:
            np.savez(partial, **arrays)
        written.append(Path(out))
        log.info("shift reference %s/%s: %d internal images, %d fold models -> %s", backbone, sequence,
                 len(chosen), len(jobs[(backbone, sequence)]), out)
    return written


def read_reference(path) -> dict:
    """A reference written by :func:`reference_stage` (never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable distribution-shift reference ({error}); obtain the bundle again") from error
    if str(arrays.get("format")) != REFERENCE_FORMAT:
        raise InputError(f"{path}: not a {REFERENCE_FORMAT} file; obtain the bundle again")
    return arrays


def score_cohort(reference: dict, fold_paths: dict[int, str], images: pd.DataFrame, crops: np.ndarray,
                 pixels: torch.Tensor, device, acceleration, quantile: float, batch_size: int) -> pd.DataFrame:
    """Per image: feature score and flag, image-statistics distance and flag."""
    folds = [int(k) for k in reference["folds"]]
    missing = sorted(set(folds) - set(fold_paths))
    if missing:
        raise InputError(f"the shift reference has fold models {folds}; models of folds {missing} are missing")
    features = _features_per_fold({k: fold_paths[k] for k in folds}, pixels, device, acceleration, batch_size)
    references = [FeatureReference.from_arrays(reference, f"fold{k}_") for k in folds]
    scores = fold_scores(references, [features[k] for k in folds], quantile)
    names = [str(name) for name in reference["statistics_names"]]
    statistics = _statistics(crops, images, fold_paths, names)
    if list(statistics.columns) != names:
        raise InputError(f"the shift reference of {reference['backbone']}/{reference['sequence']} holds the "
                         f"statistics {names}, this cohort's images give {list(statistics.columns)}; preprocess "
                         "with the bundle's settings (its model card)")
    statistics_reference = StatisticsReference(np.asarray(reference["statistics_training"], dtype=np.float64))
    distance = statistics_reference.distance(statistics.to_numpy(dtype=np.float64))
    threshold = statistics_reference.threshold(quantile)
    table = pd.DataFrame({"patient_id": images["patient_id"].to_numpy(), "image_id": images["image_id"].to_numpy(),
                          "feature_score": scores, "feature_flag": scores > 1, "statistics_distance": distance,
                          "statistics_threshold": threshold, "statistics_flag": distance > threshold})
    table["flagged"] = table["feature_flag"] | table["statistics_flag"]
    return pd.concat([table, statistics], axis=1)


def summarise(table: pd.DataFrame, quantile: float, training_medians: dict) -> pd.DataFrame:
    from scipy.stats import binomtest

    rows = []
    expected = 1 - quantile
    for (backbone, sequence), group in table.groupby(["backbone", "sequence"], sort=False):
        n = len(group)
        flagged = int(group["feature_flag"].sum())
        patients = group.groupby("patient_id")["feature_score"].median()
        p = binomtest(flagged, n, expected, alternative="greater").pvalue if n else np.nan
        row = {"backbone": backbone, "sequence": sequence, "patients": int(patients.size), "images": n,
               "images_flagged_features": flagged, "images_flagged_features_pct": 100 * flagged / n if n else np.nan,
               "images_flagged_statistics": int(group["statistics_flag"].sum()),
               "images_flagged_statistics_pct": 100 * group["statistics_flag"].mean() if n else np.nan,
               "patients_flagged": int((patients > 1).sum()),
               "patients_flagged_pct": 100 * (patients > 1).mean() if len(patients) else np.nan,
               "expected_pct": 100 * expected, "p_more_flags_than_expected": p,
               "verdict": "shifted" if p < 0.05 else "no evidence of shift",
               "median_feature_score": float(group["feature_score"].median())}
        for name, median in training_medians[(backbone, sequence)].items():
            row[f"{name}_median"] = float(group[name].median())
            row[f"{name}_training_median"] = median
        rows.append(row)
    return pd.DataFrame(rows)


def shift_figure(table: pd.DataFrame, nulls: dict, quantile: float):
    """Feature scores of the cohort against the held-out training images', per backbone x
    sequence; the threshold at 1."""
    plt = pyplot()
    jobs = list(dict.fromkeys(zip(table["backbone"], table["sequence"])))
    columns = min(len(jobs), 3)
    rows = int(np.ceil(len(jobs) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH, 2.3 * rows + 0.4), squeeze=False)
    for ax, job in zip(axes.ravel(), jobs):
        scores = table[(table["backbone"] == job[0]) & (table["sequence"] == job[1])]["feature_score"]
        null = nulls[job]
        top = max(float(np.max(scores)) if len(scores) else 1.0, float(np.max(null)) if len(null) else 1.0, 1.5)
        bins = np.linspace(0, top * 1.05, 30)
        ax.hist(null, bins=bins, density=True, color=PALETTE[0], alpha=0.5, label="training, held out")
        ax.hist(scores, bins=bins, density=True, color=PALETTE[3], alpha=0.6, label="audited cohort")
        ax.axvline(1.0, color="0.2", lw=0.9, ls="--")
        ax.set_title(f"{job[0]}, {job[1]}: {100 * np.mean(scores > 1):.0f}% flagged")
        ax.set_xlabel("Feature score (distance / threshold)")
    for ax in axes.ravel()[len(jobs):]:
        ax.axis("off")
    axes[0][0].set_ylabel("Density")
    axes[0][0].legend(frameon=False)
    fig.suptitle(f"Distribution shift: penultimate-layer features; flagged above 1 "
                 f"(expected {100 * (1 - quantile):.0f}% of in-distribution images)")
    fig.tight_layout()
    return fig


def audit_stage(config, checkpoint_paths, reference_paths, cache_paths, images_paths, out_table, out_summary,
                figure_stem) -> pd.DataFrame:
    """The audited cohort against the bundle's references; ``cache_paths`` and
    ``images_paths`` as for :func:`reference_stage` (one per model x sequence)."""
    settings = config["distribution_shift"]
    quantile = settings["quantile"]
    job_list = _check_job_inputs(config, cache_paths, images_paths, reference_paths, "distribution_shift")
    jobs = _checkpoints_by_job(checkpoint_paths)
    references = {}
    for path in reference_paths:
        arrays = read_reference(path)
        references[(str(arrays["backbone"]), str(arrays["sequence"]))] = arrays
    inputs = _Inputs(volume_study(config))
    device, acceleration = set_up(config["training"], compile=False)
    parts, nulls, medians = [], {}, {}
    for (backbone, sequence), cache_path, images_path in zip(job_list, cache_paths, images_paths):
        if (backbone, sequence) not in references:
            raise InputError(f"the bundle has no distribution-shift reference of {backbone}/{sequence}")
        reference = references[(backbone, sequence)]
        chosen, crops, pixels = _job_images(inputs.table(images_path), inputs.cache(cache_path), cache_path,
                                            sequence, None, device)
        if chosen.empty:
            continue
        scored = score_cohort(reference, jobs[(backbone, sequence)], chosen, crops, pixels, device, acceleration,
                              quantile, config["inference"]["batch_size"])
        parts.append(scored.assign(backbone=backbone, sequence=sequence))
        folds = [int(k) for k in reference["folds"]]
        held = [FeatureReference.from_arrays(reference, f"fold{k}_") for k in folds]
        nulls[(backbone, sequence)] = np.concatenate([r.held_out_distances / r.threshold(quantile) for r in held])
        names = [str(name) for name in reference["statistics_names"]]
        medians[(backbone, sequence)] = dict(zip(names, np.median(reference["statistics_training"], axis=0).tolist()))
    statistic_columns = list(dict.fromkeys(name for job in medians.values() for name in job))
    columns = [*KEY_COLUMNS, *statistic_columns]
    table = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    summary = summarise(table, quantile, medians)
    write_csv(table, out_table)
    write_csv(summary, out_summary)
    save_figure(shift_figure(table, nulls, quantile), Path(figure_stem))
    for row in summary.itertuples():
        message = (f"distribution shift {row.backbone}/{row.sequence}: {row.images_flagged_features} of {row.images} "
                   f"images ({row.images_flagged_features_pct:.0f}%) outside the training features' distribution "
                   f"(expected about {row.expected_pct:.0f}%), {row.images_flagged_statistics_pct:.0f}% by intensity/"
                   f"size statistics, {row.patients_flagged} of {row.patients} patients; {row.verdict}")
        (log.warning if row.verdict == "shifted" else log.info)(message)
    return summary
