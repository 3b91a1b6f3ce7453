"""Detection bundle stage: the released fold models of a detection study, ready for an
auditor's cohort.

Same folder layout, manifest and checks as the classification bundle
(:mod:`spinedx.readers.bundle`; a model's file is ``models/<model>/<input>/fold<k>.pt``,
the card's ``backbones`` are the models and its ``sequences`` the inputs;
:func:`spinedx.readers.bundle.verify` expects the model x input pairs of its operating
points, since a model need not be trained on every input). The card records what audit
mode must re-apply exactly: the inputs' sequences, the networks and their windows, the
resampling, the intensity recipe (MR percentiles), the head crop, the candidate
extraction and **the operating threshold of every model x input** chosen on the
internal cross-validation (an auditor's cohort never chooses its own threshold);
``training_images_sha256`` (every internal volume and label file) lets audit mode refuse
a cohort that holds training volumes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.detection_task import LESIONS_NAME, DetectionTask
from spinedx.errors import InputError
from spinedx.imaging.intensity import percentile_recipe
from spinedx.io import atomic_output, sha256_file, write_text
from spinedx.markdown import markdown_table
from spinedx.models.checkpoints import load_checkpoint
from spinedx.readers.bundle import BUNDLE_FORMAT, DETECTION_CARD_SECTIONS
from spinedx.readers.detection_cases import read_cases_table, sha256_column
from spinedx.records import code_version, environment

log = logging.getLogger(__name__)

METRICS = ["model", "input", "cohort", "threshold", "n_cases", "n_lesions", "lesion_sensitivity",
           "lesion_sensitivity_lo", "lesion_sensitivity_hi", "fp_per_case", "cpm", "cpm_lo", "cpm_hi", "case_auc"]
INTENDED_USE = (
    "Research use: to reproduce and externally validate the study's lesion-level detection "
    "estimates on co-registered volumes of the listed sequences (one channel each), acquired "
    "and reconstructed like the training cohort's. Not a medical device; not for finding "
    "lesions in individual patients."
)
LIMITATIONS = (
    "The models mark what resembles the training lesions; lesions smaller than the training "
    "grid resolves, other lesion types, other sequences or contrast timing, motion and "
    "misregistration between the sequences may lower sensitivity or raise false positives. "
    "The operating threshold was chosen on the internal cross-validation; the false-positive "
    "rate on a new cohort can differ, which is what an audit with `spinedx audit` measures."
)


def render_card(card: dict) -> str:
    """model_card.md: the card for people (the JSON is the reference)."""
    detection = card["detection"]
    software = ", ".join(f"{k} {v}" for k, v in card["software"].items() if v is not None)
    code = card["code"]
    inputs = "; ".join(f"{name} = {' + '.join(seqs)}" for name, seqs in card["sequences"].items())
    return f"""# Model card: spinedx lesion detection, {', '.join(card['backbones'])} ({card['n_folds']}-fold ensembles)

## Task
{card['task']}.

Inputs (channels): {inputs}.

## Preprocessing (re-applied exactly in audit mode)
{json.dumps({k: detection[k] for k in ('spacing_mm', 'intensity_recipe', 'foreground_threshold', 'crop_margin_mm')}, sort_keys=True)}

## Candidates and operating points
Candidates: {json.dumps(detection['candidates'], sort_keys=True)}; matching: {json.dumps(detection['matching'], sort_keys=True)}.

{markdown_table(detection['operating_points'])}
## Training cohort
{json.dumps(card['training_cohort'], sort_keys=True)}

## Metrics (lesion level)
{markdown_table(card['metrics'])}
## Intended use
{card['intended_use']}

## Limitations
{card['limitations']}

## Models
{markdown_table([{k: m[k] for k in ('file', 'network', 'epoch', 'val_metric')} for m in card['models']])}
## Software
{software}; code: spinedx {code['spinedx']}, git commit {code['git_commit']} (uncommitted changes: {code['git_dirty']}).

