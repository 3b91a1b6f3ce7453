"""R from Python: rpy2 started once per process, R files sourced once into their own
environments. The R code itself lives in ``R/`` (:data:`spinedx.paths.R_DIR`)."""

from __future__ import annotations

import os
from pathlib import Path

from spinedx.errors import InputError

_SOURCED: dict[str, object] = {}


class RUnavailableError(InputError):
    """rpy2 or R cannot be loaded."""


def robjects():
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


def sourced(r_file: str | Path):
    """The R environment holding ``r_file``'s functions (sourced once per process)."""
    key = str(r_file)
    if key not in _SOURCED:
        try:
            ro = robjects()
        except Exception as error:  # ImportError, or R itself not loadable
            raise RUnavailableError(
                f"{key} needs R and rpy2 (pip install rpy2==3.5.17; R with rstan): {error}"
            ) from error
        env = ro.r["new.env"]()
        ro.r["sys.source"](key, envir=env)
        _SOURCED[key] = env
    return _SOURCED[key]


def r_available(package: str = "rstan") -> bool:
    """True when rpy2, R and the R ``package`` can be used (rstan: the stan engine can run)."""
    try:
        return bool(robjects().r["requireNamespace"](package, quietly=True)[0])
    except Exception:
        return False
