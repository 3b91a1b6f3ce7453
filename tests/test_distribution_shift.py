"""Distribution shift: the PPCA distance is the Mahalanobis distance under its covariance
(scipy), the image-statistics distance likewise, thresholds come from the training data's
own distances; on the tiny study's bundle, an inverted or rescaled cohort is flagged and
the study's own external cohort mostly is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import mahalanobis

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
    monkeypatch.setattr(stage, "image_statistics", lambda crops, images: pd.DataFrame({"x": np.zeros(len(images))}))
    arrays = stage.build_reference({k: f"model{k}" for k in range(3)}, images, None, None, splits, None, None,
                                   {"components": 2}, 8)
    for k in range(3):
        train = images.patient_id.isin(set(trained[k])).to_numpy()
        expected = shift.fit_feature_reference(features[k][train], features[k][~train], 2)
        assert arrays[f"fold{k}_held_out"].size == int((~train).sum()) == 24 - 2 * len(trained[k])
        np.testing.assert_allclose(arrays[f"fold{k}_held_out"], expected.held_out_distances, rtol=1e-12)
        np.testing.assert_allclose(arrays[f"fold{k}_mean"], features[k][train].mean(axis=0), rtol=1e-12)
