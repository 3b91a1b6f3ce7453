"""Bayesian bivariate meta-analysis of the fold models' Se and Sp.

The statistics live in R (``R/meta_analysis.R``, model ``R/bivariate.stan``); this module
sources that file through rpy2 (:mod:`spinedx.stats.r_bridge`) and calls
``meta_analysis_table()`` with the fold 2x2 table as an R data.frame. Settings are passed
as typed arguments, never as R code. R decides every fit's verdict
(``convergence_verdict()``: R-hat, bulk and tail ESS, divergences, after the escalation
ladder); :func:`verdict_summary` reads it back from a result table for the end of a stage
or a workflow run. The stage (figures 4 and 5, the table) is
:mod:`spinedx.stages.meta_analysis`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinedx import paths
from spinedx.config import schema_defaults
from spinedx.errors import InputError
from spinedx.stats import r_bridge

R_FILE = paths.R_DIR / "meta_analysis.R"
STAN_FILE = paths.R_DIR / "bivariate.stan"

ON_NONCONVERGENCE = ("error", "flag")
ENGINES = ("stan", "meta4diag", "auto")
COLUMNS = ["backbone", "input", "parameter", "mean", "sd", "q025", "q50", "q975", "rhat", "ess_bulk",
           "ess_tail", "verdict"]
REQUIRED = ["backbone", "input", "fold", "tp", "fp", "fn", "tn"]
#: Keys of the config section that are not settings of a fit.
STAGE_KEYS = ("enabled",)


class MetaAnalysisError(InputError):
    """A meta-analysis could not be fitted (message names backbone, input and the fix)."""


def resolve_settings(settings: dict | None) -> dict:
    """Fit settings: ``settings`` over the schema's defaults of config ``meta_analysis``
    (the schema is their only source), checked."""
    defaults = {k: v for k, v in schema_defaults("meta_analysis").items() if k not in STAGE_KEYS}
    resolved = {**defaults, **(settings or {})}
    unknown = set(resolved) - set(defaults)
    if unknown:
        raise MetaAnalysisError(f"meta_analysis: unknown setting(s) {sorted(unknown)}")
    if resolved["engine"] not in ENGINES:
        raise MetaAnalysisError(f"meta_analysis.engine must be one of {ENGINES}, got {resolved['engine']!r}")
    if resolved["on_nonconvergence"] not in ON_NONCONVERGENCE:
        raise MetaAnalysisError(f"meta_analysis.on_nonconvergence must be one of {ON_NONCONVERGENCE}, "
                                f"got {resolved['on_nonconvergence']!r}")
    for key in ("iter", "warmup", "chains", "seed", "max_escalations"):
        resolved[key] = int(resolved[key])
    if resolved["max_escalations"] < 0:
        raise MetaAnalysisError(f"meta_analysis.max_escalations must be >= 0, got {resolved['max_escalations']}")
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
    ro = r_bridge.robjects()
    from rpy2.robjects import pandas2ri
    from rpy2.robjects.conversion import localconverter

    settings = resolve_settings(settings)
    table = check_fold_2x2(fold_2x2)
    try:
        env = r_bridge.sourced(R_FILE)
    except r_bridge.RUnavailableError as error:
        raise MetaAnalysisError(f"the meta-analysis: {error}") from error
    function = env["meta_analysis_table_safely"]
    with localconverter(ro.default_converter + pandas2ri.converter):
        r_table = ro.conversion.get_conversion().py2rpy(table)
    result = function(r_table, engine=settings["engine"], iter=settings["iter"],
                      warmup=settings["warmup"], chains=settings["chains"], seed=settings["seed"],
                      adapt_delta=settings["adapt_delta"], rhat_max=settings["rhat_max"],
                      ess_min=settings["ess_min"], max_escalations=settings["max_escalations"],
                      on_nonconvergence=settings["on_nonconvergence"], stan_file=str(STAN_FILE))
    parts = dict(zip(result.names, result))
    if not bool(parts["ok"][0]):
        raise MetaAnalysisError(f"meta-analysis: {parts['message'][0]}")
    with localconverter(ro.default_converter + pandas2ri.converter):
        out = ro.conversion.get_conversion().rpy2py(parts["table"])
    out = pd.DataFrame(out).reset_index(drop=True)[COLUMNS]
    for column in COLUMNS[3:-1]:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["verdict"] = out["verdict"].astype(str)
    return out


# --------------------------------------------------------------------------- verdict summary
# Read back from the written table (the verdict itself is decided in R, convergence_verdict()).

def fit_verdicts(results: pd.DataFrame) -> pd.DataFrame:
    """One row per backbone x input: verdict (text), converged, estimable (1/0)."""
    def value(rows, parameter, default):
        hit = rows.loc[rows.parameter == parameter, "mean"]
        return int(hit.iloc[0]) if len(hit) and np.isfinite(hit.iloc[0]) else default

    out = []
    for (backbone, input_), rows in results.groupby(["backbone", "input"], sort=False):
        verdict = str(rows["verdict"].iloc[0]) if "verdict" in rows else ""
        out.append({"backbone": backbone, "input": input_, "verdict": verdict,
                    "converged": value(rows, "converged", 1), "estimable": value(rows, "estimable", 1)})
    return pd.DataFrame(out, columns=["backbone", "input", "verdict", "converged", "estimable"])


def verdict_summary(results: pd.DataFrame, table_path=None) -> list[str]:
    """Lines for the end of a run: how many fits are trustworthy and which are flagged."""
    verdicts = fit_verdicts(results)
    where = f" ({table_path})" if table_path else ""
    flagged = verdicts[(verdicts.converged != 1) | (verdicts.estimable != 1)]
    if flagged.empty:
        return [f"meta-analysis{where}: all {len(verdicts)} fits converged"]
    lines = [f"meta-analysis{where}: {len(verdicts) - len(flagged)} of {len(verdicts)} fits converged; "
             f"{len(flagged)} flagged (kept in the table with converged = 0 and marked in figures 4-5; "
             "do not use their pooled numbers as they are):"]
    lines += [f"  backbone {row.backbone}, input {row.input}: {row.verdict}" for row in flagged.itertuples()]
    return lines


def verdict_summary_of_table(table_csv) -> list[str]:
    """verdict_summary() of a written meta_analysis.csv; [] when there is none (stage not run)."""
    table_csv = Path(table_csv)
    if not table_csv.is_file():
        return []
    try:
        results = pd.read_csv(table_csv, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        return [f"meta-analysis: could not read {table_csv}: {error}"]
    if not {"backbone", "input", "parameter", "mean"} <= set(results.columns):
        return []
    results["mean"] = pd.to_numeric(results["mean"], errors="coerce")
    return verdict_summary(results, table_csv)
