"""Benchmark: the speed targets of issue 17, measured on a fresh clone.

Targets: each built-in demo (every config/*.yaml with ``demo_cohort.enabled``) at most
3 minutes wall on 2 cores including one-off costs (Stan compile: an empty model cache
is used), and the test suite (the command of ``.ci/run``, without the set-up) at most
20 minutes. Each measurement runs in its own fresh ``git clone`` of this checkout's
HEAD (the environment is the checkout's ``.venv``, linked in). Prints every figure with
the machine, the commit and the load average before and after, and by how much a target
is missed. A script, not a timed test: timings depend on the machine and its load.

    .venv/bin/python benchmarks/targets.py                 # every demo, then the suite
    .venv/bin/python benchmarks/targets.py --only demos --configs config/config.yaml
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_TARGET_S = 3 * 60
SUITE_TARGET_S = 20 * 60


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")), 0)
    return f"{model}, {os.cpu_count()} cores visible, {memory_kib / 2**20:.0f} GiB, {platform.system()}"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" (uncommitted changes are NOT measured)" if dirty else "")


def demo_configs() -> list[Path]:
    """The built-in demos: config files whose synthetic cohort is enabled."""
    return [path for path in sorted((REPO / "config").glob("*.yaml"))
            if (yaml.safe_load(path.read_text()) or {}).get("demo_cohort", {}).get("enabled")]


def suite_command() -> str:
    """The test command of .ci/run (after its set-up step)."""
    line = next(line for line in (REPO / ".ci/run").read_text().splitlines() if "pytest" in line)
    return line.split("&&")[-1].strip()


def fresh_clone(parent: Path, name: str) -> Path:
    clone = parent / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to((REPO / ".venv").resolve())
    return clone


def timed(command: list[str] | str, cwd: Path, env: dict, log: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              shell=isinstance(command, str))
    return time.perf_counter() - started, done.returncode


def verdict(seconds: float, target: float) -> str:
    if seconds <= target:
        return f"meets the target ({target / 60:.0f} min) with {target - seconds:.0f} s to spare"
    return f"MISSES the target ({target / 60:.0f} min) by {seconds - target:.0f} s ({seconds / target:.2f}x)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["demos", "suite"], help="measure only these")
    parser.add_argument("--configs", nargs="+", type=Path, help="demo config files (default: every built-in demo)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, results)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="spinedx-targets-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}\ncommit: {commit()}\nwork folder: {work}", flush=True)
    missed = 0
    if args.only in (None, "demos"):
        for config in args.configs or demo_configs():
            config = config.resolve().relative_to(REPO)
            clone = fresh_clone(work, f"demo-{config.stem}")
            # A fresh machine: no compiled Stan model yet (its compile is a one-off cost).
            env = {**os.environ, "SPINEDX_STAN_CACHE": str(work / f"stan-cache-{config.stem}"),
                   "PYTHONPATH": str(clone / "src")}
            command = [str(clone / ".venv/bin/snakemake"), "--cores", str(args.cores), "--configfile", str(config)]
            before = load()
            seconds, code = timed(command, clone, env, work / f"demo-{config.stem}.log")
            status = "failed, see its log" if code else verdict(seconds, DEMO_TARGET_S)
            missed += bool(code) or seconds > DEMO_TARGET_S
            print(f"demo {config}: {seconds:.1f} s wall on {args.cores} cores, {status} "
                  f"(load average before {before}, after {load()})", flush=True)
    if args.only in (None, "suite"):
        clone = fresh_clone(work, "suite")
        command = suite_command()
        env = {**os.environ, "SPINEDX_STAN_CACHE": str(work / "stan-cache-suite"), "PYTHONPATH": str(clone / "src")}
        before = load()
        seconds, code = timed(command, clone, env, work / "suite.log")
        status = "tests failed, see its log" if code else verdict(seconds, SUITE_TARGET_S)
        missed += bool(code) or seconds > SUITE_TARGET_S
        print(f"suite `{command}`: {seconds / 60:.1f} min wall, {status} "
              f"(load average before {before}, after {load()}; slowest tests at the end of {work / 'suite.log'})",
              flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
