"""Obuchowski-Rockette MRMC analysis with Hillis' ddf.

Pinned by

* the published VanDyke results (Van Dyke et al. 1993, Radiology 188:1-6; 5 readers x
  114 cases (45 diseased) x 2 modalities), to every printed digit:
  - OR-DBM MRMC 2.51 (Schartz, Hillis, Pesce & Berbaum, University of Iowa), output
    "VanDyke trap area jackknife anova.txt" (trapezoidal AUC, jackknife covariances), as
    shipped in RJafroc (github.com/dpc10ster/RJafroc, inst/Iowa/VanDyke.txt at commit
    44b0e39ebb0adda0d28d675850cbcf97d4d85d3f): all three analyses;
  - MRMCaov (Smith, Hillis & Pesce; github.com/brian-j-smith/MRMCaov, JSS manuscript
    docs/jss/MRMCaov.tex at commit f1c63dc4383e23ed8f1e64adee4476e768cd9287), the
    random-readers/random-cases analysis with DeLong covariances;
  the data are third-party and not kept here: the test reads
  ``../shared/reference/VanDyke.csv`` (columns reader, case, modality, truth, rating)
  and is skipped when it is absent;
* always: Hillis et al. (2005, Stat Med 24:1579-1607): with jackknife covariances the OR
  F, ddf and p equal those of the DBM ANOVA of jackknife pseudovalues, computed here
  independently (leave-one-out AUCs by scikit-learn, a three-way ANOVA written out) on
  simulated studies, with ties and with three modalities;
* a null simulation (equal modalities): the random-readers test rejects near 5 %.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from conftest import SHARED
from spinedx.errors import InputError
from spinedx.stats import mrmc

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="stats_mrmc")

VANDYKE = SHARED / "reference" / "VanDyke.csv"


def printed(value: float, text: str) -> bool:
    """``value`` rounds to the printed number ``text`` (to its number of decimals)."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(value, decimals) == float(text)


def assert_printed(actual: dict, expected: dict):
    mismatched = {key: (actual[key], text) for key, text in expected.items()
                  if not printed(actual[key], text)}
    assert not mismatched, mismatched


@pytest.fixture(scope="module")
def vandyke():
    if not VANDYKE.exists():
        pytest.skip(f"{VANDYKE} absent (VanDyke MRMC data: reader, case, modality, truth, rating)")
    return pd.read_csv(VANDYKE)


def test_vandyke_random_readers_random_cases_jackknife(vandyke):
    result = mrmc.obuchowski_rockette(vandyke, analysis="RRRC", covariance="jackknife")
    # TREATMENT x READER AUC ESTIMATES
    reader_auc = result.reader_auc.set_index(["modality", "reader"])["auc"]
    for (modality, reader), text in {
        (1, 1): "0.91964573", (1, 2): "0.85877617", (1, 3): "0.90386473", (1, 4): "0.97310789",
        (1, 5): "0.82979066", (2, 1): "0.94782609", (2, 2): "0.90531401", (2, 3): "0.92173913",
        (2, 4): "0.99935588", (2, 5): "0.92995169",
    }.items():
        assert printed(reader_auc[(modality, reader)], text), (modality, reader)
    # TREATMENT X READER ANOVA of AUCs; READER ANOVAs for each treatment
    anova = result.anova.set_index("source")
    assert_printed({"ss_t": anova.ss["T"], "ss_r": anova.ss["R"], "ss_tr": anova.ss["T*R"],
                    "ms_t": anova.ms["T"], "ms_r": anova.ms["R"], "ms_tr": anova.ms["T*R"]},
                   {"ss_t": "0.00479617", "ss_r": "0.01534480", "ss_tr": "0.00220412",
                    "ms_t": "0.00479617", "ms_r": "0.00383620", "ms_tr": "0.00055103"})
    # Obuchowski-Rockette variance component and covariance estimates
    assert_printed(result.variance_components, {
        "var_R": "0.00153500", "var_TR": "0.00020040", "cov1": "0.00034661",
        "cov2": "0.00034407", "cov3": "0.00023903", "var_E": "0.00080229",
        "rho1": "0.43203138", "rho2": "0.42886683", "rho3": "0.29793328"})
    # Analysis 1 (a): Treatment MS 0.00479617, F 4.46, Pr > F 0.0517, error term 15.26 df,
    # 0.00107626
    assert_printed(result.global_test, {"statistic": "4.46", "p": "0.0517", "df2": "15.26",
                                        "denominator": "0.00107626", "ms_t": "0.00479617"})
    # (b) 1 - 2: -0.04380, StdErr 0.02075, DF 15.26, t -2.11, p 0.0517, CI (-0.08796, 0.00036)
    difference = result.differences.iloc[0].to_dict()
    assert difference["comparison"] == "1 - 2"
    assert_printed(difference, {"difference": "-0.04380", "se": "0.02075", "df": "15.26",
                                "statistic": "-2.11", "p": "0.0517", "ci_lo": "-0.08796",
                                "ci_hi": "0.00036"})
    # (c) single-treatment intervals
    modality = result.modality_auc.set_index("modality")
    assert_printed(modality.loc[1].to_dict(), {
        "auc": "0.89703704", "se": "0.03317360", "df": "12.74", "ci_lo": "0.82522360",
        "ci_hi": "0.96885048", "cov2": "0.00048396", "ms_r": "0.00308263"})
    assert_printed(modality.loc[2].to_dict(), {
        "auc": "0.94083736", "se": "0.02156637", "df": "12.71", "ci_lo": "0.89413783",
        "ci_hi": "0.98753689", "cov2": "0.00020419", "ms_r": "0.00130460"})
    # RJafroc's inst/obumrm2/ObuRoc.R notes the p-value to more digits: 0.051665686.
    assert printed(result.global_test["p"], "0.051665686")


