"""Benchmark: Stan model compile time (cold cache) and sampling time per meta-analysis fit.

Default mode: compiles R/bivariate.stan into a fresh, temporary cache directory (so the
timing is a cold compile whatever ~/.cache holds), loads it back from the cache as a later
run would, then fits the bivariate model for each input of a synthetic 5-fold table and for
the Telomerase reference data, with the default settings unless given.

--grid: fits every case of the fold-table grid of the robustness test
(tests/data/meta_analysis_grid.csv: Se/Sp at or near 0 or 1, zero cells, identical folds,
tiny folds, not-estimable inputs) one by one, with the default settings unless given, and
prints per case the wall time, the verdict, the ladder step it converged at and the
diagnostics, as a Markdown table for RESULTS.md. The compiled model comes from the usual
cache (compiled first if missing). --stan-file runs another Stan program with the same
data and priors (e.g. an older R/bivariate.stan, for before/after figures).

    .venv/bin/python benchmarks/meta_analysis.py [--iter 4000] [--warmup 1000] [--chains 4]
    .venv/bin/python benchmarks/meta_analysis.py --grid [--max-escalations 0] [--stan-file F] [--cases a,b]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
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


GRID = REPO / "tests/data/meta_analysis_grid.csv"
DIAGNOSTICS = ["converged", "estimable", "ladder_step", "max_rhat", "min_ess_bulk", "min_ess_tail", "n_divergent"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), load {load:.1f}; "
            f"commit {commit}{' + uncommitted changes' if dirty else ''}")


def grid(overrides: dict, stan_file: str | None, only: list[str] | None) -> int:
    from spinedx.stats import meta_analysis as meta
    from spinedx.stats import r_bridge

    if stan_file:
        meta.STAN_FILE = Path(stan_file).resolve()
    settings = meta.resolve_settings({**overrides, "on_nonconvergence": "flag"})
    print(f"machine: {machine()}")
    print(f"settings: {settings}; Stan program: {meta.STAN_FILE}")
    cases = pd.read_csv(GRID)
    started = time.perf_counter()
    r_bridge.sourced(meta.R_FILE)["compiled_bivariate_model"](str(meta.STAN_FILE))
    print(f"start R + load (or compile) the model: {time.perf_counter() - started:.1f} s\n")
    print("| case | folds (tp/fp/fn/tn) | time | verdict | step | max R-hat | min bulk ESS | min tail ESS | divergent |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = 0.0
    for case, data in cases.groupby("input", sort=False):
        if only and case not in only:
            continue
        started = time.perf_counter()
        result = meta.run_meta_analysis(data, settings)
        seconds = time.perf_counter() - started
        total += seconds
        est = result.set_index("parameter")["mean"]
        values = {k: est.get(k, np.nan) for k in DIAGNOSTICS}
        verdict = result["verdict"].iloc[0]
        folds = " ".join(f"{r.tp}/{r.fp}/{r.fn}/{r.tn}" for r in data.itertuples())
        number = lambda x, f: "–" if not np.isfinite(x) else format(x, f)  # noqa: E731
        print(f"| {case} | {folds} | {seconds:.1f} s | {verdict[:60]} | {number(values['ladder_step'], '.0f')} | "
              f"{number(values['max_rhat'], '.4f')} | {number(values['min_ess_bulk'], '.0f')} | "
              f"{number(values['min_ess_tail'], '.0f')} | {number(values['n_divergent'], '.0f')} |", flush=True)
    print(f"\ntotal sampling time: {total:.1f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iter", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--chains", type=int)
    parser.add_argument("--max-escalations", type=int, dest="max_escalations")
    parser.add_argument("--ess-min", type=float, dest="ess_min")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--grid", action="store_true", help="fit the robustness grid (tests/data/meta_analysis_grid.csv)")
    parser.add_argument("--stan-file", help="--grid: another Stan program (same data and priors)")
    parser.add_argument("--cases", help="--grid: comma-separated case names only")
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if v is not None and k in ("iter", "warmup", "chains", "max_escalations", "ess_min", "seed")}
    if args.grid:
        return grid(overrides, args.stan_file, args.cases.split(",") if args.cases else None)

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
                  f"(max R-hat {core.rhat.max():.4f}, min bulk ESS {core.ess_bulk.min():.0f}, "
                  f"min tail ESS {core.ess_tail.min():.0f}; {result.verdict.iloc[0]}, "
                  f"ladder step {result.loc['ladder_step', 'mean']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
