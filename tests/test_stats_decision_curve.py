"""Decision curves: the dcurves wrapper against the textbook net benefit
NB = TP/n - FP/n * pt/(1 - pt) (Vickers & Elkin 2006) computed by hand here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinedx.errors import InputError
from spinedx.stats import decision_curve as dc

LABELS = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0])
PROBS = np.array([0.9, 0.6, 0.2, 0.5, 0.1, 0.3, 0.2, 0.05, 0.7, 0.6])


def textbook(labels, probs, pt):
    treated = probs >= pt
    n = labels.size
    tp, fp = np.sum(treated & (labels == 1)), np.sum(treated & (labels == 0))
    return tp / n - fp / n * pt / (1 - pt)


def test_hand_made_case():
    table = dc.decision_curve(LABELS, {"cnn": PROBS}, thresholds=[0.0, 0.2, 0.5, 0.6])
    assert list(table.columns) == dc.COLUMNS
    assert list(table.model.unique()) == ["cnn", dc.TREAT_ALL, dc.TREAT_NONE]
    cnn = table[table.model == "cnn"].set_index("threshold")
    # pt = 0.5: treated 0.9, 0.6, 0.5, 0.7, 0.6 -> TP 3, FP 2: NB = 0.3 - 0.2 * 1 = 0.1
    assert cnn.net_benefit[0.5] == pytest.approx(0.1, abs=1e-15)
    # pt = 0.6: the two 0.6 count as treated (>=) -> TP 3, FP 1: NB = 0.3 - 0.1 * 1.5 = 0.15
    assert cnn.net_benefit[0.6] == pytest.approx(0.15, abs=1e-15)
    assert (cnn.tp_rate[0.6], cnn.fp_rate[0.6]) == pytest.approx((0.3, 0.1))
    # pt = 0: everyone treated, NB = prevalence
    assert cnn.net_benefit[0.0] == pytest.approx(0.4)
    treat_all = table[table.model == dc.TREAT_ALL].set_index("threshold").net_benefit
    assert treat_all[0.2] == pytest.approx(0.4 - 0.6 * 0.25) and treat_all[0.6] == pytest.approx(0.4 - 0.6 * 1.5)
    assert (table[table.model == dc.TREAT_NONE].net_benefit == 0).all()
    assert math.isnan(cnn.net_interventions_avoided[0.0])
    # (NB - NB_all) / (pt / (1 - pt)) at pt = 0.5: (0.1 - (-0.2)) / 1
    assert cnn.net_interventions_avoided[0.5] == pytest.approx(0.3)


def test_default_grid_matches_the_formula_for_several_models():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = {"fusion": np.clip(labels * 0.4 + rng.uniform(0, 0.6, 200), 0, 1),
             "image": rng.uniform(0, 1, 200), "all": np.round(rng.uniform(0, 1, 200), 2)}
    table = dc.decision_curve(labels, probs)
    assert len(table) == 5 * len(dc.DEFAULT_THRESHOLDS)
    for name, values in probs.items():  # a model may even be called "all"
        rows = table[table.model == name]
        expected = [textbook(labels, values, pt) for pt in rows.threshold]
        np.testing.assert_allclose(rows.net_benefit, expected, rtol=0, atol=1e-12)
    rows = table[table.model == dc.TREAT_ALL]
    np.testing.assert_allclose(rows.net_benefit, [textbook(labels, np.ones(200), pt) for pt in rows.threshold],
                               atol=1e-12)


@pytest.mark.parametrize("labels, probs, thresholds", [
    (LABELS, {"cnn": PROBS}, [0.5, 1.0]),
    (LABELS, {"cnn": PROBS[:-1]}, [0.5]),
    (LABELS, {"cnn": PROBS * 2}, [0.5]),
    (LABELS * 2, {"cnn": PROBS}, [0.5]),
    (LABELS, {}, [0.5]),
])
def test_bad_input_is_refused(labels, probs, thresholds):
    with pytest.raises(InputError):
        dc.decision_curve(labels, probs, thresholds)
