"""DeLong AUC (co)variances and tests, pinned three ways:

* a brute-force O(m n) structural-component computation written here with explicit pair
  loops (no ranks), on data with many ties;
* scikit-learn's ``roc_auc_score`` for the AUCs and a hand-worked 4-case example;
* pROC's own regression values (pROC repository, tests/testthat/test-var.R, test-cov.R,
  test-ci.auc.R and test-roc.test.R at commit ee2877e858bcd2757c05ce797ea64ade2c05885b) on pROC's aSAH data
  (Turck et al. 2010), read from the installed pROC R package (Debian ``r-cran-proc``, which
  envs/setup.sh installs where it can) or from ``../shared/reference/aSAH.csv``, and skipped
  when neither is there (third-party data are not kept in this repository).
"""

from __future__ import annotations

import io
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import SHARED
from spinedx.errors import InputError
from spinedx.stats import delong

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="stats_delong")

ASAH = SHARED / "reference" / "aSAH.csv"


def brute_force(labels, scores):
    """AUCs and DeLong covariance from the pair definition: psi over every (positive,
    negative) pair, placement means, then sample covariances written out as sums."""
    labels = np.asarray(labels)
    scores = np.atleast_2d(scores)
    positives = [i for i in range(labels.size) if labels[i] == 1]
    negatives = [j for j in range(labels.size) if labels[j] == 0]
    m, n, k = len(positives), len(negatives), scores.shape[0]
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for reading in range(k):
        for a, i in enumerate(positives):
            for b, j in enumerate(negatives):
                x, y = scores[reading, i], scores[reading, j]
                psi = 1.0 if x > y else 0.5 if x == y else 0.0
                v10[reading, a] += psi / n
                v01[reading, b] += psi / m
    auc = v10.mean(axis=1)
    covariance = np.zeros((k, k))
    for r in range(k):
        for s in range(k):
            s10 = sum((v10[r, a] - auc[r]) * (v10[s, a] - auc[s]) for a in range(m)) / (m - 1)
            s01 = sum((v01[r, b] - auc[r]) * (v01[s, b] - auc[s]) for b in range(n)) / (n - 1)
            covariance[r, s] = s10 / m + s01 / n
    return auc, covariance


@pytest.fixture
def tied_readings():
    """Three correlated readings of 40 cases on a coarse scale (many ties)."""
    rng = np.random.default_rng(7)
    labels = np.r_[np.ones(17, int), np.zeros(23, int)]
    rng.shuffle(labels)
    latent = labels * 1.2 + rng.normal(size=labels.size)
    scores = np.vstack([np.round(latent + rng.normal(scale=s, size=labels.size))
                        for s in (0.3, 0.7, 1.5)])
    return labels, scores


def test_matches_brute_force_structural_components(tied_readings):
    labels, scores = tied_readings
    auc, covariance = delong.delong_covariance(labels, scores)
    expected_auc, expected_covariance = brute_force(labels, scores)
    np.testing.assert_allclose(auc, expected_auc, rtol=0, atol=1e-14)
    np.testing.assert_allclose(covariance, expected_covariance, rtol=1e-12, atol=1e-16)
    for reading in range(scores.shape[0]):
        assert auc[reading] == pytest.approx(roc_auc_score(labels, scores[reading]), abs=1e-14)


