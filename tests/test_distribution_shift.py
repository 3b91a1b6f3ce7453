"""Distribution shift: the PPCA distance is the Mahalanobis distance under its covariance
(scipy), the image-statistics distance likewise, thresholds come from the training data's
own distances; on the tiny study's bundle, an inverted or rescaled cohort is flagged and
the study's own external cohort mostly is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import mahalanobis

from spinedx.errors import InputError
from spinedx.stats import shift


def test_ppca_distance_is_the_mahalanobis_distance_under_its_covariance():
    rng = np.random.default_rng(0)
    d, n = 12, 40
    mixing = rng.normal(size=(d, d)) * np.linspace(3, 0.2, d)
    training = rng.normal(size=(n, d)) @ mixing.T + 5
    held_out = rng.normal(size=(15, d)) @ mixing.T + 5
    reference = shift.fit_feature_reference(training, held_out, components=4)
    # Independent construction: eigen-decomposition of the sample covariance (numpy.linalg.eigh).
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(training, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    kept = eigenvectors[:, :4]
    sigma2 = eigenvalues[4:].sum() / (d - 4)
    covariance = kept @ np.diag(eigenvalues[:4]) @ kept.T + sigma2 * (np.eye(d) - kept @ kept.T)
    precision = np.linalg.inv(covariance)
    new = rng.normal(size=(6, d)) * 4
    expected = [mahalanobis(x, training.mean(axis=0), precision) for x in new]
    assert reference.distance(new) == pytest.approx(expected, rel=1e-8)
    expected_null = [mahalanobis(x, training.mean(axis=0), precision) for x in held_out]
    assert reference.held_out_distances == pytest.approx(expected_null, rel=1e-8)
    assert reference.threshold(0.9) == pytest.approx(np.quantile(expected_null, 0.9), rel=1e-8)
    # Arrays round trip (what the bundle stores).
    again = shift.FeatureReference.from_arrays(reference.to_arrays("fold0_"), "fold0_")
    assert again.distance(new) == pytest.approx(reference.distance(new), rel=1e-15)


def test_fewer_images_than_dimensions_still_give_a_finite_distance():
    rng = np.random.default_rng(1)
    reference = shift.fit_feature_reference(rng.normal(size=(8, 64)), rng.normal(size=(5, 64)), components=10)
    assert reference.components.shape == (7, 64)  # capped at n - 1
    distances = reference.distance(rng.normal(size=(3, 64)))
    assert np.isfinite(distances).all() and (distances > 0).all()


def test_statistics_distance_and_threshold():
    rng = np.random.default_rng(2)
    training = rng.normal(size=(200, 3)) * [1, 10, 0.1] + [5, 50, 1]
    reference = shift.StatisticsReference(training)
    standard = (training - training.mean(0)) / training.std(0, ddof=1)
    precision = np.linalg.inv(np.cov(standard, rowvar=False) + 1e-3 * np.eye(3))
    new = np.array([[5, 50, 1], [9, 50, 1.0], [5, 90, 1.3]])
    expected = [mahalanobis((x - training.mean(0)) / training.std(0, ddof=1), np.zeros(3), precision) for x in new]
    assert reference.distance(new) == pytest.approx(expected, rel=1e-10)
    held_out = []
    for i in range(len(training)):
        others = np.delete(training, i, axis=0)
        centre, scale = others.mean(0), others.std(0, ddof=1)
        inverse = np.linalg.inv(np.cov((others - centre) / scale, rowvar=False) + 1e-3 * np.eye(3))
        held_out.append(mahalanobis((training[i] - centre) / scale, np.zeros(3), inverse))
    assert reference.threshold(0.95) == pytest.approx(np.quantile(held_out, 0.95), rel=1e-10)
    own = [mahalanobis(x, np.zeros(3), precision) for x in standard]
    assert reference.threshold(0.95) > np.quantile(own, 0.95)  # unseen images lie farther


def test_image_statistics_and_fold_scores():
    crops = np.stack([np.full((4, 4), 10, np.uint8), np.arange(16, dtype=np.uint8).reshape(4, 4)])
    images = pd.DataFrame({"width": [100, 200], "height": [50, 100], "x0": [10, 0], "x1": [60, 50],
                           "y0": [0, 0], "y1": [25, 100]})
    table = shift.image_statistics(crops, images)
    assert list(table.columns) == list(shift.IMAGE_STATISTICS)
    assert table["intensity_mean"].tolist() == [10, 7.5] and table["intensity_p50"].tolist() == [10, 7.5]
    assert table["box_width_fraction"].tolist() == [0.5, 0.25] and table["box_height_fraction"].tolist() == [0.5, 1]
    rng = np.random.default_rng(3)
    references = [shift.fit_feature_reference(rng.normal(size=(30, 5)), rng.normal(size=(10, 5)), 2) for _ in range(3)]
    features = [rng.normal(size=(4, 5)) for _ in range(3)]
    ratios = np.vstack([r.distance(f) / r.threshold(0.8) for r, f in zip(references, features)])
    assert shift.fold_scores(references, features, 0.8) == pytest.approx(np.median(ratios, axis=0))


def test_box_fractions_only_where_every_training_image_has_a_box(monkeypatch):
    """Labels from the annotation: only lesion images have a rectangle, so the reference
    leaves the box fractions out (they would describe the label and be NaN elsewhere); an
    audit computes what the reference holds, and refuses images without the box a
    box-bearing reference needs, naming them."""
    from spinedx.stages import distribution_shift as stage

    monkeypatch.setattr(stage, "load_checkpoint", lambda path: {"backbone": "resnet10t"})  # a labelme model
    crops = np.zeros((3, 4, 4), np.uint8)
    images = pd.DataFrame({"width": [100, 100, 80], "height": [50, 50, 40], "x0": [10, np.nan, 5],
                           "x1": [60, np.nan, 25], "y0": [0, np.nan, 0], "y1": [25, np.nan, 20],
                           "sequence": "T2_SAG", "json_path": ["D1/T2/a.json", "D1/T2/b.json", "D2/T2/c.json"]})
    assert not shift.every_image_has_a_box(images) and shift.every_image_has_a_box(images.iloc[[0, 2]])
    reference = stage._statistics(crops, images, {0: "model"})
    assert list(reference.columns) == [n for n in shift.IMAGE_STATISTICS if n not in shift.BOX_STATISTICS]
    assert np.isfinite(reference.to_numpy()).all()
    boxed = stage._statistics(crops[[0, 2]], images.iloc[[0, 2]], {0: "model"})
    assert list(boxed.columns) == list(shift.IMAGE_STATISTICS)
    assert boxed["box_width_fraction"].tolist() == [0.5, 0.25]
    assert list(stage._statistics(crops, images, {0: "model"}, list(reference.columns)).columns) == list(
        reference.columns)
    with pytest.raises(InputError, match=r"D1/T2/b\.json.*draw the lesion's rectangle"):
        stage._statistics(crops, images, {0: "model"}, list(shift.IMAGE_STATISTICS))


@pytest.mark.parametrize("scheme", ["kfold", "holdout"])
def test_reference_holds_out_what_each_model_did_not_train_on(scheme, monkeypatch):
    """k-fold: a fold model's held-out images are its fold's; hold-out (N-class studies): a
    repeat model's are its validation and internal-test images. Each model's PPCA is fitted
    on exactly its training images (compared with a fit on them by hand)."""
    from spinedx.stages import distribution_shift as stage

    rng = np.random.default_rng(0)
    patients = [f"P{k}" for k in range(12)]
    images = pd.DataFrame({"patient_id": np.repeat(patients, 2), "cohort": "internal",
                           "image_id": [f"I{k}" for k in range(24)]})
    if scheme == "kfold":
        splits = pd.DataFrame({"patient_id": patients, "diagnosis": "a", "label": 0, "fold": np.arange(12) % 3})
        trained = {k: splits.patient_id[splits.fold != k] for k in range(3)}
    else:
        partition = np.array(["train"] * 6 + ["validation"] * 2 + ["internal_test"] * 4)
        splits = pd.concat([pd.DataFrame({"patient_id": patients, "diagnosis": "a", "label": 0, "repeat": r,
                                          "seed": r, "partition": np.roll(partition, 4 * r)}) for r in range(3)])
        trained = {r: splits.patient_id[(splits.repeat == r) & (splits.partition == "train")] for r in range(3)}
    features = {k: rng.normal(size=(24, 5)) for k in range(3)}
    monkeypatch.setattr(stage, "_features_per_fold", lambda *args: features)
    monkeypatch.setattr(stage, "_statistics",
                        lambda crops, images, fold_paths: pd.DataFrame({"x": np.zeros(len(images))}))
    arrays = stage.build_reference({k: f"model{k}" for k in range(3)}, images, None, None, splits, None, None,
                                   {"components": 2}, 8)
    for k in range(3):
        train = images.patient_id.isin(set(trained[k])).to_numpy()
        expected = shift.fit_feature_reference(features[k][train], features[k][~train], 2)
        assert arrays[f"fold{k}_held_out"].size == int((~train).sum()) == 24 - 2 * len(trained[k])
        np.testing.assert_allclose(arrays[f"fold{k}_held_out"], expected.held_out_distances, rtol=1e-12)
        np.testing.assert_allclose(arrays[f"fold{k}_mean"], features[k][train].mean(axis=0), rtol=1e-12)


# --- Volume studies: crops of 2d / 2.5d / 3d models -------------------------------------------

def _crops_table(n: int, spacing=(2.5, 0.8, 0.8)) -> pd.DataFrame:
    """The crops-table columns the volume statistics read (source volume and lesion box)."""
    rng = np.random.default_rng(n)
    start = rng.integers(5, 10, size=(n, 3))
    stop = start + rng.integers(4, 9, size=(n, 3))
    table = {"patient_id": [f"P{i:02d}" for i in range(n)], "image_id": [f"P{i:02d}/CT" for i in range(n)],
             "sequence": "CT", "cohort": "internal"}
    for k, axis in enumerate("zyx"):
        table.update({f"shape_{axis}": rng.integers(40, 60, n), f"spacing_{axis}": np.full(n, spacing[k]),
                      f"box_{axis}0": start[:, k], f"box_{axis}1": stop[:, k]})
    return pd.DataFrame(table)


def test_crop_statistics_per_intensity_channel_and_the_volumes_size():
    """2.5d crops (2 windows x 3 slices, channel-major as the crops are stacked) against an
    explicit loop over crops and windows (numpy mean / SD / percentiles of each window's voxels)."""
    rng = np.random.default_rng(4)
    crops = rng.uniform(size=(3, 6, 5, 4)).astype(np.float32)
    table = _crops_table(3)
    statistics = shift.crop_statistics(crops, table, ["bone", "spine_soft_tissue"])
    assert list(statistics.columns) == shift.crop_statistic_names(["bone", "spine_soft_tissue"])
    assert len(statistics.columns) == 2 * 5 + 9
    for i in range(3):
        for c, window in enumerate(["bone", "spine_soft_tissue"]):
            voxels = crops[i, 3 * c:3 * c + 3].astype(np.float64).ravel()
            expected = [voxels.mean(), voxels.std(), *np.percentile(voxels, [5, 50, 95])]
            got = statistics.loc[i, [f"{window}_{s}" for s in ("mean", "sd", "p05", "p50", "p95")]].to_numpy()
            assert got == pytest.approx(expected, rel=1e-12)
        for axis in "zyx":
            assert statistics.loc[i, f"volume_{axis}"] == table.loc[i, f"shape_{axis}"]
            assert statistics.loc[i, f"lesion_{axis}_mm"] == pytest.approx(
                (table.loc[i, f"box_{axis}1"] - table.loc[i, f"box_{axis}0"]) * table.loc[i, f"spacing_{axis}"])
    with pytest.raises(InputError, match="intensity channels"):
        shift.crop_statistics(crops[:, :5], table, ["bone", "spine_soft_tissue"])


def _volume_checkpoint(name: str, input_shape, seed: int, fold: int = 0) -> tuple[dict, torch.nn.Module]:
    from spinedx.imaging.intensity import ct_window_recipe
    from spinedx.models.checkpoints import CHECKPOINT_FORMAT
    from spinedx.models.volumetric import VolumeJob

    torch.manual_seed(seed)
    job = VolumeJob.of(name)
    model = job.build(input_shape, 2).eval()
    checkpoint = {"format": CHECKPOINT_FORMAT, "backbone": name, "sequence": "CT", "fold": fold, "n_classes": 2,
                  "classes": ["osteoporotic", "malignant"], "mean": 0.5, "std": 0.25,
                  "state_dict": model.state_dict(),
                  **job.checkpoint_fields(input_shape, {"spacing": [2.0] * 3, "plane": "axial", "neighbours": 1,
                                                        "crop_mm": [24] * 3, "max_slices": 3},
                                          ct_window_recipe(["bone", "spine_soft_tissue"]))}
    return checkpoint, model


@pytest.mark.parametrize("name, input_shape", [("3d_classifier", (2, 12, 12, 12)), ("3d_resnet10", (2, 12, 12, 12)),
                                               ("2.5d_resnet10t", (6, 16, 16))])
def test_volume_models_features_are_what_their_last_linear_layer_reads(name, input_shape):
    """Penultimate features of a MONAI 3-D network (hooked) and of a 2.5d timm backbone
    (pre-logits): the classifier's linear layer applied to them gives the model's logits."""
    from spinedx.models.features import penultimate_features
    from spinedx.models.volumetric import normalise

    checkpoint, model = _volume_checkpoint(name, input_shape, seed=5)
    crops = torch.rand(5, *input_shape, generator=torch.Generator().manual_seed(6))
    features = penultimate_features(model, crops, checkpoint, batch_size=2)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        logits = model(normalise(crops, 0.5, 0.25)).numpy()
    weights, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    assert features.shape == (5, linear.in_features)
    assert features @ weights.T + bias == pytest.approx(logits, abs=1e-4)
    with pytest.raises(InputError, match="preprocess with the model's settings"):
        penultimate_features(model, crops[:, :, :-1], checkpoint, batch_size=2)


def _hu_cohort(n: int, seed: int) -> np.ndarray:
    """Smooth CT-like sub-volumes (HU): soft tissue with a brighter bony block."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    volumes = np.stack([gaussian_filter(rng.normal(60, 120, size=(12, 12, 12)), 1.0) for _ in range(n)])
    volumes[:, 3:9, 3:9, 3:9] += rng.uniform(250, 450, size=(n, 1, 1, 1))
    return volumes


def test_a_volume_cohort_with_intensities_x3_is_flagged(tmp_path):
    """The stage's reference of a 3d model (two fold models, CT windows) and a new cohort of
    the same distribution, as is and with every HU tripled before the windows: the tripled
    cohort is flagged by features and statistics, the same-distribution one mostly not."""
    from spinedx.imaging.intensity import apply_recipe, ct_window_recipe
    from spinedx.models.checkpoints import save_checkpoint
    from spinedx.models.device import Acceleration
    from spinedx.stages import distribution_shift

    recipe = ct_window_recipe(["bone", "spine_soft_tissue"])
    windowed = lambda hu: np.stack([apply_recipe(v.astype(np.float32), recipe) for v in hu])  # noqa: E731
    fold_paths = {}
    for fold in (0, 1):
        checkpoint, _ = _volume_checkpoint("3d_classifier", (2, 12, 12, 12), seed=10 + fold, fold=fold)
        save_checkpoint(checkpoint, tmp_path / f"fold{fold}.pt")
        fold_paths[fold] = str(tmp_path / f"fold{fold}.pt")
    training = _crops_table(40)
    crops = windowed(_hu_cohort(40, seed=7))
    folds = pd.DataFrame({"patient_id": training.patient_id, "fold": np.arange(40) % 2})
    device = torch.device("cpu")
    arrays = distribution_shift.build_reference(fold_paths, training, crops, torch.from_numpy(crops), folds, device,
                                                Acceleration(), {"components": 5}, 16)
    assert list(arrays["statistics_names"]) == shift.crop_statistic_names(["bone", "spine_soft_tissue"])
    reference = {**arrays, "backbone": np.array("3d_classifier"), "sequence": np.array("CT")}
    new = _crops_table(30).assign(cohort="external")
    hu = _hu_cohort(30, seed=8)
    scores = {}
    for name, cohort in (("same", windowed(hu)), ("tripled", windowed(3 * hu))):
        scores[name] = distribution_shift.score_cohort(reference, fold_paths, new, cohort, torch.from_numpy(cohort),
                                                       device, Acceleration(), 0.95, 16)
    assert scores["same"].flagged.mean() < 0.5
    assert scores["tripled"].feature_flag.mean() >= 0.9 and scores["tripled"].statistics_flag.all()
    assert scores["tripled"].feature_score.median() > 2 * scores["same"].feature_score.median()