def test_vandyke_fixed_readers_random_cases_jackknife(vandyke):
    result = mrmc.obuchowski_rockette(vandyke, analysis="FRRC", covariance="jackknife")
    # Analysis 2 (a): X2 5.47595 on 1 df, p 0.0193
    assert_printed(result.global_test, {"statistic": "5.47595", "p": "0.0193"})
    assert result.global_test["df1"] == 1
    assert_printed(result.differences.iloc[0].to_dict(), {
        "difference": "-0.04380", "se": "0.01872", "statistic": "-2.34", "p": "0.0193",
        "ci_lo": "-0.08049", "ci_hi": "-0.00711"})
    modality = result.modality_auc.set_index("modality")
    assert_printed(modality.loc[1].to_dict(), {"se": "0.02428971", "ci_lo": "0.84943008",
                                               "ci_hi": "0.94464399", "var_E": "0.00101410"})
    assert_printed(modality.loc[2].to_dict(), {"se": "0.01677632", "ci_lo": "0.90795637",
                                               "ci_hi": "0.97371835", "var_E": "0.00059047"})
    # (d) single-reader differences
    published = {
        1: ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182", "0.00069890", "0.00037347"),
        2: ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501", "0.00110605", "0.00076016"),
        3: ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330", "0.00084234", "0.00035532"),
        4: ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764", "0.00015058", "0.00000108"),
        5: ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381", "0.00121357", "0.00024304"),
    }
    keys = ("difference", "se", "z", "p", "ci_lo", "ci_hi", "var_E", "cov1")
    for row in result.reader_differences.to_dict("records"):
        assert_printed(row, dict(zip(keys, published[row["reader"]])))
    # MRMCaov's fixed-reader output prints the single-reader standard errors to 10 digits.
    se = result.reader_auc.set_index(["modality", "reader"])["se"]
    assert printed(se[(1, 1)], "0.0301255164") and printed(se[(2, 4)], "0.0007213348")


def test_vandyke_random_readers_fixed_cases(vandyke):
    result = mrmc.obuchowski_rockette(vandyke, analysis="RRFC")
    # Analysis 3 (a): F 8.70 on (1, 4), p 0.0420; (b) SE 0.01485, CI (-0.08502, -0.00258)
    assert_printed(result.global_test, {"statistic": "8.70", "p": "0.0420"})
    assert (result.global_test["df1"], result.global_test["df2"]) == (1, 4)
    assert_printed(result.differences.iloc[0].to_dict(), {
        "se": "0.01485", "statistic": "-2.95", "p": "0.0420", "ci_lo": "-0.08502",
        "ci_hi": "-0.00258"})
    modality = result.modality_auc.set_index("modality")
    assert_printed(modality.loc[1].to_dict(), {"se": "0.02482994", "ci_lo": "0.82809808",
                                               "ci_hi": "0.96597599"})
    assert_printed(modality.loc[2].to_dict(), {"se": "0.01615303", "ci_lo": "0.89598936",
                                               "ci_hi": "0.98568536"})


