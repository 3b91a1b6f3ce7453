"""Wall time and peak memory of the N-class tables with 2000 patient-level bootstrap
replicates (spinedx.stats.multiclass), on synthetic predictions of three study shapes:

* ``brief``: ~300 images of ~100 patients, 5 classes, case labels (the target of issue 13:
  "a few seconds");
* ``ismf_external``: ISMF-Net's external cohort, 281 cases (one row per patient), 5 classes;
* ``canine_test``: the canine test set, 7695 images of 125 dogs, 6 classes, image labels
  (plus the per-pathology table against "unremarkable");
* ``large``: 1000 patients with 1-5 images each, 5 classes (all of ISMF-Net's patients).

Usage: ``python benchmarks/multiclass_bootstrap.py [--replicates 2000]``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from spinedx.stats.multiclass import multiclass_tables, reference_class_table  # noqa: E402


def synthetic(seed, n_patients, n_classes, images_per_patient, image_labels):
    """Labels, probabilities (partial signal) and patient ids."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(images_per_patient[0], images_per_patient[1] + 1, n_patients)
    patients = np.repeat(np.arange(n_patients), sizes)
    if image_labels:  # mostly the reference class 0, one pathology per patient
        pathology = rng.integers(1, n_classes, n_patients)[patients]
        labels = np.where(rng.random(patients.size) < 0.7, 0, pathology)
    else:
        labels = rng.integers(0, n_classes, n_patients)[patients]
    logits = rng.normal(size=(patients.size, n_classes))
    logits[np.arange(patients.size), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs, patients.astype(str)


SHAPES = {
    "brief": dict(n_patients=100, n_classes=5, images_per_patient=(1, 5), image_labels=False),
    "ismf_external": dict(n_patients=281, n_classes=5, images_per_patient=(1, 1), image_labels=False),
    "canine_test": dict(n_patients=125, n_classes=6, images_per_patient=(40, 83), image_labels=True),
    # Scaling: the per-replicate AUC work grows with patients squared.
    "large": dict(n_patients=1000, n_classes=5, images_per_patient=(1, 5), image_labels=False),
}


def measure(function):
    tracemalloc.start()
    start = time.perf_counter()
    function()
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return wall, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}, "
          f"commit {commit}, replicates {args.replicates}")
    for name, shape in SHAPES.items():
        labels, probs, patients = synthetic(0, **shape)
        names = [f"class{k}" for k in range(shape["n_classes"])]
        stratify = "none" if shape["image_labels"] else "class"
        options = dict(probs=probs, n_boot=args.replicates, seed=0, level=0.95,
                       proportion_intervals="bootstrap", stratify=stratify)
        wall, peak = measure(lambda: multiclass_tables(labels, patients, names, **options))
        print(f"{name}: {labels.size} rows, {len(set(patients))} patients, {len(names)} classes: "
              f"multiclass_tables {wall:.2f} s, peak traced memory {peak:.0f} MiB")
        if shape["image_labels"]:
            wall, peak = measure(lambda: reference_class_table(labels, patients, names, "class0", **options))
            print(f"{name}: reference_class_table {wall:.2f} s, peak traced memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
