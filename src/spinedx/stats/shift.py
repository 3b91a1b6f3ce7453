"""Distribution shift: how far new images lie from a model's training images.

Two views, each with a threshold taken from the training data's own distribution:

* **Features** (the model's penultimate layer): a probabilistic-PCA Mahalanobis distance
  to the training images' features. With mean ``mu``, the top ``q`` principal directions
  ``v_i`` of the centred training features with variances ``lambda_i``, and the mean
  remaining variance ``sigma^2`` (over the other ``d - q`` dimensions)::

      D^2(x) = sum_i ((x - mu) . v_i)^2 / lambda_i + |r|^2 / sigma^2,
      r = (x - mu) - sum_i ((x - mu) . v_i) v_i

  the Mahalanobis distance under the covariance ``V Lambda V' + sigma^2 (I - V V')``
  (Tipping & Bishop 1999), defined with fewer images than feature dimensions. Images the
  model trained on sit closer to their own features than any new image, so the
  distribution of in-distribution distances comes from **held-out** images: the internal
  images of the fold the model never saw (out-of-fold). The threshold is a quantile of
  those distances (:func:`FeatureReference.threshold`).
* **Image statistics** (intensity and size): a Mahalanobis distance of a few statistics
  of each image (:data:`IMAGE_STATISTICS`; a volume study's crops:
  :func:`crop_statistic_names`), standardised by the training images' SDs,
  with a small ridge on their correlation matrix; threshold: a quantile of the training
  images' leave-one-out distances (each to the model fitted without it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from spinedx.errors import InputError

#: Statistics of an image (computed by :func:`image_statistics`), in order.
IMAGE_STATISTICS = ("intensity_mean", "intensity_sd", "intensity_p05", "intensity_p50", "intensity_p95",
                    "width", "height", "box_width_fraction", "box_height_fraction")
#: The statistics of an image's rectangle: left out where not every image has one.
BOX_STATISTICS = ("box_width_fraction", "box_height_fraction")
_EPS = 1e-12
_RIDGE = 1e-3


@dataclass(frozen=True)
class FeatureReference:
    """One model's training features: mean (d,), principal directions (q, d), their
    variances (q,), the residual variance, and the distances of held-out images."""

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    held_out_distances: np.ndarray

    def distance(self, features) -> np.ndarray:
        """PPCA Mahalanobis distance of each row of ``features`` (n, d)."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        if centred.ndim != 2 or centred.shape[1] != self.mean.size:
            raise InputError(f"features must be (n, {self.mean.size}), got {centred.shape}")
        scores = centred @ self.components.T
        residual = centred - scores @ self.components
        squared = (scores**2 / self.variances).sum(axis=1) + (residual**2).sum(axis=1) / self.residual_variance
        return np.sqrt(squared)

    def threshold(self, quantile: float) -> float:
        """The ``quantile`` of the held-out images' distances (linear interpolation)."""
        return float(np.quantile(self.held_out_distances, quantile))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}mean": self.mean, f"{prefix}components": self.components,
                f"{prefix}variances": self.variances,
                f"{prefix}residual_variance": np.array([self.residual_variance]),
                f"{prefix}held_out": self.held_out_distances}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> FeatureReference:
        return cls(np.asarray(arrays[f"{prefix}mean"], float), np.asarray(arrays[f"{prefix}components"], float),
                   np.asarray(arrays[f"{prefix}variances"], float),
                   float(np.asarray(arrays[f"{prefix}residual_variance"])[0]),
                   np.asarray(arrays[f"{prefix}held_out"], float))


def fit_feature_reference(training, held_out, components: int) -> FeatureReference:
    """The PPCA reference of ``training`` features (n, d), with the distances of the
    ``held_out`` features (m, d) as the in-distribution null."""
    training = np.asarray(training, dtype=np.float64)
    held_out = np.asarray(held_out, dtype=np.float64)
    if training.ndim != 2 or training.shape[0] < 3:
        raise InputError(f"a feature reference needs at least 3 training images, got {training.shape[0]}")
    if held_out.ndim != 2 or held_out.shape[0] < 1 or held_out.shape[1] != training.shape[1]:
        raise InputError("a feature reference needs held-out images with the training images' feature size")
    n, d = training.shape
    mean = training.mean(axis=0)
    _, singular, directions = np.linalg.svd(training - mean, full_matrices=False)
    eigenvalues = singular**2 / (n - 1)
    q = int(max(1, min(components, n - 1, d - 1)))
    kept = np.maximum(eigenvalues[:q], _EPS)
    residual = float(max(eigenvalues[q:].sum() / (d - q), _EPS))
    partial = FeatureReference(mean, directions[:q], kept, residual, np.zeros(0))
    return FeatureReference(mean, directions[:q], kept, residual, partial.distance(held_out))


def images_without_a_box(images: pd.DataFrame) -> np.ndarray:
    """Which images of the table lack their rectangle (x0, y0, x1, y1), as a boolean mask."""
    return ~np.isfinite(images[["x0", "y0", "x1", "y1"]].to_numpy(dtype=float)).all(axis=1)


def every_image_has_a_box(images: pd.DataFrame) -> bool:
    """Whether each image of the table has its rectangle. Labels from the annotation
    (labels.source annotation) put one on lesion images only: there the box fractions
    would describe the label, not the image, and are left out of the statistics."""
    return not images_without_a_box(images).any()


