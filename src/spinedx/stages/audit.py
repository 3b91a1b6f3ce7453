"""Audit stage: score an auditor's own cohort with a released bundle, without training.

Audit mode is the same workflow with config ``audit.bundle`` set: the bundle's card sets
the models' settings (classes, sequences, preprocessing, backbones, folds, decision
threshold), every case of the new cohort is external, the bundle's checkpoints replace
splits and training, and inference, ensembling, case_level, evaluation, meta_analysis
(and whatever else reads their tables) run unchanged. Nothing is scored before
:func:`check_cohort` has verified every hash of the bundle and refused a cohort that
holds the models' own training images. ``spinedx audit`` runs that workflow.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from spinedx import bundle
from spinedx.config import ConfigError, deep_merge, load
from spinedx.errors import InputError

log = logging.getLogger(__name__)

WORKFLOW_DIR = Path(__file__).resolve().parents[2]  # the checkout holding the Snakefile


def apply_bundle(config: dict) -> dict:
    """Put the settings of the bundle named by ``config['audit']['bundle']`` into ``config``
    (in place; returned too). The auditor keeps data, results, device and resources;
    folder names the auditor maps to the bundle's sequences are added to the bundle's."""
    bundle_dir = Path(config["audit"]["bundle"])
    card_path = bundle_dir / bundle.CARD_JSON
    try:
        card = json.loads(card_path.read_text())
        released = card["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{card_path}: cannot read the bundle's model card ({error}); config "
                          "audit.bundle must name a folder written by the bundle stage") from error
    unknown = sorted(set(config["sequences"]) - set(released["sequences"]))
    ours = config["sequences"]
    config["sequences"] = {name: list(dict.fromkeys([*folders, *ours.get(name, [])]))
                           for name, folders in released["sequences"].items()}
    if unknown:
        log.info("audit: sequences %s have no model in the bundle and are not scored", unknown)
    for section in ("classes", "backbones", "preprocessing", "decision"):
        config[section] = released[section]
    config["splits"]["n_folds"] = released["splits"]["n_folds"]
    for key in ("mean", "std", "in_chans"):
        config["training"][key] = released["training"][key]
    return config


def check_cohort(bundle_dir, images_path) -> dict:
    """Verify the bundle and that the new cohort shares no image with its training cohort;
    the summary that the audit_verify rule writes."""
    card = bundle.verify(bundle_dir)
    images = pd.read_parquet(images_path)
    seen = images[images["image_sha256"].isin(set(card["training_images_sha256"]))]
    if not seen.empty:
        raise InputError(
            f"{images_path}: {len(seen)} image(s) of the audit cohort are training images of the "
            f"bundle's models (identical sha256), e.g. {seen['image_path'].tolist()[:5]} of "
            f"patient(s) {sorted(set(seen['patient_id']))[:5]}; an external validation must not "
            "contain them: remove those patients from the cohort"
        )
    return {"bundle": str(bundle_dir), "manifest_sha256": bundle.manifest_sha256(bundle_dir),
            "models": len(card["models"]), "code": card["code"],
            "cohort": {"patients": int(images["patient_id"].nunique()), "images": int(len(images))}}


def audit_config(bundle_dir, images_dir, cases, results_dir, config_path=None) -> dict:
    """The study config of an audit run: the auditor's config file (optional) with the
    bundle, the cohort and the results folder set; the demo cohort off."""
    base = load(config_path)  # resolved: validates the auditor's file
    return deep_merge(base, {
        "audit": {"bundle": str(bundle_dir)},
        "data": {"images_dir": str(images_dir), "cases": str(cases)},
        "results_dir": str(results_dir),
        "demo_cohort": {"enabled": False},
    })


def run_workflow(config: dict, cores: int, snakemake_args=()) -> int:
    """Run the workflow's ``audit`` target on ``config`` (written beside the results)."""
    bundle.verify(config["audit"]["bundle"])  # fail fast, before any job starts
    results = Path(config["results_dir"])
    results.mkdir(parents=True, exist_ok=True)
    config_file = results / "audit_config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(WORKFLOW_DIR / "Snakefile"),
               "-d", str(Path.cwd()), "--configfile", str(config_file), "--cores", str(cores),
               *snakemake_args, "audit"]
    log.info("running %s", " ".join(command))
    return subprocess.run(command).returncode
