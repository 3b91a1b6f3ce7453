"""Bivariate meta-analysis (R/rstan through rpy2): reference values, the convergence rule
and ladder, the nonconvergence policy, errors, the set-up compile step.

Skipped where R, rstan or rpy2 are missing. The compiled Stan model is cached (see
R/meta_analysis.R, stan_cache_dir()), so only the first run on a machine compiles (~45 s).
The grid of difficult fold tables is in test_meta_analysis_grid.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SHARED

meta = pytest.importorskip("spinedx.stats.meta_analysis")
from spinedx.stages import meta_analysis as stage  # noqa: E402
from spinedx.stats import r_bridge  # noqa: E402

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="meta_analysis_study")

if not r_bridge.r_available():
    pytest.skip("R, rstan or rpy2 not available", allow_module_level=True)

REFERENCE = SHARED / "reference" / "m4d_reference.json"
FAST = {"chains": 2, "iter": 1000, "warmup": 500, "seed": 3, "ess_min": 100}
VERDICT_ROWS = {"converged", "estimable", "max_rhat", "min_ess_bulk", "min_ess_tail", "n_divergent",
                "n_draws", "ladder_step", "adapt_delta"}
ESTIMATES = {"mu", "nu", "var1", "var2", "rho", "se", "sp", "lr_pos", "lr_neg", "dor", "cor_mu_nu",
             "logit_se_new", "logit_sp_new", "cor_new"}
ROWS_5_FOLDS = len(ESTIMATES) + 2 * 5 + len(VERDICT_ROWS)


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
    expected = ESTIMATES | VERDICT_ROWS | {f"{m}_fold{k}" for m in ("se", "sp") for k in range(5)}
    for _, rows in results.groupby("input"):
        assert set(rows.parameter) == expected and len(rows) == len(expected)
        est = rows.set_index("parameter")
        # Summary Se/Sp are inv_logit of mu/nu draw by draw: medians map exactly.
        assert est.loc["se", "q50"] == pytest.approx(1 / (1 + np.exp(-est.loc["mu", "q50"])), abs=1e-3)
        assert est.loc["sp", "q50"] == pytest.approx(1 / (1 + np.exp(-est.loc["nu", "q50"])), abs=1e-3)
        assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "rhat"] < 1.01).all()
        assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "ess_bulk"] > 100).all()
        assert (est.loc[["mu", "nu", "var1", "var2", "rho"], "ess_tail"] > 100).all()
        assert (rows.verdict == "converged").all() and est.loc["converged", "mean"] == 1
        assert est.loc["ladder_step", "mean"] == 0 and est.loc["n_divergent", "mean"] == 0
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
    assert est.loc["converged", "mean"] == 1, results.verdict.iloc[0]
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


def _r_verdict(rhat, ess_bulk, ess_tail, divergent, rhat_max=1.01, ess_min=400):
    """R's convergence_verdict() on made-up diagnostics of mu, nu, var1, var2, rho."""
    import rpy2.robjects as ro

    names = ["mu", "nu", "var1", "var2", "rho"]
    checked = ro.DataFrame({"parameter": ro.StrVector(names), "rhat": ro.FloatVector(rhat),
                            "ess_bulk": ro.FloatVector(ess_bulk), "ess_tail": ro.FloatVector(ess_tail)})
    result = r_bridge.sourced(meta.R_FILE)["convergence_verdict"](checked, divergent, rhat_max, ess_min)
    parts = dict(zip(result.names, result))
    return bool(parts["converged"][0]), list(parts["reasons"])