def image_statistics(crops: np.ndarray, images: pd.DataFrame, boxes: bool = True) -> pd.DataFrame:
    """:data:`IMAGE_STATISTICS` of each image: intensity of its preprocessed crop (uint8 N x
    H x W, what the model sees) and size of the image and its box (the image table's width,
    height, x0, y0, x1, y1), in the order of ``images``; without the box fractions when
    ``boxes`` is false (:func:`every_image_has_a_box`)."""
    crops = np.asarray(crops, dtype=np.float64).reshape(len(images), -1)
    p05, p50, p95 = np.percentile(crops, [5, 50, 95], axis=1)
    width = images["width"].to_numpy(dtype=float)
    height = images["height"].to_numpy(dtype=float)
    statistics = pd.DataFrame({
        "intensity_mean": crops.mean(axis=1), "intensity_sd": crops.std(axis=1),
        "intensity_p05": p05, "intensity_p50": p50, "intensity_p95": p95, "width": width, "height": height,
        "box_width_fraction": (images["x1"].to_numpy(float) - images["x0"].to_numpy(float)) / width,
        "box_height_fraction": (images["y1"].to_numpy(float) - images["y0"].to_numpy(float)) / height,
    })[list(IMAGE_STATISTICS)]
    return statistics if boxes else statistics.drop(columns=list(BOX_STATISTICS))


#: Size statistics of a volume study's crop (:func:`crop_statistics`): the source volume's
#: dimensions (voxels) and spacing (mm), and the lesion box's extent (mm), per axis.
VOLUME_SIZE_STATISTICS = (*(f"volume_{a}" for a in "zyx"), *(f"spacing_{a}" for a in "zyx"),
                          *(f"lesion_{a}_mm" for a in "zyx"))
_INTENSITY = ("mean", "sd", "p05", "p50", "p95")


def crop_statistic_names(channels) -> list[str]:
    """The statistics of a volume study's crop, in order: per intensity channel (the
    recipe's windows, e.g. ``bone``) its mean, SD and 5/50/95th percentiles, then
    :data:`VOLUME_SIZE_STATISTICS`."""
    return [*(f"{channel}_{name}" for channel in channels for name in _INTENSITY), *VOLUME_SIZE_STATISTICS]


def crop_statistics(crops: np.ndarray, crops_table: pd.DataFrame, channels) -> pd.DataFrame:
    """:func:`crop_statistic_names` of each crop of a volume study (float32 (N, C, ...) in
    [0, 1], what the model sees: the CT windows or the MR percentile channel after
    resampling, 2.5d neighbours stacked channel by channel), with the size of its source
    volume from the crops table (shape_*, spacing_*, box_*0/1 on the source grid), in the
    order of ``crops_table``."""
    channels = list(channels)
    crops = np.asarray(crops, dtype=np.float64)
    if crops.ndim < 3 or crops.shape[0] != len(crops_table) or crops.shape[1] % len(channels):
        raise InputError(f"crops of shape {crops.shape} do not hold {len(crops_table)} crops of the "
                         f"{len(channels)} intensity channels {channels}")
    per_channel = crops.reshape(len(crops_table), len(channels), -1)  # channel-major (2.5d: C x neighbours)
    columns = {}
    p05, p50, p95 = np.percentile(per_channel, [5, 50, 95], axis=2)
    for index, channel in enumerate(channels):
        values = per_channel[:, index]
        columns.update({f"{channel}_mean": values.mean(axis=1), f"{channel}_sd": values.std(axis=1),
                        f"{channel}_p05": p05[:, index], f"{channel}_p50": p50[:, index],
                        f"{channel}_p95": p95[:, index]})
    for axis in "zyx":
        spacing = crops_table[f"spacing_{axis}"].to_numpy(dtype=float)
        columns[f"volume_{axis}"] = crops_table[f"shape_{axis}"].to_numpy(dtype=float)
        columns[f"spacing_{axis}"] = spacing
        columns[f"lesion_{axis}_mm"] = (crops_table[f"box_{axis}1"].to_numpy(dtype=float)
                                        - crops_table[f"box_{axis}0"].to_numpy(dtype=float)) * spacing
    return pd.DataFrame(columns)[crop_statistic_names(channels)]


def _statistics_model(training: np.ndarray):
    """Centre, scale and precision of standardised statistics (ridge on the correlation)."""
    centre = training.mean(axis=0)
    scale = training.std(axis=0, ddof=1)
    scale = np.where(scale > _EPS, scale, 1.0)  # a constant statistic: any change is large
    standard = (training - centre) / scale
    covariance = np.atleast_2d(np.cov(standard, rowvar=False)) + _RIDGE * np.eye(standard.shape[1])
    return centre, scale, np.linalg.inv(covariance)


def _statistics_distance(model, statistics) -> np.ndarray:
    centre, scale, precision = model
    standard = (np.asarray(statistics, dtype=np.float64) - centre) / scale
    return np.sqrt(np.einsum("ij,jk,ik->i", standard, precision, standard))


@dataclass(frozen=True)
class StatisticsReference:
    """The training images' statistics (n, k) and the distance model fitted to them."""

    training: np.ndarray

    def distance(self, statistics) -> np.ndarray:
        return _statistics_distance(_statistics_model(self.training), statistics)

    def held_out_distances(self) -> np.ndarray:
        """Each training image's distance to the model fitted without it (leave one out):
        a fitted covariance hugs its own images, so in-sample distances would understate
        how far an unseen image of the same distribution lies."""
        rows = np.arange(self.training.shape[0])
        return np.array([_statistics_distance(_statistics_model(self.training[rows != i]), self.training[[i]])[0]
                         for i in rows])

    def threshold(self, quantile: float) -> float:
        return float(np.quantile(self.held_out_distances(), quantile))


def fold_scores(references: list[FeatureReference], features: list[np.ndarray], quantile: float) -> np.ndarray:
    """Each image's feature score: the median over fold models of distance / threshold
    (above 1: outside the training distribution for most fold models)."""
    ratios = np.vstack([reference.distance(f) / reference.threshold(quantile)
                        for reference, f in zip(references, features)])
    return np.median(ratios, axis=0)
