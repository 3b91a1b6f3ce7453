"""Paired sensitivities/specificities, multiplicity corrections and the comparison table.

Pinned against scipy.stats.binomtest and statsmodels' mcnemar(exact=True) (exact test),
statsmodels' multipletests (Holm, Bonferroni), and the published worked example of
Fagerland, Lydersen & Laake (Statistical Analysis of Contingency Tables, 2017, chapter 8:
complete response before/after consolidation therapy, Cavo et al. 2012, table
[[59, 6], [16, 80]]), whose printed results the book's R package asserts
(github.com/ocbe-uio/contingencytables, tests/testthat/test-ch8.R, commit
b1fde68e35bf73ec98672e414eb3e0f582e5d7f3).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from spinedx.errors import InputError
from spinedx.stats import comparisons, delong
from spinedx.stats.mcnemar import (mcnemar_exact_p, newcombe_paired_interval, paired_accuracy,
                                   paired_proportions)
from spinedx.stats.multiplicity import adjust_pvalues


@pytest.mark.parametrize("b", [0, 1, 2, 5, 9, 17])
@pytest.mark.parametrize("c", [0, 1, 3, 6, 9, 25])
def test_exact_mcnemar_matches_scipy_and_statsmodels(b, c):
    p = mcnemar_exact_p(b, c)
    assert p == pytest.approx(mcnemar([[7, b], [c, 4]], exact=True).pvalue, rel=1e-12)
    if b + c:
        assert p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    else:
        assert p == 1.0


def test_published_example_cavo_2012():
    # "The McNemar exact conditional test: P = 0.052479"
    assert round(mcnemar_exact_p(6, 16), 6) == 0.052479
    # "Newcombe square-and-add CI: estimate = -0.0621 (95% CI -0.1186 to -0.0046)"
    lo, hi = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)
    assert round((6 - 16) / 161, 4) == -0.0621
    # "... 0.0000 (95% CI -0.5734 to 0.5734)" for [[1, 0], [0, 1]] (phi from an empty margin-free table)
    lo, hi = newcombe_paired_interval(1, 0, 0, 1)
    assert (round(lo, 4), round(hi, 4)) == (-0.5734, 0.5734)


def test_newcombe_interval_mirrors_when_the_tests_swap():
    lo, hi = newcombe_paired_interval(30, 9, 2, 4, level=0.9)
    swapped_lo, swapped_hi = newcombe_paired_interval(30, 2, 9, 4, level=0.9)
    assert (swapped_lo, swapped_hi) == pytest.approx((-hi, -lo), rel=1e-12)
    assert lo < 7 / 45 < hi
    assert -1 <= newcombe_paired_interval(0, 12, 0, 0)[0] and newcombe_paired_interval(0, 12, 0, 0)[1] <= 1
    assert all(math.isnan(x) for x in newcombe_paired_interval(0, 0, 0, 0))


def test_paired_accuracy_splits_positives_and_negatives():
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0])
    calls_a = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0])
    calls_b = np.array([1, 0, 0, 0, 1, 0, 1, 1, 1])
    result = paired_accuracy(labels, calls_a, calls_b)
    sensitivity, specificity = result["sensitivity"], result["specificity"]
    # Positives: both right on cases 0, 4; only A right on 1, 2; both wrong on 3.
    assert (sensitivity["a"], sensitivity["b"], sensitivity["c"], sensitivity["d"]) == (2, 2, 0, 1)
    assert sensitivity["estimate_a"] == 4 / 5 and sensitivity["estimate_b"] == 2 / 5
    assert sensitivity["p"] == mcnemar_exact_p(2, 0) == 0.5
    # Negatives: both right on 5; only A right on 6, 8; both wrong on 7.
    assert (specificity["a"], specificity["b"], specificity["c"], specificity["d"]) == (1, 2, 0, 1)
    assert specificity["difference"] == pytest.approx(3 / 4 - 1 / 4)
    with pytest.raises(InputError):
        paired_accuracy(labels, calls_a, calls_b[:-1])
    with pytest.raises(InputError):
        paired_accuracy(labels, calls_a * 2, calls_b)


def test_no_cases_gives_nan_not_an_error():
    result = paired_proportions(np.array([], bool), np.array([], bool))
    assert result["n"] == 0 and math.isnan(result["estimate_a"]) and math.isnan(result["p"])


@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_adjustments_match_statsmodels(method):
    rng = np.random.default_rng(3)
    p = np.r_[rng.uniform(0, 0.2, 9), 0.01, 0.01, 0.9, 1.0, 0.0]  # ties, 0 and 1 included
    expected = multipletests(p, method=method)[1]
    np.testing.assert_allclose(adjust_pvalues(p, method), expected, rtol=1e-15, atol=0)


def test_adjustment_skips_untestable_rows():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = adjust_pvalues(p, "holm")
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])
    with pytest.raises(InputError):
        adjust_pvalues([0.1, 1.2])
    with pytest.raises(InputError):
        adjust_pvalues([0.1], method="fdr")


@pytest.fixture
def three_models():
    rng = np.random.default_rng(11)
    labels = np.r_[np.ones(40, int), np.zeros(50, int)]
    latent = labels * 1.3 + rng.normal(size=labels.size)

    def model(noise):
        return 1 / (1 + np.exp(-(latent + rng.normal(scale=noise, size=labels.size))))

    return labels, {"fusion": model(0.3), "image": model(0.8), "clinical": model(1.5)}


def test_comparison_table_rows_match_their_tests(three_models):
    labels, scores = three_models
    table = comparisons.paired_comparison_table(labels, scores, threshold=0.6)
    assert list(table.columns) == comparisons.COLUMNS
    assert list(table.comparison.unique()) == ["fusion vs image", "fusion vs clinical", "image vs clinical"]
    assert len(table) == 9
    auc = table[(table.comparison == "fusion vs clinical") & (table.metric == "auc")].iloc[0]
    expected = delong.paired_delong_test(labels, scores["fusion"], scores["clinical"])
    assert (auc.estimate_a, auc.difference, auc.ci_lo, auc.p) == pytest.approx(
        (expected["auc_a"], expected["difference"], expected["ci_lo"], expected["p"]))
    sensitivity = table[(table.comparison == "image vs clinical") & (table.metric == "sensitivity")].iloc[0]
    calls_image, calls_clinical = scores["image"] > 0.6, scores["clinical"] > 0.6
    positive = labels == 1
    b = int(np.sum(calls_image[positive] & ~calls_clinical[positive]))
    c = int(np.sum(~calls_image[positive] & calls_clinical[positive]))
    assert (sensitivity.only_a_correct, sensitivity.only_b_correct, sensitivity.n) == (b, c, 40)
    assert sensitivity.p == pytest.approx(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
    assert sensitivity.estimate_a == pytest.approx(calls_image[positive].mean())
    np.testing.assert_allclose(table.p_adjusted, multipletests(table.p, method="holm")[1])


def test_comparison_table_families_thresholds_and_calls(three_models):
    labels, scores = three_models
    table = comparisons.paired_comparison_table(
        labels, scores, [("fusion", "image"), ("image", "clinical")], family="metric",
        adjust="bonferroni", threshold={"fusion": 0.5, "image": 0.4, "clinical": 0.7},
        calls={"clinical": np.ones(labels.size, int)})
    for metric, rows in table.groupby("metric"):
        np.testing.assert_allclose(rows.p_adjusted, np.minimum(1, rows.p * 2))
    specificity = table[(table.comparison == "image vs clinical") & (table.metric == "specificity")].iloc[0]
    assert specificity.estimate_b == 0.0  # the clinical "model" calls every case positive
    assert specificity.estimate_a == pytest.approx(np.mean(scores["image"][labels == 0] <= 0.4))


def test_comparison_table_without_a_class_gives_nan_auc():
    labels = np.ones(6, int)
    table = comparisons.paired_comparison_table(labels, {"a": np.linspace(0.1, 0.9, 6),
                                                         "b": np.linspace(0.9, 0.1, 6)})
    auc = table[table.metric == "auc"].iloc[0]
    assert math.isnan(auc.difference) and math.isnan(auc.p) and math.isnan(auc.p_adjusted)
    specificity = table[table.metric == "specificity"].iloc[0]
    assert specificity.n == 0 and math.isnan(specificity.p)
    assert not math.isnan(table[table.metric == "sensitivity"].iloc[0].p)


def test_comparison_table_refuses_unknown_models():
    with pytest.raises(InputError, match="unknown"):
        comparisons.paired_comparison_table([0, 1], {"a": [0.1, 0.9]}, [("a", "b")])
    with pytest.raises(InputError, match="shape"):
        comparisons.paired_comparison_table([0, 1], {"a": [0.1, 0.9, 0.3]})
    assert pd.api.types.is_float_dtype(
        comparisons.paired_comparison_table([0, 1, 0], {"a": [0.1, 0.9, 0.2], "b": [0.3, 0.2, 0.1]}).p)


# --- N classes -------------------------------------------------------------------------

CLASSES = ["schwannoma", "meningioma", "astrocytoma", "ependymoma", "metastasis"]


@pytest.fixture
def three_multiclass_models():
    """Five classes, 60 cases (one class rare), three models of different skill; one model
    has exact ties in its probabilities (the argmax keeps the earlier class)."""
    rng = np.random.default_rng(5)
    labels = rng.choice(5, size=60, p=[0.3, 0.25, 0.2, 0.2, 0.05])

    def model(skill):
        logits = rng.normal(size=(labels.size, 5))
        logits[np.arange(labels.size), labels] += skill
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    tied = np.round(model(1.0), 1)
    tied = tied / tied.sum(axis=1, keepdims=True)
    return labels, {"a": model(2.0), "b": model(1.2), "tied": tied}


def test_multiclass_comparison_rows_match_sklearn_statsmodels_and_an_explicit_delong(three_multiclass_models):
    from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

    labels, probs = three_multiclass_models
    table = comparisons.multiclass_paired_comparison_table(labels, probs, CLASSES)
    assert list(table.columns) == comparisons.MULTICLASS_COLUMNS
    assert list(table.comparison.unique()) == ["a vs b", "a vs tied", "b vs tied"]
    assert len(table) == 3 * (1 + 2 * len(CLASSES))
    for row in table.itertuples():
        a, b = probs[row.model_a], probs[row.model_b]
        decided_a, decided_b = np.argmax(a, axis=1), np.argmax(b, axis=1)  # numpy: the first maximum
        if row.metric == "accuracy":
            assert getattr(row, "_5") == "all"
            keep = np.ones(labels.size, bool)
            correct_a, correct_b = decided_a == labels, decided_b == labels
            assert row.estimate_a == pytest.approx(accuracy_score(labels, decided_a), abs=1e-15)
            assert row.estimate_b == pytest.approx(accuracy_score(labels, decided_b), abs=1e-15)
        else:
            index = CLASSES.index(getattr(row, "_5"))
            keep = labels == index
        if row.metric == "auc":
            outcome = (labels == index).astype(int)
            assert row.estimate_a == pytest.approx(roc_auc_score(outcome, a[:, index]), abs=1e-12)
            assert row.estimate_b == pytest.approx(roc_auc_score(outcome, b[:, index]), abs=1e-12)
            psi = {}
            for name, score in (("a", a[:, index]), ("b", b[:, index])):  # DeLong by its pair matrix
                pos, neg = score[outcome == 1], score[outcome == 0]
                matrix = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
                psi[name] = matrix.mean(axis=1), matrix.mean(axis=0)
            variance = (np.var(psi["a"][0] - psi["b"][0], ddof=1) / outcome.sum()
                        + np.var(psi["a"][1] - psi["b"][1], ddof=1) / (outcome.size - outcome.sum()))
            z = (row.estimate_a - row.estimate_b) / math.sqrt(variance)
            assert row.statistic == pytest.approx(z, rel=1e-9)
            assert row.p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
            assert row.n == labels.size
            continue
        if row.metric == "sensitivity":
            correct_a, correct_b = decided_a[keep] == index, decided_b[keep] == index
            assert row.estimate_a == pytest.approx(
                recall_score(labels, decided_a, labels=[index], average=None)[0], abs=1e-15)
        only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
        both = int((correct_a & correct_b).sum())
        assert (row.n, row.only_a_correct, row.only_b_correct) == (int(keep.sum()), only_a, only_b)
        expected = mcnemar([[both, only_a], [only_b, int(keep.sum()) - both - only_a - only_b]], exact=True).pvalue
        assert row.p == pytest.approx(expected, rel=1e-12)
        if only_a + only_b:
            assert row.p == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-12)
        lo, hi = newcombe_paired_interval(both, only_a, only_b, int(keep.sum()) - both - only_a - only_b)
        assert (row.difference, row.ci_lo, row.ci_hi) == pytest.approx(((only_a - only_b) / keep.sum(), lo, hi))
    np.testing.assert_allclose(table.p_adjusted, multipletests(table.p, method="holm")[1], rtol=1e-12)
    by_metric = comparisons.multiclass_paired_comparison_table(labels, probs, CLASSES, family="metric")
    for _, rows in by_metric.groupby("metric"):
        np.testing.assert_allclose(rows.p_adjusted, multipletests(rows.p, method="holm")[1], rtol=1e-12)


def test_multiclass_argmax_ties_keep_the_earlier_class_and_absent_classes_give_nan():
    labels = np.array([0, 1, 0, 1])
    tied = np.array([[0.4, 0.4, 0.2, 0.0]] * 4)  # decides class 0 for every case
    second = np.array([[0.2, 0.5, 0.3, 0.0]] * 4)  # decides class 1 for every case
    table = comparisons.multiclass_paired_comparison_table(labels, {"tied": tied, "second": second},
                                                           ["c0", "c1", "c2", "c3"])
    accuracy = table[table.metric == "accuracy"].iloc[0]
    assert (accuracy.estimate_a, accuracy.estimate_b, accuracy.only_a_correct, accuracy.only_b_correct) == (
        0.5, 0.5, 2, 2)
    sensitivity = table[table.metric == "sensitivity"].set_index("class")
    assert sensitivity.loc["c0", "estimate_a"] == 1.0 and sensitivity.loc["c0", "estimate_b"] == 0.0
    absent = table[table["class"] == "c2"]
    assert absent.p.isna().all() and absent.p_adjusted.isna().all()


def test_multiclass_comparison_table_refuses_bad_input():
    probs = {"a": np.full((3, 3), 1 / 3), "b": np.full((3, 3), 1 / 3)}
    with pytest.raises(InputError, match="class indices"):
        comparisons.multiclass_paired_comparison_table([0, 1, 3], probs, ["x", "y", "z"])
    with pytest.raises(InputError, match="shape"):
        comparisons.multiclass_paired_comparison_table([0, 1, 2], {**probs, "c": np.ones((3, 2))}, ["x", "y", "z"])
    with pytest.raises(InputError, match="unknown"):
        comparisons.multiclass_paired_comparison_table([0, 1, 2], probs, ["x", "y", "z"], [("a", "c")])
