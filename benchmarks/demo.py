"""Benchmark: wall time and peak memory of the default demo study on N CPU cores.

Runs `snakemake --cores N` on config/config.yaml in a scratch directory (the repository's
results/ is not touched) and samples the resident memory of the whole process tree
(Snakemake and every job together) from /proc every 0.2 s.

    .venv/bin/python benchmarks/demo.py [--cores 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(statm[1]) * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="spinedx-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--configfile", str(REPO / "config/config.yaml"), "--cores", str(args.cores), "--quiet"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    stderr = process.stderr.read()
    if process.returncode != 0:
        print(stderr[-4000:], file=sys.stderr)
        return process.returncode
    table3 = (workdir / "results/tables/table3_case_level.csv").read_text()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; commit {commit}")
    print(f"demo study (config/config.yaml, --cores {args.cores}): wall {wall:.1f} s, "
          f"peak memory of the process tree {peak / 2**20:.0f} MiB")
    print("case-level results (results/tables/table3_case_level.csv):")
    import pandas as pd
    from io import StringIO
    columns = ["backbone", "input", "tp", "fp", "fn", "tn", "sensitivity", "specificity", "accuracy", "auc", "auc_lo", "auc_hi", "kappa"]
    print(pd.read_csv(StringIO(table3))[columns].round(3).to_string(index=False))
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