def test_hand_worked_example():
    # Positives 0.9, 0.4; negatives 0.5, 0.1: V10 = (1, 1/2), V01 = (1/2, 1), AUC = 3/4,
    # S10 = S01 = 1/8, Var = 1/8 / 2 + 1/8 / 2 = 1/8.
    components = delong.structural_components([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    np.testing.assert_array_equal(components.v10, [[1.0, 0.5]])
    np.testing.assert_array_equal(components.v01, [[0.5, 1.0]])
    assert components.auc[0] == 0.75
    assert components.covariance()[0, 0] == pytest.approx(0.125, abs=1e-15)


def test_all_tied_scores_give_auc_one_half():
    components = delong.structural_components([1, 0, 1, 0], [3, 3, 3, 3])
    assert components.auc[0] == 0.5
    assert components.covariance()[0, 0] == 0


def test_paired_test_agrees_with_its_formula_and_is_antisymmetric(tied_readings):
    labels, scores = tied_readings
    result = delong.paired_delong_test(labels, scores[0], scores[2], level=0.9)
    auc, covariance = brute_force(labels, scores[[0, 2]])
    se = math.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    z = (auc[0] - auc[1]) / se
    assert result["z"] == pytest.approx(z, rel=1e-12)
    assert result["p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-12)
    assert result["ci_lo"] == pytest.approx(auc[0] - auc[1] - 1.6448536269514722 * se, rel=1e-12)
    swapped = delong.paired_delong_test(labels, scores[2], scores[0], level=0.9)
    assert swapped["z"] == pytest.approx(-result["z"]) and swapped["p"] == pytest.approx(result["p"])
    same = delong.paired_delong_test(labels, scores[1], scores[1])
    assert (same["difference"], same["z"], same["p"]) == (0.0, 0.0, 1.0)


def test_unpaired_normal_test_adds_independent_variances(tied_readings):
    labels, scores = tied_readings
    other_labels, other_scores = labels[:30], scores[1, :30]
    result = delong.unpaired_delong_test(labels, scores[0], other_labels, other_scores)
    auc_a, var_a = brute_force(labels, scores[0])
    auc_b, var_b = brute_force(other_labels, other_scores)
    z = (auc_a[0] - auc_b[0]) / math.sqrt(var_a[0, 0] + var_b[0, 0])
    assert result["statistic"] == pytest.approx(z, rel=1e-12)
    assert result["p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-12)


def test_contrast_test_of_two_readings_is_the_squared_paired_z(tied_readings):
    labels, scores = tied_readings
    paired = delong.paired_delong_test(labels, scores[0], scores[1])
    global_test = delong.delong_contrast_test(labels, scores[:2])
    assert global_test["df"] == 1
    assert global_test["chi2"] == pytest.approx(paired["z"] ** 2, rel=1e-12)
    assert global_test["p"] == pytest.approx(paired["p"], rel=1e-10)
    assert delong.delong_contrast_test(labels, scores)["df"] == 2


def test_one_case_of_a_class_gives_an_auc_but_no_variance():
    labels, scores = [1, 0, 0, 0], [[0.9, 0.1, 0.5, 0.95], [0.2, 0.1, 0.3, 0.4]]
    auc, covariance = delong.delong_covariance(labels, scores)
    np.testing.assert_array_equal(auc, [2 / 3, 1 / 3])
    assert np.isnan(covariance).all()
    paired = delong.paired_delong_test(labels, scores[0], scores[1])
    assert paired["difference"] == pytest.approx(1 / 3)
    assert all(math.isnan(paired[key]) for key in ("se", "z", "p", "ci_lo", "ci_hi"))
    interval = delong.auc_confidence_interval(labels, scores[0])
    assert math.isnan(interval["auc_lo"]) and math.isnan(interval["auc_hi"])
    assert math.isnan(delong.delong_contrast_test(labels, scores)["p"])


@pytest.mark.parametrize("labels, scores", [
    ([1, 1, 1], [0.2, 0.3, 0.4]),          # one class
    ([1, 0, 2], [0.2, 0.3, 0.4]),          # not 0/1
    ([1, 0, 1], [0.2, np.nan, 0.4]),       # NaN score
    ([1, 0, 1], [0.2, 0.3]),               # length mismatch
])
def test_bad_input_is_refused(labels, scores):
    with pytest.raises(InputError):
        delong.delong_covariance(labels, scores)


ASAH_FROM_PROC = ('data(aSAH, package = "pROC"); '
                  'write.csv(aSAH[c("outcome", "wfns", "s100b", "ndka")], stdout(), row.names = FALSE)')


def read_asah() -> pd.DataFrame | None:
    """pROC's aSAH data (113 patients): from the installed R package, else the CSV in shared/."""
    try:
        done = subprocess.run(["Rscript", "-e", ASAH_FROM_PROC], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is not None and done.returncode == 0:
        return pd.read_csv(io.StringIO(done.stdout))
    return pd.read_csv(ASAH) if ASAH.exists() else None


@pytest.fixture(scope="module")
def asah():
    data = read_asah()
    if data is None:
        pytest.skip("pROC's aSAH data absent: install R's pROC (Debian: apt-get install r-cran-proc; envs/setup.sh "
                    f"does it as root) or put it in {ASAH} as CSV (outcome, wfns, s100b, ndka)")
    assert len(data) == 113 and set(data["outcome"]) == {"Good", "Poor"}, data.describe(include="all")
    labels = (data["outcome"] == "Poor").to_numpy().astype(int)
    return labels, {name: data[name].astype(float).to_numpy() for name in ("wfns", "ndka", "s100b")}


def test_matches_pROC_on_asah(asah):
    """pROC 1.18.x: var(roc(outcome, x)) and cov(roc1, roc2) (DeLong), roc.test (paired
    DeLong, with its interval of the difference) and roc.test(paired = FALSE)."""
    labels, x = asah
    assert delong.delong_covariance(labels, x["wfns"])[1][0, 0] == pytest.approx(0.00146991470882363, rel=1e-12)
    assert delong.delong_covariance(labels, x["ndka"])[1][0, 0] == pytest.approx(0.0031908105493913, rel=1e-12)
    assert delong.delong_covariance(labels, x["s100b"])[1][0, 0] == pytest.approx(0.00266868245717244, rel=1e-12)
    _, covariance = delong.delong_covariance(labels, np.vstack([x["wfns"], x["ndka"], x["s100b"]]))
    assert covariance[0, 1] == pytest.approx(-0.000532967856762438, rel=1e-12)
    assert covariance[1, 2] == pytest.approx(-0.000756164938056579, rel=1e-12)
    assert covariance[2, 0] == pytest.approx(0.00119615567376754, rel=1e-12)

    for a, b, z, p, lo, hi in [
        ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    ]:
        result = delong.paired_delong_test(labels, x[a], x[b])
        assert result["z"] == pytest.approx(z, rel=1e-10)
        assert result["p"] == pytest.approx(p, rel=1e-10)
        assert (result["ci_lo"], result["ci_hi"]) == pytest.approx((lo, hi), rel=1e-10)

    for a, b, statistic, p in [("wfns", "s100b", 1.43490640926908, 0.152825378808796),
                               ("wfns", "ndka", 3.10125096778969, 0.00220950791756457),
                               ("ndka", "s100b", -1.55995743389685, 0.120192832430845)]:
        result = delong.unpaired_delong_test(labels, x[a], labels, x[b], distribution="t")
        assert result["statistic"] == pytest.approx(statistic, rel=1e-10)
        assert result["p"] == pytest.approx(p, rel=1e-10)
    # test-ci.auc.R: ci.auc(r.ndka) (DeLong) = (0.501244999271703, 0.611957994579946, 0.722670989888189).
    interval = delong.auc_confidence_interval(labels, x["ndka"])
    assert (interval["auc_lo"], interval["auc"], interval["auc_hi"]) == pytest.approx(
        (0.501244999271703, 0.611957994579946, 0.722670989888189), rel=1e-12)
