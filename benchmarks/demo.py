"""Benchmark: wall time and peak memory of a demo study on N CPU cores.

Runs `snakemake --cores N` on a config (default config/config.yaml; config/ismf.yaml and
config/canine.yaml are the other demo studies) in a scratch directory (the repository's
results/ is not touched) and samples the resident memory of the whole process tree
(Snakemake and every job together) from /proc every 0.2 s. Prints the machine, the
commit, the load average before and after, and the study's headline table.

    .venv/bin/python benchmarks/demo.py [--cores 2] [--configfile config/ismf.yaml] [--keep DIR]

``--configfile`` runs another built-in study (config/ismf.yaml, config/canine.yaml,
config/vertebral_ct.yaml, config/brain_mets.yaml).
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
    parser.add_argument("--configfile", type=Path, default=REPO / "config/config.yaml",
                        help="the study's config (default: config/config.yaml)")
    args = parser.parse_args()
    configfile = args.configfile.resolve()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="spinedx-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--configfile", str(configfile), "--cores", str(args.cores), "--quiet"]
    load_before = os.getloadavg()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    stderr = process.stderr.read()
    if process.returncode != 0:
        print(stderr[-4000:], file=sys.stderr)
        return process.returncode
    import pandas as pd
    import yaml

    results = workdir / (yaml.safe_load(configfile.read_text()) or {}).get("results_dir", "results")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; commit {commit}")
    print(f"load average (1, 5, 15 min) before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
          f"after {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
    print(f"demo study ({configfile.relative_to(REPO) if configfile.is_relative_to(REPO) else configfile}, "
          f"--cores {args.cores}): wall {wall:.1f} s, peak memory of the process tree {peak / 2**20:.0f} MiB")
    table3 = results / "tables/table3_case_level.csv"
    if table3.exists():
        print(f"case-level results ({table3.relative_to(workdir)}):")
        columns = ["backbone", "input", "tp", "fp", "fn", "tn", "sensitivity", "specificity", "accuracy", "auc",
                   "auc_lo", "auc_hi", "kappa"]
        print(pd.read_csv(table3)[columns].round(3).to_string(index=False))
    overall = results / "tables/multiclass_overall.csv"
    if overall.exists():
        print(f"N-class results, ALL input ({overall.relative_to(workdir)}):")
        columns = ["level", "backbone", "input", "prediction_set", "model", "n", "accuracy", "accuracy_lo",
                   "accuracy_hi", "macro_f1", "macro_auc", "kappa"]
        table = pd.read_csv(overall)
        print(table[table["input"].isin(["ALL", "fusion_image", "fusion_clinical", "fusion_image+clinical"])][columns]
              .round(3).to_string(index=False))
    modes = results / "tables/table4_input_modes.csv"
    if modes.is_file():  # a volume study: the input modes compared
        columns = ["cohort", "model", "auc", "auc_lo", "auc_hi", "sensitivity", "specificity", "f1", "f1_lo", "f1_hi"]
        print(pd.read_csv(modes)[columns].round(3).to_string(index=False))
        tests = pd.read_csv(results / "tables/table4_input_modes_delong.csv")
        tests = tests[tests.metric == "auc"][["cohort", "comparison", "difference", "p", "p_adjusted"]]
        print(tests.round(4).to_string(index=False))
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
