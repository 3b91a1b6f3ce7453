import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The spinedx package is imported here (config checks, file lists) and by every job.
SRC_DIR = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC_DIR)

from spinedx.annotations import sequence_files
from spinedx.audit import apply_bundle
from spinedx.bundle import CARD_CONFIG_SECTIONS as BUNDLE_CONFIG_SECTIONS
from spinedx.config import check_semantics, settings_json
from spinedx.demo_cohort import demo_settings, planned_files
from spinedx.runtime import prepare_job_environment

prepare_job_environment(SRC_DIR)


validate(config, schema="../schemas/config.schema.yaml")
check_semantics(config)

# Audit mode: the released bundle's settings replace the models' own (spinedx.audit).
AUDIT_BUNDLE = config["audit"]["bundle"]
AUDIT = bool(AUDIT_BUNDLE)
if AUDIT:
    apply_bundle(config)

RESULTS = config["results_dir"]
SEQUENCES = list(config["sequences"])
BACKBONES = config["backbones"]
FOLDS = list(range(config["splits"]["n_folds"]))
IMAGES_DIR = config["data"]["images_dir"]
CASES = config["data"]["cases"]
DEMO = config["demo_cohort"]["enabled"]
DEMO_FILES = planned_files(demo_settings(config)) if DEMO else {}
AUDIT_VERIFIED = f"{RESULTS}/audit/verified.json"


wildcard_constraints:
    sequence="|".join(map(re.escape, SEQUENCES)),
    backbone="|".join(map(re.escape, BACKBONES)),
    fold=r"\d+",


def settings(*sections):
    """The config sections a stage uses, as one JSON param (reruns on their change only)."""
    return settings_json(config, *sections)


def log_path(stage, name):
    return f"{RESULTS}/logs/{stage}/{name}.log"


def benchmark_path(stage, name):
    return f"{RESULTS}/benchmarks/{stage}/{name}.tsv"


def sequence_inputs(wildcards):
    """The files of one sequence, so changing a T2 image reruns the T2 branch only."""
    if DEMO:
        return [f"{IMAGES_DIR}/{path}" for path in DEMO_FILES[wildcards.sequence]]
    return [str(f) for f in sequence_files(IMAGES_DIR, config["sequences"], wildcards.sequence)]


def figure_report(stem, caption, category, subcategory, **labels):
    """``stem``.png as a report item (caption file in workflow/report/) and ``stem``.pdf
    beside it: the report shows the PNG, the PDF is for print."""
    png = report(f"{stem}.png", caption=f"../report/{caption}", category=category,
                 subcategory=subcategory, labels=labels or None)
    return [f"{stem}.pdf", png]
