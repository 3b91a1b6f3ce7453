"""Benchmark: Stan model compile time (cold cache) and sampling time per meta-analysis fit.

Compiles R/bivariate.stan into a fresh, temporary cache directory (so the timing is a cold
compile whatever ~/.cache holds), loads it back from the cache as a later run would, then
fits the bivariate model for each input of a synthetic 5-fold table and for the Telomerase
reference data, with the default settings unless given.

    .venv/bin/python benchmarks/meta_analysis.py [--iter 4000] [--warmup 1000] [--chains 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TELOMERASE = [(25, 1, 8, 25), (17, 3, 4, 11), (88, 16, 16, 31), (16, 3, 10, 80), (40, 1, 17, 137),
              (38, 6, 9, 24), (23, 0, 19, 12), (27, 2, 6, 18), (14, 3, 3, 29), (37, 22, 7, 7)]


def table(counts, backbone, input_):
    return pd.DataFrame([{"backbone": backbone, "input": input_, "fold": k, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
                         for k, (tp, fp, fn, tn) in enumerate(counts)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iter", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--chains", type=int)
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if v is not None}

    with tempfile.TemporaryDirectory(prefix="spinedx-stan-") as cache:
        os.environ["SPINEDX_STAN_CACHE"] = cache  # read by R/meta_analysis.R at compile time
        from spinedx.stats import meta_analysis as meta
        from spinedx.stats import r_bridge

        settings = meta.resolve_settings(overrides)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; settings: {settings}")
        started = time.perf_counter()
        import rpy2.robjects as ro
        env = r_bridge.sourced(meta.R_FILE)
        print(f"start embedded R + source R/meta_analysis.R: {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        env["compiled_bivariate_model"](str(meta.STAN_FILE), cache)
        print(f"compile (cold cache): {time.perf_counter() - started:.1f} s")

        memo = env[".spinedx_models"]
        ro.r["rm"](list=ro.r["ls"](memo), envir=memo)  # forget the in-session copy
        started = time.perf_counter()
        env["compiled_bivariate_model"](str(meta.STAN_FILE), cache)
        print(f"load compiled model from cache: {time.perf_counter() - started:.2f} s")

        rng = np.random.default_rng(0)
        fits = []
        for input_ in ("T1", "T2", "CE-T1", "ALL"):
            counts = [(int(tp), 30 - int(tn), 30 - int(tp), int(tn))
                      for tp, tn in zip(rng.integers(18, 29, 5), rng.integers(20, 30, 5))]
            fits.append((f"5 folds, input {input_}", table(counts, "demo", input_)))
        fits.append(("Telomerase, 10 studies", table(TELOMERASE, "reference", "Telomerase")))
        for name, data in fits:
            started = time.perf_counter()
            result = meta.run_meta_analysis(data, settings).set_index("parameter")
            core = result.loc[["mu", "nu", "var1", "var2", "rho"]]
            print(f"sampling, {name}: {time.perf_counter() - started:.2f} s "
                  f"(max R-hat {core.rhat.max():.4f}, min bulk ESS {core.ess_bulk.min():.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