Verify the files with `sha256sum -c {paths.BUNDLE_MANIFEST}` (or `spinedx audit --verify-only`);
score a new cohort with `spinedx audit` (README, "Lesion detection").
"""


def write_bundle(checkpoint_paths, cases_path, operating_points, summary_path, config, out_dir,
                 workflow_dir=paths.WORKFLOW_DIR) -> dict:
    """Copy the fold checkpoints into ``out_dir`` and write the card and the manifest."""
    task = DetectionTask.from_config(config)
    out_dir = Path(out_dir)
    entries, files = [], []
    for path in checkpoint_paths:
        checkpoint = load_checkpoint(path)
        if checkpoint.get("task") != "detection":
            raise InputError(f"{path}: not a detection checkpoint; retrain it")
        name = paths.bundle_model(checkpoint["model"], checkpoint["input"], checkpoint["fold"])
        with atomic_output(out_dir / name) as partial:
            shutil.copyfile(path, partial)
        entries.append({"file": name, "backbone": checkpoint["model"], "sequence": checkpoint["input"],
                        "fold": int(checkpoint["fold"]), "network": checkpoint["network"],
                        "epoch": int(checkpoint["epoch"]), "selection_metric": checkpoint["selection_metric"],
                        "val_metric": float(checkpoint["val_metric"])})
        files.append(name)
    cases = read_cases_table(cases_path)
    internal = cases[cases["cohort"] == "internal"]
    detection, preprocessing = config["detection"], config["detection_preprocessing"]
    points = pd.read_csv(operating_points)
    operating = json.loads(points.to_json(orient="records"))
    metrics = pd.read_csv(summary_path)
    inputs = {name: list(task.inputs[name]) for name in dict.fromkeys(i for _, i in task.pairs)}
    released = {section: config[section] for section in DETECTION_CARD_SECTIONS}
    released["detection"] = {**detection, "inputs": inputs}
    card = {
        "format": BUNDLE_FORMAT,
        "task": ("lesion detection: a probability map per voxel from co-registered volumes, candidates = "
                 f"connected components above {detection['candidates']['threshold']:g} scored by their "
                 f"{detection['candidates']['score']} probability, a lesion found when a candidate above the "
                 "operating threshold hits it"),
        "backbones": list(task.models),
        "sequences": inputs,
        "n_folds": int(config["splits"]["n_folds"]),
        "models": entries,
        "detection": {
            "models": {name: spec.as_dict() for name, spec in task.models.items()},
            "spacing_mm": preprocessing["spacing_mm"],
            "intensity_recipe": percentile_recipe(preprocessing["intensity"]["low"], preprocessing["intensity"]["high"],
                                                  "volume"),
            "foreground_threshold": preprocessing["foreground_threshold"],
            "crop_margin_mm": preprocessing["crop_margin_mm"],
            "candidates": detection["candidates"], "matching": detection["matching"],
            "operating_points": operating,
        },
        "training_cohort": {"patients": int(len(internal)), "patients_with_lesions": int(internal["has_lesions"].sum()),
                            "lesions": int(internal["n_lesions"].sum())},
        "metrics": json.loads(metrics[[c for c in METRICS if c in metrics.columns]].to_json(orient="records")),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "software": environment(),
        "code": code_version(workflow_dir),
        "config": released,
        # Hashes only: the audit refuses a cohort holding these volumes.
        "training_images_sha256": sorted({internal[sha256_column(s)].iloc[i]
                                          for s in [*task.sequences, LESIONS_NAME] for i in range(len(internal))}),
    }
    bundle = paths.BundlePaths(out_dir)
    write_text(json.dumps(card, indent=2) + "\n", bundle.card_json)
    write_text(render_card(card), bundle.card_md)
    names = sorted([*files, paths.BUNDLE_CARD_JSON, paths.BUNDLE_CARD_MD])
    write_text("\n".join(f"{sha256_file(out_dir / name)}  {name}" for name in names) + "\n", bundle.manifest)
    log.info("detection bundle of %d models -> %s", len(entries), out_dir)
    return card