def test_convergence_rule_is_one_rule_over_rhat_bulk_and_tail_ess_and_divergences():
    good = dict(rhat=[1.001] * 5, ess_bulk=[3000] * 5, ess_tail=[2000] * 5)
    assert _r_verdict(**good, divergent=0) == (True, [])
    # Issue 11: an audit run passed with 67 divergences and R-hat 1.002 ...
    converged, reasons = _r_verdict(rhat=[1.002] * 5, ess_bulk=[2500] * 5, ess_tail=[1500] * 5, divergent=67)
    assert not converged and reasons == ["67 divergent transitions after warmup"]
    # ... while R-hat 1.011 with 2 divergences failed on R-hat alone: both count now.
    converged, reasons = _r_verdict(rhat=[1.001, 1.011, 1.001, 1.011, 1.0], ess_bulk=[2839, 329, 854, 365, 6555],
                                    ess_tail=[1500, 108, 700, 300, 4000], divergent=2)
    assert not converged
    assert reasons == ["R-hat > 1.01 for nu, var2 (max 1.011)", "bulk ESS < 400 for nu, var2 (min 329)",
                       "tail ESS < 400 for nu, var2 (min 108)", "2 divergent transitions after warmup"]
    # Tail ESS alone fails a fit (the 95% intervals rest on it); boundaries are inclusive.
    assert _r_verdict(**{**good, "ess_tail": [2000, 2000, 399, 2000, 2000]}, divergent=0)[0] is False
    assert _r_verdict(rhat=[1.01] * 5, ess_bulk=[400] * 5, ess_tail=[400] * 5, divergent=0) == (True, [])
    # A diagnostic that could not be computed fails its criterion.
    assert _r_verdict(**{**good, "rhat": [1.0, float("nan"), 1.0, 1.0, 1.0]}, divergent=0)[0] is False


def test_ladder_doubles_warmup_raises_adapt_delta_and_adds_draws_only_after_rhat_or_ess_failed():
    import rpy2.robjects as ro

    ladder = r_bridge.sourced(meta.R_FILE)["ladder_settings"]

    def step(k, previous=None):
        result = ladder(k, 4000, 1000, 0.99, previous if previous is not None else ro.NULL)
        return {name: value[0] for name, value in zip(result.names, result)}

    def failed(run, **flags):
        return ro.ListVector({"draws": run["draws"], "failed": ro.ListVector(
            {"rhat": flags.get("rhat", False), "ess": flags.get("ess", False), "divergent": flags.get("divergent", False)})})

    first = step(0)
    assert (first["warmup"], first["iter"], first["draws"]) == (1000, 4000, 3000)
    assert first["adapt_delta"] == pytest.approx(0.99)
    after_divergences = step(1, failed(first, divergent=True))
    assert (after_divergences["warmup"], after_divergences["draws"]) == (2000, 3000)
    assert after_divergences["adapt_delta"] == pytest.approx(0.999)
    after_low_ess = step(2, failed(after_divergences, ess=True))
    assert (after_low_ess["warmup"], after_low_ess["draws"], after_low_ess["iter"]) == (4000, 6000, 10000)
    assert after_low_ess["adapt_delta"] == pytest.approx(0.9999)


def test_failed_convergence_is_an_error_under_the_strict_policy_and_the_next_fit_works():
    with pytest.raises(meta.MetaAnalysisError, match="did not converge") as error:
        meta.run_meta_analysis(folds(TYPICAL, "b2", "T2"), {**FAST, "ess_min": 1e9, "max_escalations": 0,
                                                            "on_nonconvergence": "error"})
    message = str(error.value)
    assert "backbone b2, input T2" in message and "bulk ESS < 1e+09" in message and "tail ESS" in message
    assert "Fix: set meta_analysis.on_nonconvergence: flag" in message and "max_escalations" in message
    results = meta.run_meta_analysis(folds(TYPICAL, "b2", "T2"), FAST)
    assert len(results) == ROWS_5_FOLDS


def test_nonconvergence_is_flagged_by_default_after_the_ladder(tmp_path):
    data = folds(TYPICAL, "b3", "T1")
    assert meta.resolve_settings({})["on_nonconvergence"] == "flag"
    results = meta.run_meta_analysis(data, {**FAST, "ess_min": 1e9, "max_escalations": 1})
    est = results.set_index("parameter")
    assert est.loc["converged", "mean"] == 0 and est.loc["estimable", "mean"] == 1
    # One escalation: a decade higher adapt_delta, twice the warmup and (ESS failed) the draws.
    assert est.loc["ladder_step", "mean"] == 1 and est.loc["adapt_delta", "mean"] == pytest.approx(0.999)
    assert est.loc["n_draws", "mean"] == 2 * 1000
    assert results.verdict.str.startswith("NOT CONVERGED: bulk ESS < 1e+09").all()
    assert np.isfinite(est.loc[["mu", "nu", "se", "sp"], "mean"]).all()  # numbers kept
    lines = meta.verdict_summary(results, "x.csv")
    assert lines[0].startswith("meta-analysis (x.csv): 0 of 1 fits converged; 1 flagged")
    assert lines[1].startswith("  backbone b3, input T1: NOT CONVERGED: bulk ESS")
    stage.write_figures(results, data, tmp_path)  # flagged fits still draw (marked NOT CONVERGED)
    assert (tmp_path / "fig5_sroc.png").exists() and (tmp_path / "fig4_forest_T1.png").exists()


