"""Audit stage: score an auditor's own cohort with a released bundle, without training.

Audit mode is the same workflow with config ``audit.bundle`` set: the bundle's card sets
the models' settings (classes, sequences, preprocessing, backbones, folds, decision
threshold; :func:`spinedx.readers.bundle.apply_bundle`), every case of the new cohort is external, the bundle's checkpoints replace
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

from spinedx import paths
from spinedx.config import ConfigError, deep_merge, load
from spinedx.errors import InputError
from spinedx.io import write_text
from spinedx.readers.bundle import manifest_sha256, verify

log = logging.getLogger(__name__)


def check_cohort(bundle_dir, images_path) -> dict:
    """Verify the bundle and that the new cohort shares no image with its training cohort;
    the summary that the audit_verify rule writes."""
    card = verify(bundle_dir)
    images = pd.read_parquet(images_path)
    trained = set(card["training_images_sha256"])
    # Volumes: the voxels' hash too (a training volume stored as DICOM instead of NIfTI).
    seen = images[images["image_sha256"].isin(trained)
                  | images.get("voxels_sha256", pd.Series(index=images.index, dtype=str)).isin(trained)]
    if not seen.empty:
        raise InputError(
            f"{images_path}: {len(seen)} image(s) of the audit cohort are training images of the "
            f"bundle's models (identical sha256), e.g. {seen['image_path'].tolist()[:5]} of "
            f"patient(s) {sorted(set(seen['patient_id']))[:5]}; an external validation must not "
            "contain them: remove those patients from the cohort"
        )
    return {"bundle": str(bundle_dir), "manifest_sha256": manifest_sha256(bundle_dir),
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
    verify(config["audit"]["bundle"])  # fail fast, before any job starts
    config_file = paths.StudyPaths(config["results_dir"]).audit_config
    write_text(yaml.safe_dump(config, sort_keys=False), config_file)
    command = [sys.executable, "-m", "snakemake", "-s", str(paths.WORKFLOW_DIR / "Snakefile"),
               "-d", str(Path.cwd()), "--configfile", str(config_file), "--cores", str(cores),
               *snakemake_args, "audit"]
    log.info("running %s", " ".join(command))
    return subprocess.run(command).returncode


def main_stage(config, args) -> None:
    """``spinedx audit``: with ``--verify-only`` check the bundle (and with ``--images`` the
    new cohort: the workflow's audit_verify rule) and print the summary; otherwise run the
    workflow's audit target on the auditor's cohort."""
    if args.verify_only:
        if args.images:  # the workflow's check of bundle + new cohort, before any scoring
            summary = check_cohort(args.bundle, args.images)
        else:
            card = verify(args.bundle)
            summary = {"bundle": args.bundle, "manifest_sha256": manifest_sha256(args.bundle),
                       "models": len(card["models"])}
        text = json.dumps(summary, indent=1) + "\n"
        if args.out:
            write_text(text, args.out)
        sys.stdout.write(text)
        return
    missing = [f"--{n.replace('_', '-')}" for n in ("images_dir", "cases", "results_dir") if not getattr(args, n)]
    if missing:
        raise ConfigError(f"spinedx audit needs {', '.join(missing)} (or --verify-only)")
    study = audit_config(args.bundle, args.images_dir, args.cases, args.results_dir, args.config)
    code = run_workflow(study, args.cores, args.snakemake_args)
    if code:
        raise SystemExit(code)
