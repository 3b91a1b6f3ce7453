"""Calibration statistics pinned against independent implementations: statsmodels GLM
(intercept with logit offset, slope, their standard errors, frequency weights),
scikit-learn (brier_score_loss, calibration_curve), statsmodels' Wilson interval; the
bootstrap by its defining properties (patients, not images, are resampled)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from statsmodels.stats.proportion import proportion_confint

from spinedx.errors import InputError
from spinedx.stats import calibration

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="stats_calibration")


@pytest.fixture(scope="module")
def miscalibrated():
    """300 cases whose predictions are too extreme (true slope 1/1.6) and too low."""
    rng = np.random.default_rng(0)
    true = rng.uniform(0.05, 0.95, 300)
    labels = (rng.uniform(size=true.size) < true).astype(int)
    logit = np.log(true / (1 - true))
    probs = 1 / (1 + np.exp(-(1.6 * logit - 0.4)))
    return labels, probs


def glm(labels, design, offset=None, weights=None):
    model = sm.GLM(labels, design, family=sm.families.Binomial(), offset=offset, freq_weights=weights)
    return model.fit(tol=1e-13)


def test_intercept_and_slope_match_statsmodels_glm(miscalibrated):
    labels, probs = miscalibrated
    logit = np.log(probs / (1 - probs))
    in_the_large = glm(labels, np.ones((labels.size, 1)), offset=logit)
    slope_model = glm(labels, sm.add_constant(logit))
    intercept = calibration.calibration_intercept(labels, probs)
    slope = calibration.calibration_slope(labels, probs)
    assert intercept["intercept"] == pytest.approx(in_the_large.params[0], rel=1e-9)
    assert intercept["intercept_se"] == pytest.approx(in_the_large.bse[0], rel=1e-7)
    assert slope["slope"] == pytest.approx(slope_model.params[1], rel=1e-9)
    assert slope["slope_model_intercept"] == pytest.approx(slope_model.params[0], rel=1e-9)
    assert slope["slope_se"] == pytest.approx(slope_model.bse[1], rel=1e-7)
    assert slope["slope"] < 1 and intercept["intercept"] > 0  # too extreme, too low


@pytest.mark.parametrize("prevalence, spread, shift", [(0.9, 1.0, -6.0), (0.03, 1.0, 6.0),
                                                       (0.97, 3.0, -9.0), (0.5, 8.0, 0.0)])
def test_far_off_predictions_still_match_statsmodels(prevalence, spread, shift):
    """Predictions far from the truth (alpha of 8 to 15, logits clipped at +-18.4)."""
    rng = np.random.default_rng(int(prevalence * 100))
    labels = (rng.uniform(size=300) < prevalence).astype(int)
    logit = rng.normal(size=300) * spread + shift + 0.5 * labels
    probs = 1 / (1 + np.exp(-logit))
    x = calibration._logit(probs)
    assert calibration.calibration_intercept(labels, probs)["intercept"] == pytest.approx(
        glm(labels, np.ones((300, 1)), offset=x).params[0], rel=1e-8)
    assert calibration.calibration_slope(labels, probs)["slope"] == pytest.approx(
        glm(labels, sm.add_constant(x)).params[1], rel=1e-8)


def test_frequency_weights_match_statsmodels(miscalibrated):
    """A bootstrap replicate is a weighted fit; check the weighted fits themselves."""
    labels, probs = miscalibrated
    logit = calibration._logit(probs)
    weights = np.random.default_rng(1).multinomial(labels.size, np.full(labels.size, 1 / labels.size), size=3).astype(float)
    alpha, _ = calibration._fit_intercept(labels.astype(float), logit, weights)
    _, beta, _ = calibration._fit_slope(labels.astype(float), logit, weights)
    for row in range(3):
        keep = weights[row] > 0
        expected_alpha = glm(labels[keep], np.ones((keep.sum(), 1)), offset=logit[keep], weights=weights[row, keep]).params[0]
        expected_beta = glm(labels[keep], sm.add_constant(logit[keep]), weights=weights[row, keep]).params[1]
        assert alpha[row] == pytest.approx(expected_alpha, rel=1e-9)
        assert beta[row] == pytest.approx(expected_beta, rel=1e-9)


def test_brier_scores_match_scikit_learn(miscalibrated):
    labels, probs = miscalibrated
    brier = calibration.brier_score(labels, probs)
    assert brier == pytest.approx(brier_score_loss(labels, probs), rel=1e-14)
    prevalence = labels.mean()
    assert calibration.scaled_brier_score(labels, probs) == pytest.approx(
        1 - brier / brier_score_loss(labels, np.full(labels.size, prevalence)), rel=1e-12)
    assert math.isnan(calibration.scaled_brier_score([1, 1], [0.2, 0.9]))


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_reliability_curve_matches_scikit_learn(miscalibrated, strategy):
    labels, probs = miscalibrated
    probs = np.round(probs, 2)  # ties at bin edges
    table = calibration.reliability_curve(labels, probs, n_bins=8, strategy=strategy, level=0.9)
    observed, predicted = calibration_curve(labels, probs, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(table.observed, observed, rtol=1e-14)
    np.testing.assert_allclose(table.mean_predicted, predicted, rtol=1e-14)
    assert table.n.sum() == labels.size
    lo, hi = proportion_confint(table.n_positive, table.n, alpha=0.1, method="wilson")
    np.testing.assert_allclose(table.observed_lo, lo, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table.observed_hi, hi, rtol=1e-12, atol=1e-15)


def test_smoothed_curve_follows_calibration():
    rng = np.random.default_rng(2)
    probs = rng.uniform(0.02, 0.98, 3000)
    labels = (rng.uniform(size=probs.size) < probs).astype(int)
    grid = np.linspace(0.1, 0.9, 9)
    calibrated = calibration.smoothed_calibration(labels, probs, grid=grid)
    assert np.max(np.abs(calibrated.observed - grid)) < 0.05
    # Predictions pushed towards the extremes: the curve is flatter than the diagonal.
    logit = np.log(probs / (1 - probs))
    extreme = 1 / (1 + np.exp(-2.5 * logit))
    curve = calibration.smoothed_calibration(labels, extreme)
    assert list(curve.columns) == ["predicted", "observed"] and len(curve) == labels.size
    low, high = curve.observed.iloc[50], curve.observed.iloc[-50]
    assert low > curve.predicted.iloc[50] and high < curve.predicted.iloc[-50]


def test_bootstrap_resamples_patients_not_images(miscalibrated):
    labels, probs = miscalibrated
    one_each = calibration.calibration_summary(labels, probs, n_boot=300, seed=4)
    # Every patient contributes two identical images: the patient bootstrap draws the same
    # patients (same seed, same number of patients), so every interval is unchanged; an
    # image-level bootstrap would narrow them.
    patients = np.repeat(np.arange(labels.size), 2)
    doubled = calibration.calibration_summary(np.repeat(labels, 2), np.repeat(probs, 2),
                                              clusters=patients, n_boot=300, seed=4)
    for key in ("brier", "scaled_brier", "intercept", "slope"):
        assert doubled[key] == pytest.approx(one_each[key], rel=1e-9)
        assert (doubled[f"{key}_lo"], doubled[f"{key}_hi"]) == pytest.approx(
            (one_each[f"{key}_lo"], one_each[f"{key}_hi"]), rel=1e-9)
    naive = calibration.calibration_summary(np.repeat(labels, 2), np.repeat(probs, 2), n_boot=300, seed=4)
    assert naive["slope_hi"] - naive["slope_lo"] < 0.85 * (one_each["slope_hi"] - one_each["slope_lo"])


def test_bootstrap_agrees_with_wald_and_is_reproducible(miscalibrated):
    labels, probs = miscalibrated
    boot = calibration.calibration_summary(labels, probs, n_boot=1000, seed=5)
    again = calibration.calibration_summary(labels, probs, n_boot=1000, seed=5)
    assert boot == again and boot["n_boot_valid"] == 1000
    wald = calibration.calibration_summary(labels, probs, n_boot=0)
    assert wald["interval"] == "wald"
    for key in ("intercept", "slope", "brier"):
        width_boot = boot[f"{key}_hi"] - boot[f"{key}_lo"]
        width_wald = wald[f"{key}_hi"] - wald[f"{key}_lo"]
        assert width_boot == pytest.approx(width_wald, rel=0.2)
        assert boot[f"{key}_lo"] < boot[key] < boot[f"{key}_hi"]
    assert wald["slope_lo"] == pytest.approx(wald["slope"] - 1.959963984540054 * wald["slope_se"])


def test_separated_data_give_nan_slopes_not_huge_ones():
    labels, probs = [1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]
    summary = calibration.calibration_summary(labels, probs, n_boot=100, seed=0)
    assert math.isnan(summary["slope"]) and math.isnan(summary["slope_lo"])
    assert summary["n_boot_valid"] == 0
    assert summary["intercept"] == pytest.approx(0.0, abs=1e-12)  # symmetric predictions
    assert math.isnan(calibration.calibration_intercept([1, 1], [0.3, 0.6])["intercept"])


def test_probabilities_of_exactly_zero_and_one_are_clipped():
    labels, probs = [1, 0, 1, 0, 1], [1.0, 0.0, 0.6, 0.7, 0.2]
    slope = calibration.calibration_slope(labels, probs)
    x = np.log(np.clip(probs, 1e-8, 1 - 1e-8) / (1 - np.clip(probs, 1e-8, 1 - 1e-8)))
    assert slope["slope"] == pytest.approx(glm(np.array(labels), sm.add_constant(x)).params[1], rel=1e-8)


@pytest.mark.parametrize("labels, probs", [([1, 0], [0.2, 1.3]), ([1, 2], [0.2, 0.3]),
                                           ([1, 0], [0.2, np.nan]), ([1, 0, 1], [0.2, 0.3])])
def test_bad_input_is_refused(labels, probs):
    with pytest.raises(InputError):
        calibration.brier_score(labels, probs)
