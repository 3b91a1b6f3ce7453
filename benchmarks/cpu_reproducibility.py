"""Benchmark: how far the demo moves between CPU kernels (a proxy for another machine).

The deterministic mode (one torch thread, deterministic algorithms, fp32) gives
bit-identical weights on one machine with one software stack. Another processor runs
other kernels: torch (ATen), oneDNN and MKL pick their vector code at start-up from the
CPU's instruction set, and numpy (which renders the demo cohort) does too. Those
libraries let the dispatch be restricted, which stands in for an older processor here:

    reference   the machine's own dispatch (this CPU: AVX-512)
    repeat      the same again (the same-machine claim: must be byte-identical)
    avx2        every library restricted to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
                MKL_ENABLE_INSTRUCTIONS, NPY_DISABLE_CPU_FEATURES, OPENBLAS_CORETYPE):
                a processor without AVX-512
    sse         no AVX at all (ATen default kernels, oneDNN SSE4.1, MKL SSE4.2)
    threads2    deterministic mode off, 2 torch threads, still fp32 and contiguous: the
                reduction order of a multi-threaded run

Each variant runs the demo (config/config.yaml) in its own folder up to the evaluation
tables (demo cohort, annotations, preprocessing, 15 fold models, inference, ensembling,
case level, evaluation), then every variant is compared with the reference: demo image
bytes, preprocessing caches, fold weights (models that differ, share of weight values
that differ, largest difference), selected epochs, external-ensemble probabilities, the
fold 2x2 tables and table 3 (counts and AUC).

    .venv/bin/python benchmarks/cpu_reproducibility.py --workdir /tmp/repro [--variants ...]

A variant whose folder already holds finished tables is not run again (so an
interrupted comparison resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from spinedx import paths  # noqa: E402  (after the path above)

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENBLAS_CORETYPE": "Haswell"}
SSE = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
       "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR X86_V3 AVX2 FMA3 AVX F16C",
       "OPENBLAS_CORETYPE": "Nehalem"}
THREADS2 = {"training": {"deterministic": False, "threads": 2, "precision": "fp32",
                         "channels_last": False, "compile": False}}
VARIANTS = {
    "reference": ({}, None),
    "repeat": ({}, None),
    "avx2": (AVX2, None),
    "sse": (SSE, None),
    "threads2": ({}, THREADS2),
}


def run_variant(name: str, workdir: Path, cores: int) -> float | None:
    env_changes, overrides = VARIANTS[name]
    folder = workdir / name
    study = paths.StudyPaths(folder / "results")
    targets = [study.table(table) for table in paths.EVALUATION_TABLES]
    if all(Path(target).is_file() for target in targets):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    configs = [str(REPO / "config/config.yaml")]
    if overrides:
        override_file = folder / "override.yaml"
        override_file.write_text(json.dumps(overrides))
        configs.append(str(override_file))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder),
               "--cores", str(cores), "--quiet", "--configfile", *configs, "--",
               *[str(Path(target).relative_to(folder)) for target in targets]]
    env = {**os.environ, **env_changes}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def file_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compare(reference: Path, other: Path) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    ref, oth = paths.StudyPaths(reference / "results"), paths.StudyPaths(other / "results")
    result: dict = {}
    cohort_ref = file_digests(reference / "results/demo_cohort")
    cohort_oth = file_digests(other / "results/demo_cohort")
    result["demo_files_differing"] = sum(cohort_ref[k] != cohort_oth.get(k) for k in cohort_ref)
    result["demo_files"] = len(cohort_ref)
    caches = []
    sequences = sorted(p.stem for p in Path(ref.preprocessing_cache("x")).parent.glob("*.npz"))
    for sequence in sequences:
        a, b = np.load(ref.preprocessing_cache(sequence)), np.load(oth.preprocessing_cache(sequence))
        caches.append(all(np.array_equal(a[k], b[k]) for k in a.files))
    result["preprocessing_caches_identical"] = f"{sum(caches)}/{len(caches)}"

    models = sorted(Path(reference / "results/models").glob("*/*/fold*/" + paths.CHECKPOINT_FILE))
    differing_models = values = differing_values = 0
    largest = 0.0
    epochs_changed = []
    for path in models:
        relative = path.relative_to(reference)
        a = torch.load(path, map_location="cpu", weights_only=True)
        b = torch.load(other / relative, map_location="cpu", weights_only=True)
        if a["epoch"] != b["epoch"]:
            epochs_changed.append(f"{relative.parent.parent.name}/{relative.parent.name}: "
                                  f"{a['epoch']}->{b['epoch']}")
        model_differs = False
        for key, tensor in a["state_dict"].items():
            if not tensor.is_floating_point():
                continue
            other_tensor = b["state_dict"][key]
            unequal = tensor != other_tensor
            values += tensor.numel()
            differing_values += int(unequal.sum())
            if unequal.any():
                model_differs = True
                largest = max(largest, float((tensor - other_tensor).abs().max()))
        differing_models += model_differs
    result["models_differing"] = f"{differing_models}/{len(models)}"
    result["weight_values_differing"] = differing_values / values if values else 0.0
    result["largest_weight_difference"] = largest
    result["selected_epoch_changes"] = epochs_changed

    probability_gaps = []
    for ensembling in sorted(Path(ref.ensembling("x", "x")).parent.parent.glob("*/*.parquet")):
        a = pd.read_parquet(ensembling)
        b = pd.read_parquet(other / ensembling.relative_to(reference))
        numeric = a.select_dtypes("number").columns
        probability_gaps.append(float((a[numeric] - b[numeric]).abs().max().max()))
    result["largest_probability_difference"] = max(probability_gaps)

    fold_a, fold_b = pd.read_csv(ref.table(paths.FOLD_2X2)), pd.read_csv(oth.table(paths.FOLD_2X2))
    counts = ["tp", "fp", "fn", "tn"]
    result["fold_2x2_rows_differing"] = f"{int((fold_a[counts] != fold_b[counts]).any(axis=1).sum())}/{len(fold_a)}"
    rows = []
    table_a, table_b = pd.read_csv(ref.table(paths.TABLE3_CASE_LEVEL)), pd.read_csv(oth.table(paths.TABLE3_CASE_LEVEL))
    for row_a, row_b in zip(table_a.itertuples(), table_b.itertuples()):
        rows.append({"input": row_a.input,
                     "counts": "/".join(str(getattr(row_b, c)) for c in counts),
                     "reference_counts": "/".join(str(getattr(row_a, c)) for c in counts),
                     "auc": round(row_b.auc, 4), "reference_auc": round(row_a.auc, 4)})
    result["table3"] = rows
    image_a, image_b = pd.read_csv(ref.table(paths.TABLE2_IMAGE_LEVEL)), pd.read_csv(oth.table(paths.TABLE2_IMAGE_LEVEL))
    result["table2_auc_largest_change"] = float((image_a.auc - image_b.auc).abs().max())
    result["table3_auc_largest_change"] = float((table_a.auc - table_b.auc).abs().max())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args()
    variants = ["reference", *[v for v in args.variants if v != "reference"]]
    walls = {}
    for name in variants:
        walls[name] = run_variant(name, args.workdir, args.cores)
        print(f"{name}: {'already there' if walls[name] is None else f'{walls[name]:.0f} s'}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    import torch
    summary = {"machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
               "commit": commit, "walls_s": walls, "variants": {}}
    for name in variants[1:]:
        summary["variants"][name] = compare(args.workdir / "reference", args.workdir / name)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
