"""Bivariate meta-analysis (R/rstan through rpy2): reference values, degenerate folds, errors.

Skipped where R, rstan or rpy2 are missing. The compiled Stan model is cached (see
R/meta_analysis.R, stan_cache_dir()), so only the first run on a machine compiles (~40 s).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED

meta = pytest.importorskip("spinedx.stats.meta_analysis")
from spinedx.stages import meta_analysis as stage  # noqa: E402
from spinedx.stats import r_bridge  # noqa: E402

if not r_bridge.r_available():
    pytest.skip("R, rstan or rpy2 not available", allow_module_level=True)

REFERENCE = SHARED / "reference" / "m4d_reference.json"
FAST = {"chains": 2, "iter": 1000, "warmup": 500, "seed": 3, "ess_min": 100}
# Degenerate folds need more chains for a trustworthy R-hat (2 short chains flag them).
DEGENERATE = {"chains": 4, "iter": 1500, "warmup": 500, "seed": 3}


def folds(counts, backbone="resnet10t", input_="T1"):
    """A fold 2x2 table from (tp, fp, fn, tn) tuples."""
    rows = []
    for fold, (tp, fp, fn, tn) in enumerate(counts):
        rows.append({"backbone": backbone, "input": input_, "fold": fold, "n_pos": tp + fn,
                     "n_neg": tn + fp, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "sensitivity": tp / (tp + fn) if tp + fn else np.nan,
                     "specificity": tn / (tn + fp) if tn + fp else np.nan})
    return pd.DataFrame(rows)


TYPICAL = [(24, 4, 6, 26), (22, 6, 8, 24), (26, 3, 4, 27), (21, 5, 9, 25), (25, 7, 5, 23)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A two-input study through main_stage (table + figures), fitted once."""
    out = tmp_path_factory.mktemp("meta")
    fold_2x2 = pd.concat([folds(TYPICAL, input_="T1"),
                          folds([(tp - 3, fp + 2, fn + 3, tn - 2) for tp, fp, fn, tn in TYPICAL], input_="ALL")])
    csv = out / "fold_2x2.csv"
    fold_2x2.to_csv(csv, index=False)
    results = stage.main_stage(csv, out / "tables/meta_analysis.csv", out / "figures", FAST)
    return out, results


def test_table_has_every_parameter_of_every_input(study):
    out, results = study
    assert list(results.columns) == meta.COLUMNS
    assert list(results.input.unique()) == ["T1", "ALL"]
    expected = {"mu", "nu", "var1", "var2", "rho", "se", "sp", "lr_pos", "lr_neg", "dor", "cor_mu_nu",
                "logit_se_new", "logit_sp_new", "cor_new", "n_divergent", "n_draws", "converged"} | {f"{m}_fold{k}" for m in ("se", "sp") for k in range(5)}
    for _, rows in results.groupby("input"):
        assert set(rows.parameter) == expected and len(rows) == len(expected)
        est = rows.set_index("parameter")
        # Summary Se/Sp are inv_logit of mu/nu draw by draw: medians map exactly.
        assert est.loc["se", "q50"] == pytest.approx(1 / (1 + np.exp(-est.loc["mu", "q50"])), abs=1e-3)
        assert est.loc["sp", "q50"] == pytest.approx(1 / (1 + np.exp(-est.loc["nu", "q50"])), abs=1e-3)
        assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "rhat"] < 1.01).all()
        assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "ess_bulk"] > 100).all()
        assert -1 <= est.loc["rho", "q025"] <= est.loc["rho", "q975"] <= 1
        assert 0.6 < est.loc["se", "mean"] < 0.9 and 0.7 < est.loc["sp", "mean"] < 0.95
    written = pd.read_csv(out / "tables/meta_analysis.csv")
    assert list(written.columns) == meta.COLUMNS and len(written) == len(results)
    names = {p.name for p in (out / "figures").iterdir()}
    assert names == {f"{stem}.{ext}" for stem in ("fig4_forest_T1", "fig4_forest_ALL", "fig5_sroc")
                     for ext in ("pdf", "png")}