def test_vandyke_random_readers_random_cases_delong(vandyke):
    """MRMCaov: mrmc(empirical_auc(truth, rating), treatment, reader, case, cov = DeLong)."""
    result = mrmc.obuchowski_rockette(vandyke, analysis="RRRC", covariance="delong")
    assert_printed(result.variance_components, {
        "var_R": "0.0015364254", "var_TR": "0.0002045840", "var_E": "0.0007921325",
        "cov1": "0.0003420090", "cov2": "0.0003395265", "cov3": "0.0002358497",
        "rho1": "0.4317573", "rho2": "0.4286234", "rho3": "0.2977402"})
    assert_printed(result.global_test, {"ms_t": "0.004796171", "ms_tr": "0.0005510306",
                                        "denominator": "0.001069415", "statistic": "4.484854",
                                        "df2": "15.06611", "p": "0.05123303"})
    assert_printed(result.differences.iloc[0].to_dict(), {
        "difference": "-0.04380032", "se": "0.0206825", "df": "15.06611",
        "ci_lo": "-0.0878671960", "ci_hi": "0.0002665519", "statistic": "-2.117747",
        "p": "0.05123303"})
    modality = result.modality_auc.set_index("modality")
    assert_printed(modality.loc[1].to_dict(), {"auc": "0.8970370", "ms_r": "0.003082629",
                                               "cov2": "0.0004775239", "se": "0.03307642",
                                               "df": "12.59597", "ci_lo": "0.8253461",
                                               "ci_hi": "0.9687280"})
    assert_printed(modality.loc[2].to_dict(), {"auc": "0.9408374", "ms_r": "0.001304602",
                                               "cov2": "0.0002015292", "se": "0.02150464",
                                               "df": "12.56530", "ci_lo": "0.8942155",
                                               "ci_hi": "0.9874592"})


# --- Independent route: DBM ANOVA of jackknife pseudovalues (Hillis et al. 2005) -------------


def dbm_pseudovalues(data: pd.DataFrame) -> np.ndarray:
    """Y[t, r, c] = c AUC_tr - (c - 1) AUC_tr(-k), leave-one-out AUCs by scikit-learn."""
    modalities, readers = sorted(data.modality.unique()), sorted(data.reader.unique())
    cases = sorted(data.case.unique())
    c = len(cases)
    pseudo = np.empty((len(modalities), len(readers), c))
    for i, modality in enumerate(modalities):
        for j, reader in enumerate(readers):
            reading = (data[(data.modality == modality) & (data.reader == reader)]
                       .set_index("case").loc[cases])
            truth, rating = reading.truth.to_numpy(), reading.rating.to_numpy()
            full = roc_auc_score(truth, rating)
            for k in range(c):
                keep = np.arange(c) != k
                pseudo[i, j, k] = c * full - (c - 1) * roc_auc_score(truth[keep], rating[keep])
    return pseudo


def dbm_tests(pseudo: np.ndarray) -> dict:
    """Dorfman-Berbaum-Metz mixed-model ANOVA of pseudovalues (treatment fixed, readers
    and cases random) with Hillis' (2007) ddf; and its fixed-reader / fixed-case tests."""
    t, r, c = pseudo.shape
    grand = pseudo.mean()
    m_t, m_r, m_c = pseudo.mean(axis=(1, 2)), pseudo.mean(axis=(0, 2)), pseudo.mean(axis=(0, 1))
    m_tr, m_tc, m_rc = pseudo.mean(axis=2), pseudo.mean(axis=1), pseudo.mean(axis=0)
    ms_t = r * c * np.sum((m_t - grand) ** 2) / (t - 1)
    ms_tr = c * np.sum((m_tr - m_t[:, None] - m_r[None, :] + grand) ** 2) / ((t - 1) * (r - 1))
    ms_tc = r * np.sum((m_tc - m_t[:, None] - m_c[None, :] + grand) ** 2) / ((t - 1) * (c - 1))
    residual = (pseudo - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :]
                + m_t[:, None, None] + m_r[None, :, None] + m_c[None, None, :] - grand)
    ms_trc = np.sum(residual**2) / ((t - 1) * (r - 1) * (c - 1))
    denominator = ms_tr + max(ms_tc - ms_trc, 0.0)
    ddf = denominator**2 / (ms_tr**2 / ((t - 1) * (r - 1)))
    f_random = ms_t / denominator
    return {
        "RRRC": (f_random, ddf, scipy_stats.f.sf(f_random, t - 1, ddf)),
        "FRRC": ms_t / ms_tc,  # equals the OR chi-square / (t - 1)
        "RRFC": (ms_t / ms_tr, scipy_stats.f.sf(ms_t / ms_tr, t - 1, (t - 1) * (r - 1))),
    }


@pytest.mark.parametrize("n_readers, n_positive, n_negative, separations, ordinal, seed", [
    (4, 20, 25, (1.0, 1.4), False, 1),
    (5, 18, 22, (1.2, 1.2), True, 2),      # 5-point ordinal ratings: many ties
    (3, 15, 20, (0.8, 1.3, 1.0), True, 3),  # three modalities
])
def test_jackknife_or_equals_dbm_on_pseudovalues(n_readers, n_positive, n_negative, separations,
                                                 ordinal, seed):
    data = mrmc.simulate_roe_metz(n_readers, n_positive, n_negative, separations, seed=seed)
    if ordinal:
        data["rating"] = np.digitize(data.rating, [-0.5, 0.3, 1.0, 1.8])
    dbm = dbm_tests(dbm_pseudovalues(data))

    random = mrmc.obuchowski_rockette(data, analysis="RRRC", covariance="jackknife").global_test
    assert (random["statistic"], random["df2"], random["p"]) == pytest.approx(dbm["RRRC"], rel=1e-9)
    fixed_readers = mrmc.obuchowski_rockette(data, analysis="FRRC").global_test
    assert fixed_readers["statistic"] / fixed_readers["df1"] == pytest.approx(dbm["FRRC"], rel=1e-9)
    fixed_cases = mrmc.obuchowski_rockette(data, analysis="RRFC").global_test
    assert (fixed_cases["statistic"], fixed_cases["p"]) == pytest.approx(dbm["RRFC"], rel=1e-9)


