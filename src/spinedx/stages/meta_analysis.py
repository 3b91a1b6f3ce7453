"""Meta-analysis stage: the bivariate meta-analysis of the fold models' external Se and
Sp per backbone x input (table), forest plots (figure 4) and the SROC plot (figure 5).

The fit is :mod:`spinedx.stats.meta_analysis` (R through rpy2); the figures are drawn
here from its result table (matplotlib).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.io import write_csv
from spinedx.plotting import PAGE_WIDTH, PALETTE, colors as palette_colors, pyplot, save_figure
from spinedx.stats.meta_analysis import STAGE_KEYS, check_fold_2x2, run_meta_analysis, verdict_summary

log = logging.getLogger(__name__)

CHI2_2DF_95 = 5.991464547107979  # 95% quantile of chi-square(2): radius^2 of the regions



def _inv_logit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _estimates(results: pd.DataFrame, backbone: str, input_: str) -> pd.DataFrame:
    rows = results[(results.backbone == backbone) & (results.input == input_)]
    return rows.set_index("parameter")


def _converged(est: pd.DataFrame) -> bool:
    return "converged" not in est.index or bool(est.loc["converged", "mean"] == 1)


def _estimable(est: pd.DataFrame) -> bool:
    return not est.empty and ("estimable" not in est.index or bool(est.loc["estimable", "mean"] == 1))


def _flag(est: pd.DataFrame) -> str:
    """"" for a trustworthy fit, else the mark every figure shows next to it."""
    if not _estimable(est):
        return "NOT ESTIMABLE"
    return "" if _converged(est) else "NOT CONVERGED"


FLAG_NOTE = ("NOT CONVERGED = the MCMC failed the convergence rule (R-hat, bulk/tail ESS, divergences) "
             "after the escalation ladder: numbers kept, not trustworthy. NOT ESTIMABLE = no model could "
             f"be fitted. See the verdict column of {paths.table_file(paths.META_ANALYSIS_TABLE)}.")


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
        flag = _flag(est)
        pooled = f"{backbone} pooled" + (f" ({flag})" if flag else "")
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
            if measure in est.index and np.isfinite(est.loc[measure, "mean"]):
                row = est.loc[measure]
                flagged = bool(_flag(est))
                # A flagged pooled estimate is drawn hollow, in the warning colour.
                ax.fill([row.q025, row["mean"], row.q975, row["mean"]], [y, y + 0.3, y, y - 0.3],
                        facecolor="none" if flagged else PALETTE[0],
                        edgecolor=PALETTE[3] if flagged else PALETTE[0], hatch="///" if flagged else None,
                        alpha=0.8)
            y -= 1
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("proportion")
    axes[0].set_yticks(range(n_rows))
    axes[0].set_yticklabels(list(reversed(labels)))
    fig.suptitle(f"{input_}: fold models (posterior mean, 95% CrI; x = observed) and pooled estimate")
    if any(_flag(est) for _, est, _ in blocks):
        fig.text(0.01, 0.005, FLAG_NOTE, fontsize=6, color=PALETTE[3], wrap=True, va="bottom")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
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
            if not _estimable(est):
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
        marks = {i: _flag(_estimates(results, backbone, i)) for i in inputs
                 if not _estimates(results, backbone, i).empty}
        title = [backbone] + [f"{flag}: {', '.join(i for i in inputs if marks.get(i) == flag)}"
                              for flag in ("NOT CONVERGED", "NOT ESTIMABLE") if flag in marks.values()]
        ax.set_title("\n".join(title), color="k" if len(title) == 1 else PALETTE[3])
    flagged = {i for i in inputs for b in backbones if _flag(_estimates(results, b, i))
               and not _estimates(results, b, i).empty}
    handles = [Line2D([], [], color=colors[i], lw=2, label=i + (" (flagged)" if i in flagged else ""))
               for i in inputs] + [
        Line2D([], [], marker="o", ls="", color="0.5", mec="k", label="summary point"),
        Line2D([], [], marker="o", ls="", mfc="none", color="0.3", label="fold model"),
        Line2D([], [], color="0.3", lw=1.3, label="95% credible region"),
        Line2D([], [], color="0.3", lw=1, ls="--", label="95% prediction region"),
        Line2D([], [], color="0.3", lw=2, alpha=0.7, label="SROC line")]
    # Three columns fit one backbone's panel width; the legend sits below the axes.
    # Legend below the axes; under it, for flagged fits, the note saying what the marks mean.
    fig.legend(handles=handles, loc="lower center", ncol=3 * len(backbones), frameon=False,
               bbox_to_anchor=(0.5, 0.1 if flagged else 0))
    if flagged:
        fig.text(0.01, 0.005, FLAG_NOTE, fontsize=6, color=PALETTE[3], wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.27 if flagged else 0.16, 1, 0.97))
    return fig


def write_figures(results: pd.DataFrame, fold_2x2: pd.DataFrame, figures_dir) -> list[Path]:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for input_ in results.input.unique():
        fig = forest_figure(results, fold_2x2, input_)
        written += save_figure(fig, figures_dir / paths.forest_figure(input_))
    fig = sroc_figure(results, fold_2x2)
    written += save_figure(fig, figures_dir / paths.SROC_FIGURE)
    return written


def main_stage(fold_2x2_csv, out_table, figures_dir, settings: dict | None = None) -> pd.DataFrame:
    """The workflow stage: the evaluation's fold 2x2 table -> the meta-analysis table, the
    forest plots (one per input) and the SROC plot (``settings``: config ``meta_analysis``)."""
    fold_2x2 = check_fold_2x2(pd.read_csv(fold_2x2_csv), str(fold_2x2_csv))
    fit_settings = {k: v for k, v in (settings or {}).items() if k not in STAGE_KEYS}
    results = run_meta_analysis(fold_2x2, fit_settings)
    write_csv(results, out_table)
    written = write_figures(results, fold_2x2, figures_dir)
    log.info("meta-analysis: %d rows -> %s; %d figure files -> %s", len(results), out_table,
             len(written), figures_dir)
    lines = verdict_summary(results, out_table)
    (log.warning if len(lines) > 1 else log.info)("\n".join(lines))
    return results
