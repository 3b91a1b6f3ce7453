"""Bayesian bivariate meta-analysis of the fold models' Se and Sp.

The statistics live in R (``R/meta_analysis.R``, model ``R/bivariate.stan``); this module
sources that file through rpy2 (:mod:`spinedx.stats.r_bridge`) and calls
``meta_analysis_table()`` with the fold 2x2 table as an R data.frame. Settings are passed
as typed arguments, never as R code. The stage (figures 4 and 5, the table) is
:mod:`spinedx.stages.meta_analysis`.
"""

from __future__ import annotations

import pandas as pd

from spinedx import paths
from spinedx.config import schema_defaults
from spinedx.errors import InputError
from spinedx.stats import r_bridge

R_FILE = paths.R_DIR / "meta_analysis.R"
STAN_FILE = paths.R_DIR / "bivariate.stan"

ON_NONCONVERGENCE = ("error", "flag")
ENGINES = ("stan", "meta4diag", "auto")
COLUMNS = ["backbone", "input", "parameter", "mean", "sd", "q025", "q50", "q975", "rhat", "ess_bulk"]
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
