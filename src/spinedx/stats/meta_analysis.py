"""Bayesian bivariate meta-analysis of the fold models' Se and Sp (figures 4 and 5).

The statistics live in R (``R/meta_analysis.R``, model ``R/bivariate.stan``); this module
sources that file through rpy2 and calls ``meta_analysis_table()`` with the fold 2x2 table
as an R data.frame. Settings are passed as typed arguments, never as R code. Figures are
drawn here from the result table (matplotlib).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.io import write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, colors as palette_colors, pyplot, save_figure

log = logging.getLogger(__name__)

R_DIR = Path(os.environ.get("SPINEDX_R_DIR", Path(__file__).resolve().parents[2] / "R"))
R_FILE = R_DIR / "meta_analysis.R"
STAN_FILE = R_DIR / "bivariate.stan"

DEFAULTS = {"engine": "stan", "iter": 4000, "warmup": 1000, "chains": 4, "seed": 1,
            "rhat_max": 1.01, "ess_min": 400, "adapt_delta": 0.99, "on_nonconvergence": "error"}
ON_NONCONVERGENCE = ("error", "flag")
ENGINES = ("stan", "meta4diag", "auto")
COLUMNS = ["backbone", "input", "parameter", "mean", "sd", "q025", "q50", "q975", "rhat", "ess_bulk"]
REQUIRED = ["backbone", "input", "fold", "tp", "fp", "fn", "tn"]
CHI2_2DF_95 = 5.991464547107979  # 95% quantile of chi-square(2): radius^2 of the regions


class MetaAnalysisError(InputError):
    """A meta-analysis could not be fitted (message names backbone, input and the fix)."""


_R_ENV = None


def _robjects():
    """Import rpy2.robjects (starting the embedded R) without leaking R's library path.

    Starting R puts /usr/lib/x86_64-linux-gnu first on LD_LIBRARY_PATH of this process;
    every child it spawns afterwards (a Snakemake run from a notebook, the test suite's
    workflow run) would then load the system libpython into another Python build and
    crash. R is loaded by then, so the variable can go back to what it was.
    """
    saved = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
    finally:
        if saved is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = saved
    return ro


def _r_environment():
    """The R environment holding R/meta_analysis.R's functions (sourced once per process)."""
    global _R_ENV
    if _R_ENV is None:
        try:
            ro = _robjects()
        except Exception as error:  # ImportError, or R itself not loadable
            raise MetaAnalysisError(
                f"the meta-analysis needs R and rpy2 (pip install rpy2==3.5.17; R with rstan): {error}"
            ) from error
        env = ro.r["new.env"]()
        ro.r["sys.source"](str(R_FILE), envir=env)
        _R_ENV = env
    return _R_ENV


def r_available() -> bool:
    """True when rpy2, R and rstan can be used (the stan engine can run)."""
    try:
        return bool(_robjects().r["requireNamespace"]("rstan", quietly=True)[0])
    except Exception:
        return False


def resolve_settings(settings: dict | None) -> dict:
    resolved = {**DEFAULTS, **(settings or {})}
    unknown = set(resolved) - set(DEFAULTS)
    if unknown:
        raise MetaAnalysisError(f"meta_analysis: unknown setting(s) {sorted(unknown)}")
    if resolved["engine"] not in ENGINES:
        raise MetaAnalysisError(f"meta_analysis.engine must be one of {ENGINES}, got {resolved['engine']!r}")
    if resolved["on_nonconvergence"] not in ON_NONCONVERGENCE:
        raise MetaAnalysisError(f"meta_analysis.on_nonconvergence must be one of {ON_NONCONVERGENCE}, "
                                f"got {resolved['on_nonconvergence']!r}")
    for key in ("iter", "warmup", "chains", "seed"):
        resolved[key] = int(resolved[key])
    for key in ("rhat_max", "ess_min", "adapt_delta"):
        resolved[key] = float(resolved[key])
    if not 0 < resolved["adapt_delta"] < 1:
        raise MetaAnalysisError(f"meta_analysis.adapt_delta must be in (0, 1), got {resolved['adapt_delta']}")
    if resolved["warmup"] >= resolved["iter"] or resolved["chains"] < 1:
        raise MetaAnalysisError("meta_analysis: need chains >= 1 and warmup < iter, got "
                                f"chains={resolved['chains']}, warmup={resolved['warmup']}, iter={resolved['iter']}")
    return resolved


