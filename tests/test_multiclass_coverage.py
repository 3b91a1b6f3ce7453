"""Coverage of the patient-level bootstrap intervals of spinedx.stats.multiclass.

A simulated population with known per-class sensitivity and F1: five classes with the
ISMF-Net class mix, patients sampled as a cohort (class mix random), 1-4 images each,
and a patient random effect that correlates a patient's decisions (intra-patient
correlation 1 / (alpha + 1) = 0.25). 200 repetitions of 250 patients (~625 images), each
with 200 bootstrap replicates, unstratified (the rule for cohorts): ~3 s.

Tolerances, from 4000 repetitions of this exact set-up (same code, other seeds):
coverage per quantity 0.929-0.943, pooled over the 12 quantities 0.935, standard
deviation of a 200-repetition pooled mean 0.0048 (the percentile bootstrap undercovers
slightly at ~37-57 patients per class). The test asks for

* pooled coverage in [0.91, 0.96]: 5 standard deviations either side of 0.935, so a
  correct implementation fails with probability below 1e-6 (normal tail), while
  resampling images instead of patients (measured pooled 0.877, SD 0.0068) and
  99 % instead of 95 % intervals (0.976, SD 0.0022) fail;
* every quantity's coverage >= 0.84 (168 of 200): at the lowest measured coverage 0.929
  the binomial probability of 167 or fewer is 5e-6, 7e-5 over all 12 quantities.

The test is deterministic (fixed seeds); the probabilities say how unlikely it is that
a correct implementation meets an unlucky seed.
"""

import numpy as np
import pytest

from spinedx.stats.multiclass import multiclass_tables

PREVALENCE = np.array([0.226, 0.218, 0.149, 0.182, 0.225])
PREVALENCE = PREVALENCE / PREVALENCE.sum()
# Row k: probability that an image of true class k is decided as each class.
DECISION_PROBABILITY = np.array([
    [0.85, 0.05, 0.03, 0.04, 0.03],
    [0.06, 0.80, 0.04, 0.04, 0.06],
    [0.04, 0.05, 0.70, 0.15, 0.06],
    [0.03, 0.04, 0.13, 0.75, 0.05],
    [0.05, 0.08, 0.05, 0.07, 0.75],
])
ALPHA = 3.0  # Dirichlet concentration of a patient's decision probabilities
N_CLASSES = 5


def population_values():
    """True per-class sensitivity and F1, accuracy and macro-F1 of the population.

    Image counts per patient do not depend on the class, so the expected image-level
    counts are proportional to prevalence x decision probability, and F1, accuracy and
    macro-F1 are those of the expected confusion matrix (the limits of the estimators).
    """
    expected = PREVALENCE[:, None] * DECISION_PROBABILITY
    tp = np.diag(expected)
    fp = expected.sum(axis=0) - tp
    fn = expected.sum(axis=1) - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    return np.diag(DECISION_PROBABILITY), f1, tp.sum(), f1.mean()


def simulate(rng, n_patients):
    classes = rng.choice(N_CLASSES, n_patients, p=PREVALENCE)
    sizes = rng.integers(1, 5, n_patients)
    patient_probability = np.array([rng.dirichlet(ALPHA * DECISION_PROBABILITY[k]) for k in classes])
    patients = np.repeat(np.arange(n_patients), sizes)
    cumulative = np.cumsum(patient_probability[patients], axis=1)
    decisions = np.minimum((rng.random(patients.size)[:, None] > cumulative).sum(axis=1), N_CLASSES - 1)
    return classes[patients], decisions, patients


def test_population_values_are_what_the_simulation_produces():
    """The stated truth is the simulation's: one very large sample lands on it."""
    labels, decisions, _ = simulate(np.random.default_rng(1), 100_000)
    sensitivity, f1, accuracy, _ = population_values()
    table = multiclass_tables(labels, np.arange(labels.size), [str(k) for k in range(N_CLASSES)],
                              decisions=decisions, n_boot=0, seed=0, level=0.95,
                              proportion_intervals="bootstrap", stratify="none")
    np.testing.assert_allclose(table["per_class"]["sensitivity"], sensitivity, atol=0.006)
    np.testing.assert_allclose(table["per_class"]["f1"], f1, atol=0.006)
    assert table["overall"].loc[0, "accuracy"] == pytest.approx(accuracy, abs=0.004)


def test_nominal_95_percent_intervals_cover_the_truth():
    sensitivity, f1, accuracy, macro_f1 = population_values()
    truth = np.r_[sensitivity, f1, accuracy, macro_f1]
    rng = np.random.default_rng(2026)
    repetitions = 200
    covered = np.zeros((repetitions, truth.size), dtype=bool)
    for repetition in range(repetitions):
        labels, decisions, patients = simulate(rng, 250)
        tables = multiclass_tables(labels, patients, [str(k) for k in range(N_CLASSES)],
                                   decisions=decisions, n_boot=200, seed=repetition, level=0.95,
                                   proportion_intervals="bootstrap", stratify="none")
        per_class, overall = tables["per_class"], tables["overall"].iloc[0]
        lo = np.r_[per_class["sensitivity_lo"], per_class["f1_lo"], overall["accuracy_lo"],
                   overall["macro_f1_lo"]]
        hi = np.r_[per_class["sensitivity_hi"], per_class["f1_hi"], overall["accuracy_hi"],
                   overall["macro_f1_hi"]]
        covered[repetition] = (lo <= truth) & (truth <= hi)
    coverage = covered.mean(axis=0)
    print("coverage per quantity (5 sensitivities, 5 F1, accuracy, macro-F1):",
          np.round(coverage, 3), "pooled:", round(covered.mean(), 4))
    assert 0.91 <= covered.mean() <= 0.96
    assert (coverage >= 0.84).all()