@pytest.mark.parametrize("counts, message", [
    ([(0, 4, 0, 26), (0, 5, 0, 25)], "no study has a diseased case"),
    ([(24, 0, 6, 0), (22, 0, 8, 0)], "no study has a non-diseased case"),
    ([TYPICAL[0]], "at least 2 studies"),
])
def test_inputs_no_model_can_use_are_not_estimable_or_refused(counts, message):
    data = folds(counts, "b1", "CE-T1")
    with pytest.raises(meta.MetaAnalysisError, match=message) as error:
        meta.run_meta_analysis(data, {**FAST, "on_nonconvergence": "error"})
    assert "backbone b1, input CE-T1" in str(error.value) and "Fix:" in str(error.value)
    results = meta.run_meta_analysis(data, FAST)  # flag: a row set saying so, no exception
    est = results.set_index("parameter")
    assert est.loc["estimable", "mean"] == 0 and est.loc["converged", "mean"] == 0
    assert est.loc[list(ESTIMATES), "mean"].isna().all()
    verdict = results.verdict.iloc[0]
    assert verdict.startswith("not estimable: ") and message in verdict and results.verdict.nunique() == 1


def test_verdict_summary_reads_the_written_table(tmp_path):
    assert meta.verdict_summary_of_table(tmp_path / "absent.csv") == []
    flagged = meta.run_meta_analysis(folds([(0, 4, 0, 26), (0, 5, 0, 25)], "b4", "NA"), FAST)
    fine = meta.run_meta_analysis(folds(TYPICAL, "b4", "T1"), FAST)
    table = tmp_path / "meta_analysis.csv"
    pd.concat([fine, flagged]).to_csv(table, index=False)
    lines = meta.verdict_summary_of_table(table)
    assert lines[0] == f"meta-analysis ({table}): 1 of 2 fits converged; 1 flagged (kept in the table with " \
        "converged = 0 and marked in figures 4-5; do not use their pooled numbers as they are):"
    assert lines[1:] == ["  backbone b4, input NA: not estimable: no study has a diseased case "
                         "(tp + fn == 0 everywhere); Se cannot be estimated"]
    fine.to_csv(table, index=False)
    assert meta.verdict_summary_of_table(table) == [f"meta-analysis ({table}): all 1 fits converged"]


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
    assert list(table.columns) == meta.COLUMNS and len(table) == ROWS_5_FOLDS
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


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH")
def test_setup_compiles_the_stan_model_once_and_the_stage_uses_it(tmp_path):
    # The exact command envs/setup.sh runs (a cold compile, ~45 s), on an empty cache.
    command = "Rscript R/run_meta_analysis.R --compile-only"
    assert command in (REPO / "envs/setup.sh").read_text()
    env = {**os.environ, "SPINEDX_STAN_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(command.split(), cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Stan model: compiling bivariate.stan" in first.stderr and "Stan model: compiled in" in first.stderr
    cached = list((tmp_path / "cache").glob("*.rds"))
    assert len(cached) == 1 and cached[0].name.endswith(".rds") and not list((tmp_path / "cache").glob("*.part"))
    again = subprocess.run(command.split(), cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.strip() == f"Stan model: already compiled ({cached[0]})"
    # A study run with that cache does not compile (the stage compiles only when it is missing).
    csv = tmp_path / "fold_2x2.csv"
    folds(TYPICAL).to_csv(csv, index=False)
    fit = subprocess.run(["Rscript", "R/run_meta_analysis.R", str(csv), str(tmp_path / "out"), "--iter", "600",
                          "--warmup", "300", "--chains", "2", "--ess-min", "50", "--max-escalations", "0"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "compiling" not in fit.stderr and (tmp_path / "out/meta_analysis.csv").exists()