def check_fold_2x2(fold_2x2: pd.DataFrame, source: str = "fold 2x2 table") -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in fold_2x2.columns]
    if missing:
        raise MetaAnalysisError(f"{source}: missing column(s) {missing}")
    if fold_2x2.empty:
        raise MetaAnalysisError(f"{source}: no rows")
    table = fold_2x2[REQUIRED].copy()
    table["backbone"] = table["backbone"].astype(str)
    table["input"] = table["input"].astype(str)
    for column in ("fold", "tp", "fp", "fn", "tn"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any() or (values < 0).any() or (values != values.round()).any():
            raise MetaAnalysisError(f"{source}: column {column} must hold non-negative whole numbers")
        table[column] = values.astype("int64")
    duplicated = table.duplicated(["backbone", "input", "fold"])
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise MetaAnalysisError(f"{source}: backbone {first.backbone}, input {first.input}, fold {first.fold} "
                                "appears more than once")
    return table


def run_meta_analysis(fold_2x2: pd.DataFrame, settings: dict | None = None) -> pd.DataFrame:
    """Pool Se/Sp over folds per backbone x input; one row per backbone x input x parameter."""
    ro = _robjects()
    from rpy2.robjects import pandas2ri
    from rpy2.robjects.conversion import localconverter

    settings = resolve_settings(settings)
    table = check_fold_2x2(fold_2x2)
    env = _r_environment()
    function = env["meta_analysis_table_safely"]
    with localconverter(ro.default_converter + pandas2ri.converter):
        r_table = ro.conversion.get_conversion().py2rpy(table)
    result = function(r_table, engine=settings["engine"], iter=settings["iter"],
                      warmup=settings["warmup"], chains=settings["chains"], seed=settings["seed"],
                      adapt_delta=settings["adapt_delta"], rhat_max=settings["rhat_max"],
                      ess_min=settings["ess_min"], stan_file=str(STAN_FILE),
                      stop_on_failure=settings["on_nonconvergence"] == "error")
    parts = dict(zip(result.names, result))
    if not bool(parts["ok"][0]):
        raise MetaAnalysisError(f"meta-analysis: {parts['message'][0]}")
    with localconverter(ro.default_converter + pandas2ri.converter):
        out = ro.conversion.get_conversion().rpy2py(parts["table"])
    out = pd.DataFrame(out).reset_index(drop=True)[COLUMNS]
    for column in COLUMNS[3:]:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


# --------------------------------------------------------------------------- figures

def _inv_logit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _estimates(results: pd.DataFrame, backbone: str, input_: str) -> pd.DataFrame:
    rows = results[(results.backbone == backbone) & (results.input == input_)]
    return rows.set_index("parameter")


def _converged(est: pd.DataFrame) -> bool:
    return "converged" not in est.index or bool(est.loc["converged", "mean"] == 1)


def _ellipse(center, sds, correlation, n=200):
    """Points of the 95% ellipse (logit Se, logit Sp) as (1 - Sp, Se)."""
    t = np.linspace(0, 2 * np.pi, n)
    radius = math.sqrt(CHI2_2DF_95)
    r = float(np.clip(correlation, -0.999999, 0.999999))
    a = center[0] + sds[0] * radius * np.cos(t)
    b = center[1] + sds[1] * radius * np.cos(t + math.acos(r))
    return 1 - _inv_logit(b), _inv_logit(a)


def forest_figure(results: pd.DataFrame, fold_2x2: pd.DataFrame, input_: str):
    """Study-level (fold) Se and Sp with 95% credible intervals and the pooled diamond."""
    plt = pyplot()

    backbones = [b for b in results.backbone.unique() if ((results.backbone == b) & (results.input == input_)).any()]
    labels, blocks = [], []
    for backbone in backbones:
        est = _estimates(results, backbone, input_)
        folds = sorted(fold_2x2[(fold_2x2.backbone == backbone) & (fold_2x2.input == input_)].fold)
        blocks.append((backbone, est, folds))
        pooled = f"{backbone} pooled" + ("" if _converged(est) else " (NOT CONVERGED)")
        labels += [f"{backbone} fold {k}" for k in folds] + [pooled]
    n_rows = len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 1.2 + 0.28 * n_rows), sharey=True)
    for ax, measure, title in ((axes[0], "se", "Sensitivity"), (axes[1], "sp", "Specificity")):
        y = n_rows - 1
        for backbone, est, folds in blocks:
            counts = fold_2x2[(fold_2x2.backbone == backbone) & (fold_2x2.input == input_)].set_index("fold")
            for k in folds:
                key = f"{measure}_fold{k}"
                if key in est.index:
                    row = est.loc[key]
                    ax.plot([row.q025, row.q975], [y, y], color="0.3", lw=1.2)
                    ax.plot(row["mean"], y, "s", color="0.15", ms=5)
                c = counts.loc[k]
                num, den = (c.tp, c.tp + c.fn) if measure == "se" else (c.tn, c.tn + c.fp)
                if den > 0:
                    ax.plot(num / den, y, "x", color=PALETTE[3], ms=5)
                y -= 1
            if measure in est.index:
                row = est.loc[measure]
                ax.fill([row.q025, row["mean"], row.q975, row["mean"]], [y, y + 0.3, y, y - 0.3],
                        color=PALETTE[0], alpha=0.8)
            y -= 1
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("proportion")
    axes[0].set_yticks(range(n_rows))
    axes[0].set_yticklabels(list(reversed(labels)))
    fig.suptitle(f"{input_}: fold models (posterior mean, 95% CrI; x = observed) and pooled estimate")
    fig.tight_layout()
    return fig


