"""Benchmark: a fresh machine's first demo, the way a newcomer meets it.

The procedure of tests/test_first_run.py (tests/first_run.py): a clean clone of HEAD,
empty user caches (so the Stan model compiles as on a new machine), the running
environment standing in for the one ``envs/setup.sh`` would build (identical pins only),
then the README's Quick-start commands exactly as written. Prints each command's wall
time and the load average before and after (the development machines are shared).

    .venv/bin/python benchmarks/first_run.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from first_run import run_first_demo  # noqa: E402  (the test's procedure, one copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="spinedx-first-run-"))
    load_before = os.getloadavg()
    run = run_first_demo(workdir, stream=sys.stdout)
    load_after = os.getloadavg()
    if isinstance(run, str):
        print(f"cannot run here: {run}", file=sys.stderr)
        return 2
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; commit {run.commit[:7]}")
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{x:.1f}" for x in load_before)
          + "; after: " + ", ".join(f"{x:.1f}" for x in load_after))
    for command, wall, code in zip(run.commands, run.walls, run.returncodes):
        print(f"{wall:8.1f} s  exit {code}  {command}")
    print(f"{sum(run.walls):8.1f} s  total")
    if not run.succeeded:
        print(run.failure(), file=sys.stderr)
    if not args.keep:
        shutil.rmtree(workdir)
    return 0 if run.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