def test_same_seed_same_numbers(study):
    _, results = study
    again = meta.run_meta_analysis(folds(TYPICAL), FAST)
    first = results[results.input == "T1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"{REFERENCE} absent")
def test_reproduces_meta4diag_inla_on_telomerase():
    reference = json.loads(REFERENCE.read_text())
    data = reference["datasets"]["Telomerase"]["data"]
    published = reference["published"]["meta4diag_INLA_telomerase_default_priors"]["model_type1_equivalent"]
    counts = list(zip(data["TP"], data["FP"], data["FN"], data["TN"]))
    # 8000 draws: the Monte Carlo error of nu's mean (~0.008) is small next to the tolerance.
    results = meta.run_meta_analysis(folds(counts, "reference", "Telomerase"),
                                     {"chains": 4, "iter": 3000, "warmup": 1000, "seed": 1})
    est = results.set_index("parameter")
    for name in ("mu", "nu", "rho"):
        target = published[name]
        assert abs(est.loc[name, "mean"] - target["mean"]) < 0.25 * target["sd"], (name, est.loc[name, "mean"], target)
    # Variances: heavy right tails, INLA vs MCMC differ there; check the bulk only.
    for name in ("var1", "var2"):
        assert est.loc[name, "q50"] == pytest.approx(published[name]["q50"], rel=0.25)
    # Regression against the independent MCMC runs recorded next to the reference.
    stan = reference.get("computed_here", {}).get("stan_telomerase_meta4diag_default_priors", {}).get("summary")
    if stan:
        for name in ("mu", "nu", "rho", "se", "sp"):
            key = {"se": "Se", "sp": "Sp"}.get(name, name)
            assert abs(est.loc[name, "mean"] - stan[key]["mean"]) < 0.1 * stan[key]["sd"], name


@pytest.mark.parametrize("case, counts", [
    ("zero false positives", [(24, 0, 6, 30), (22, 0, 8, 30), (26, 0, 4, 30), (21, 0, 9, 30), (25, 0, 5, 30)]),
    ("five identical folds", [(24, 4, 6, 26)] * 5),
    ("two folds only", TYPICAL[:2]),
    ("a fold without diseased cases", [(0, 4, 0, 26)] + TYPICAL[1:]),
    ("a fold without any case", [(0, 0, 0, 0)] + TYPICAL[1:]),
    ("perfect folds", [(30, 0, 0, 30)] * 5),
])
def test_degenerate_folds_fit_or_fail_clearly(case, counts):
    try:
        results = meta.run_meta_analysis(folds(counts, input_=case), DEGENERATE)
    except meta.MetaAnalysisError as error:
        assert f"input {case}" in str(error)
        return
    est = results.set_index("parameter")
    assert np.isfinite(est.loc[["mu", "nu", "var1", "var2", "rho"], "mean"]).all()
    assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "rhat"] < 1.01).all()


@pytest.mark.parametrize("counts, message", [
    ([(0, 4, 0, 26), (0, 5, 0, 25)], "no study has a diseased case"),
    ([TYPICAL[0]], "at least 2 studies"),
])
def test_inputs_no_model_can_use_are_refused(counts, message):
    with pytest.raises(meta.MetaAnalysisError, match=message) as error:
        meta.run_meta_analysis(folds(counts, "b1", "CE-T1"), FAST)
    assert "backbone b1, input CE-T1" in str(error.value)


def test_failed_convergence_is_an_error_and_the_next_fit_works():
    with pytest.raises(meta.MetaAnalysisError, match="did not converge") as error:
        meta.run_meta_analysis(folds(TYPICAL, "b2", "T2"), {**FAST, "ess_min": 1e9})
    assert "backbone b2, input T2" in str(error.value) and "Advice" in str(error.value)
    results = meta.run_meta_analysis(folds(TYPICAL, "b2", "T2"), FAST)
    assert len(results) == 27


def test_nonconvergence_can_be_flagged_instead_of_raised(tmp_path):
    data = folds(TYPICAL, "b3", "T1")
    results = meta.run_meta_analysis(data, {**FAST, "ess_min": 1e9, "on_nonconvergence": "flag"})
    assert results.set_index("parameter").loc["converged", "mean"] == 0
    stage.write_figures(results, data, tmp_path)  # flagged fits still draw (marked NOT CONVERGED)
    assert (tmp_path / "fig5_sroc.png").exists()


def test_settings_are_values_never_code():
    with pytest.raises(meta.MetaAnalysisError, match="engine"):
        meta.run_meta_analysis(folds(TYPICAL), {"engine": 'stan"); quit("no'})
    with pytest.raises(meta.MetaAnalysisError, match="unknown"):
        meta.run_meta_analysis(folds(TYPICAL), {"iterations": 10})
    with pytest.raises(meta.MetaAnalysisError, match="missing column"):
        meta.run_meta_analysis(folds(TYPICAL).drop(columns="tp"), FAST)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH")
def test_rscript_entry_point_alone(tmp_path):
    csv = tmp_path / "fold_2x2.csv"
    folds(TYPICAL).to_csv(csv, index=False)
    done = subprocess.run(["Rscript", str(REPO / "R/run_meta_analysis.R"), str(csv), str(tmp_path / "out"),
                           "--engine", "stan", "--iter", "1000", "--warmup", "500", "--chains", "2",
                           "--seed", "3", "--ess-min", "100"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out/meta_analysis.csv")
    assert list(table.columns) == meta.COLUMNS and len(table) == 27
    bad = subprocess.run(["Rscript", str(REPO / "R/run_meta_analysis.R"), str(csv)], capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr


def test_starting_r_does_not_leak_its_library_path_to_child_processes():
    # R prepends the system library folder; children (e.g. a Snakemake run started from
    # the same Python process) would then load the wrong libpython.
    import os
    import subprocess
    import sys

    r_bridge.sourced(meta.R_FILE)
    assert "/usr/lib/R/lib" not in os.environ.get("LD_LIBRARY_PATH", "")
    done = subprocess.run([sys.executable, "-c", "import ssl, pyarrow"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