def sroc_figure(results: pd.DataFrame, fold_2x2: pd.DataFrame):
    """All inputs on one SROC plot per backbone: folds, summary point, 95% regions, SROC line."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    backbones = list(results.backbone.unique())
    inputs = list(results.input.unique())
    colors = palette_colors(inputs)
    fig, axes = plt.subplots(1, len(backbones), figsize=(3.6 * len(backbones), 4.6), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        for input_ in inputs:
            est = _estimates(results, backbone, input_)
            if est.empty:
                continue
            color = colors[input_]
            counts = fold_2x2[(fold_2x2.backbone == backbone) & (fold_2x2.input == input_)]
            ok = (counts.tp + counts.fn > 0) & (counts.tn + counts.fp > 0)
            fpr = (counts.fp / (counts.fp + counts.tn))[ok]
            se = (counts.tp / (counts.tp + counts.fn))[ok]
            ax.scatter(fpr, se, s=18, facecolors="none", edgecolors=color, linewidths=1, clip_on=False)
            mu, nu = est.loc["mu", "mean"], est.loc["nu", "mean"]
            ax.plot(1 - _inv_logit(nu), _inv_logit(mu), "o", color=color, ms=8, mec="k", clip_on=False, zorder=5)
            if "cor_mu_nu" in est.index and np.isfinite(est.loc["cor_mu_nu", "mean"]):
                x, y = _ellipse((mu, nu), (est.loc["mu", "sd"], est.loc["nu", "sd"]), est.loc["cor_mu_nu", "mean"])
                ax.plot(x, y, color=color, lw=1.3)
            if {"logit_se_new", "logit_sp_new", "cor_new"} <= set(est.index):
                x, y = _ellipse((est.loc["logit_se_new", "mean"], est.loc["logit_sp_new", "mean"]),
                                (est.loc["logit_se_new", "sd"], est.loc["logit_sp_new", "sd"]),
                                est.loc["cor_new", "mean"])
                ax.plot(x, y, color=color, lw=1, ls="--")
            # SROC line: E[logit Se | logit FPR] under the fitted bivariate normal.
            var1, var2, rho = est.loc["var1", "mean"], est.loc["var2", "mean"], est.loc["rho", "mean"]
            slope = -rho * math.sqrt(var1 / var2) if var2 > 0 else 0.0
            lo = float(np.clip(min(fpr.min() if len(fpr) else 0.5, 1 - _inv_logit(nu)), 0.005, 0.995))
            hi = float(np.clip(max(fpr.max() if len(fpr) else 0.5, 1 - _inv_logit(nu)), 0.005, 0.995))
            grid = np.linspace(lo, hi, 100) if hi > lo else np.array([lo])
            logit_fpr = np.log(grid / (1 - grid))
            ax.plot(grid, _inv_logit(mu + slope * (logit_fpr + nu)), color=color, lw=2, alpha=0.7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("Sensitivity")
        failed = [i for i in inputs if not _estimates(results, backbone, i).empty
                  and not _converged(_estimates(results, backbone, i))]
        ax.set_title(backbone + (f"\nNOT CONVERGED: {', '.join(failed)}" if failed else ""))
    handles = [Line2D([], [], color=colors[i], lw=2, label=i) for i in inputs] + [
        Line2D([], [], marker="o", ls="", color="0.5", mec="k", label="summary point"),
        Line2D([], [], marker="o", ls="", mfc="none", color="0.3", label="fold model"),
        Line2D([], [], color="0.3", lw=1.3, label="95% credible region"),
        Line2D([], [], color="0.3", lw=1, ls="--", label="95% prediction region"),
        Line2D([], [], color="0.3", lw=2, alpha=0.7, label="SROC line")]
    # Three columns fit one backbone's panel width; the legend sits below the axes.
    fig.legend(handles=handles, loc="lower center", ncol=3 * len(backbones), frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 0.97))
    return fig


def write_figures(results: pd.DataFrame, fold_2x2: pd.DataFrame, figures_dir) -> list[Path]:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for input_ in results.input.unique():
        fig = forest_figure(results, fold_2x2, input_)
        written += save_figure(fig, figures_dir / f"fig4_forest_{input_}")
    fig = sroc_figure(results, fold_2x2)
    written += save_figure(fig, figures_dir / "fig5_sroc")
    return written


def main_stage(fold_2x2_csv, out_table, figures_dir, settings: dict | None = None) -> pd.DataFrame:
    """The workflow stage: fold_2x2.csv -> meta_analysis.csv + fig4_forest_*.{pdf,png} + fig5_sroc.{pdf,png}."""
    fold_2x2 = check_fold_2x2(pd.read_csv(fold_2x2_csv), str(fold_2x2_csv))
    results = run_meta_analysis(fold_2x2, settings)
    write_csv(results, out_table)
    written = write_figures(results, fold_2x2, figures_dir)
    log.info("meta-analysis: %d rows -> %s; %d figure files -> %s", len(results), out_table,
             len(written), figures_dir)
    return results