def test_error_covariances_are_the_averages_of_their_kind():
    data = mrmc.simulate_roe_metz(3, 12, 14, (1.0, 1.2, 0.9), seed=4)
    for method in mrmc.COVARIANCE_METHODS:
        result = mrmc.obuchowski_rockette(data, covariance=method)
        covariance, t, r = result.auc_covariance, 3, 3
        kinds = {"var_E": [], "cov1": [], "cov2": [], "cov3": []}
        for (i, j), (k, l) in itertools.product(itertools.product(range(t), range(r)), repeat=2):
            kind = ("var_E" if (i, j) == (k, l) else "cov1" if j == l else "cov2" if i == k
                    else "cov3")
            kinds[kind].append(covariance[i * r + j, k * r + l])
        for kind, values in kinds.items():
            assert result.variance_components[kind] == pytest.approx(np.mean(values), rel=1e-12)


def test_random_readers_test_holds_its_size_under_the_null():
    """Equal modalities, 300 simulated studies (5 readers, 30 + 30 cases): rejections at
    5 % lie near 5 % (binomial 99.9 % range for 300 draws at 0.05 is about 1 %-10 %)."""
    rejections = [
        mrmc.obuchowski_rockette(mrmc.simulate_roe_metz(5, 30, 30, (1.5, 1.5), seed=seed)
                                 ).global_test["p"] < 0.05
        for seed in range(300)]
    assert 0.01 <= np.mean(rejections) <= 0.10


def test_modality_order_sets_the_sign_of_differences():
    data = mrmc.simulate_roe_metz(3, 10, 10, (1.0, 2.0), seed=5)
    data["modality"] = data.modality.map({0: "unaided", 1: "aided"})
    default = mrmc.obuchowski_rockette(data).differences.iloc[0]
    ordered = mrmc.obuchowski_rockette(data, modalities=["unaided", "aided"]).differences.iloc[0]
    assert default.comparison == "aided - unaided" and ordered.comparison == "unaided - aided"
    assert ordered.difference == pytest.approx(-default.difference)
    assert ordered.p == pytest.approx(default.p)


def test_one_modality_gives_its_interval_and_no_test():
    data = mrmc.simulate_roe_metz(4, 20, 20, (1.3,), seed=9)
    result = mrmc.obuchowski_rockette(data)
    row = result.modality_auc.iloc[0]
    scale = row.ms_r + 4 * max(row.cov2, 0)
    assert row.se == pytest.approx(math.sqrt(scale / 4), rel=1e-12)
    assert row.df == pytest.approx(scale**2 / (row.ms_r**2 / 3), rel=1e-12)
    assert row.ci_hi - row.auc == pytest.approx(scipy_stats.t.ppf(0.975, row.df) * row.se, rel=1e-9)
    assert result.differences.empty and math.isnan(result.global_test["p"])
    assert result.variance_components["var_R"] == pytest.approx(row.ms_r - row.var_E + row.cov2)


def test_single_reader_only_with_fixed_readers():
    data = mrmc.simulate_roe_metz(1, 10, 10, (1.0, 2.0), seed=6)
    with pytest.raises(InputError, match="at least 2 readers"):
        mrmc.obuchowski_rockette(data)
    result = mrmc.obuchowski_rockette(data, analysis="FRRC")
    (row,) = result.reader_differences.to_dict("records")
    assert row["p"] == pytest.approx(result.global_test["p"], rel=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(index=3), "not fully crossed"),
    (lambda d: pd.concat([d, d.iloc[[0]]]), "more than one rating"),
    (lambda d: d.assign(truth=np.where(d.index == 0, 1 - d.truth, d.truth)), "truth cannot change"),
    (lambda d: d.drop(columns="rating"), "missing column"),
    (lambda d: d.assign(rating=np.where(d.index == 2, np.nan, d.rating)), "empty values"),
    (lambda d: d.assign(truth=2), "must be 0 or 1"),
])
def test_bad_tables_get_a_clear_error(change, message):
    data = mrmc.simulate_roe_metz(2, 5, 5, (1.0, 1.0), seed=8)
    with pytest.raises(InputError, match=message):
        mrmc.obuchowski_rockette(change(data), source="readers.csv")
