"""Bundle stage: the released models of a study, ready for an auditor's cohort.

``results/bundle/`` holds every fold checkpoint (``models/<backbone>/<sequence>/
fold<k>.pt``), a model card (``model_card.json`` for machines, ``model_card.md`` for
people) and ``SHA256SUMS`` (the format of ``sha256sum -c``) over every other file. The
card's ``config`` section is what the audit mode needs to preprocess and score a new
cohort exactly as the models were trained; ``training_images_sha256`` lets it refuse an
"external" cohort that contains training images.

:func:`verify` is the only way spinedx opens a bundle: it checks every hash first.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from spinedx.annotations import sha256_file
from spinedx.errors import InputError
from spinedx.io import atomic_output, write_text
from spinedx.runtime import code_version, environment

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "spinedx-bundle/1"
CARD_JSON, CARD_MD, MANIFEST = "model_card.json", "model_card.md", "SHA256SUMS"
# Config sections the audit mode takes from the bundle (the models' own settings).
CARD_CONFIG_SECTIONS = ("classes", "sequences", "backbones", "preprocessing", "splits", "training",
                        "decision")
METRIC_SUMMARY = ["backbone", "input", "n_pos", "n_neg", "sensitivity", "specificity", "accuracy",
                  "auc", "auc_lo", "auc_hi", "kappa"]
INTENDED_USE = (
    "Research use: to reproduce and externally validate the study's diagnostic-accuracy "
    "estimates for the two classes named here, on sagittal MR slices with a labelme "
    "rectangle drawn around an intradural lesion of the filum terminale / cauda equina. "
    "Not a medical device; not for diagnosing individual patients."
)
LIMITATIONS = (
    "Only the two listed classes exist for the models: any other lesion is forced into one "
    "of them. The input is the annotator's box, so results depend on how boxes are drawn. "
    "Performance was estimated on the cohorts summarised here (see metrics); scanners, "
    "protocols, populations and prevalence unlike them may lower it, which is what an "
    "external validation with `spinedx audit` measures."
)


def checkpoint_name(backbone: str, sequence: str, fold: int) -> str:
    return f"models/{backbone}/{sequence}/fold{fold}.pt"


def _cohort_summary(images: pd.DataFrame, classes: list[str]) -> dict:
    summary = {}
    for cohort, rows in images.groupby("cohort"):
        patients = rows.drop_duplicates("patient_id")
        summary[cohort] = {
            "patients": int(len(patients)),
            "patients_per_class": {classes[k]: int(n) for k, n in patients["label"].value_counts().sort_index().items()},
            "images_per_sequence": {str(k): int(n) for k, n in rows["sequence"].value_counts().sort_index().items()},
        }
    return summary


def _metrics(path) -> list[dict]:
    table = pd.read_csv(path)
    columns = [c for c in METRIC_SUMMARY if c in table.columns]
    return json.loads(table[columns].to_json(orient="records"))


def build_card(checkpoints: list[dict], images: pd.DataFrame, external_metrics, internal_metrics,
               config: dict, workflow_dir) -> dict:
    """The machine-readable model card (plain JSON types only)."""
    classes = list(config["classes"])
    internal = images[images["cohort"] == "internal"]
    # The study's order (T1, T2, CE-T1), as the workflow lists the checkpoints; a config
    # that travelled as sorted JSON has lost it.
    order = list(dict.fromkeys(m["sequence"] for m in checkpoints))
    sequences = {name: list(config["sequences"][name]) for name in order}
    released = {section: config[section] for section in CARD_CONFIG_SECTIONS}
    released.update(sequences=sequences, backbones=list(dict.fromkeys(m["backbone"] for m in checkpoints)))
    return {
        "format": BUNDLE_FORMAT,
        "task": ("binary classification of a spinal intradural lesion from the lesion box of "
                 f"one sagittal MR slice; case decision = mean positive-class probability over "
                 f"the case's images > {config['decision']['threshold']}"),
        "classes": classes,
        "positive_class": classes[-1],
        "sequences": sequences,
        "backbones": released["backbones"],
        "n_folds": int(config["splits"]["n_folds"]),
        "input": {"preprocessing": dict(config["preprocessing"]),
                  "mean": config["training"]["mean"], "std": config["training"]["std"],
                  "in_chans": config["training"]["in_chans"],
                  "image_formats": "PNG/JPEG (any mode, to 8-bit gray) or DICOM (stored rescale and window)"},
        "models": checkpoints,
        "training_cohort": _cohort_summary(images, classes),
        "metrics": {"external_case_level": _metrics(external_metrics),
                    "internal_cv_case_level": _metrics(internal_metrics)},
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "software": environment(),
        "code": code_version(workflow_dir),
        "config": released,
        # Hashes only (no pixels, no names): the audit refuses a cohort holding these images.
        "training_images_sha256": sorted(set(internal["image_sha256"])),
    }


def render_card(card: dict) -> str:
    """model_card.md: the card for people (the JSON is the reference)."""
    def table(rows):
        if not rows:
            return "(none)\n"
        keys = list(rows[0])
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
        return "\n".join(lines) + "\n"

    cohort = "\n".join(f"- {name}: {info['patients']} patients {info['patients_per_class']}, "
                       f"images per sequence {info['images_per_sequence']}"
                       for name, info in card["training_cohort"].items())
    software = ", ".join(f"{k} {v}" for k, v in card["software"].items() if v is not None)
    code = card["code"]
    return f"""# Model card: spinedx {', '.join(card['backbones'])} ({card['n_folds']}-fold ensembles)

## Task
{card['task']}.

Classes: {', '.join(card['classes'])}; **positive class: {card['positive_class']}**.
Sequences (one model per backbone x sequence x fold): {', '.join(card['sequences'])}.

## Input and preprocessing
{json.dumps(card['input'], sort_keys=True)}

## Training cohort
{cohort}

## Metrics (case level, ensemble of the fold models)
External cohort:

{table(card['metrics']['external_case_level'])}
Internal cross-validation (out-of-fold):

{table(card['metrics']['internal_cv_case_level'])}
## Intended use
{card['intended_use']}

## Limitations
{card['limitations']}

## Models
{table([{k: m[k] for k in ('file', 'epoch', 'val_accuracy')} for m in card['models']])}
## Software
{software}; code: spinedx {code['spinedx']}, git commit {code['git_commit']} (uncommitted changes: {code['git_dirty']}).

Verify the files with `sha256sum -c SHA256SUMS` (or `spinedx audit --verify-only`);
score a new cohort with `spinedx audit` (README, "Auditing a released model").
"""


def write_bundle(checkpoint_paths, images_path, external_metrics, internal_metrics, config: dict,
                 out_dir, workflow_dir=".") -> dict:
    """Copy the fold checkpoints into ``out_dir`` and write the card and SHA256SUMS."""
    from spinedx import models  # torch: imported only by the job, not by the workflow

    out_dir = Path(out_dir)
    images = pd.read_parquet(images_path)
    entries, files = [], []
    for path in checkpoint_paths:
        checkpoint = models.load_checkpoint(path)  # refuses anything unsafe or corrupt
        name = checkpoint_name(checkpoint["backbone"], checkpoint["sequence"], checkpoint["fold"])
        if list(checkpoint["classes"]) != list(config["classes"]):
            raise InputError(f"{path}: trained for classes {checkpoint['classes']}, config says "
                             f"{config['classes']}; retrain or fix config `classes`")
        with atomic_output(out_dir / name) as partial:
            shutil.copyfile(path, partial)
        entries.append({"file": name, "backbone": checkpoint["backbone"], "sequence": checkpoint["sequence"],
                        "fold": int(checkpoint["fold"]), "epoch": int(checkpoint["epoch"]),
                        "val_accuracy": float(checkpoint["val_accuracy"])})
        files.append(name)
    card = build_card(entries, images, external_metrics, internal_metrics, config, workflow_dir)
    write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", out_dir / CARD_JSON)
    write_text(render_card(card), out_dir / CARD_MD)
    lines = [f"{sha256_file(out_dir / name)}  {name}" for name in sorted([*files, CARD_JSON, CARD_MD])]
    write_text("\n".join(lines) + "\n", out_dir / MANIFEST)
    log.info("bundle of %d models -> %s", len(entries), out_dir)
    return card



def verify(bundle_dir) -> dict:
    """Check every file of a bundle against SHA256SUMS and return its model card.

    Refuses a bundle with a missing, altered or unlisted model file, or a card that does
    not list exactly the backbone x sequence x fold models it should.
    """
    bundle_dir = Path(bundle_dir)
    manifest = bundle_dir / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{manifest}: not found; {bundle_dir} is not a spinedx bundle (written by "
                         "the bundle stage into results/bundle)")
    expected = {}
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{manifest}: line {number} is not '<sha256>  <relative path>'; "
                             "obtain the bundle again from its publisher")
        expected[name] = digest
    for name, digest in expected.items():
        path = bundle_dir / name
        if not path.is_file():
            raise InputError(f"{path}: listed in {manifest} but missing; obtain the complete bundle again")
        actual = sha256_file(path)
        if actual != digest:
            raise InputError(f"{path}: sha256 {actual} does not match {manifest} ({digest}); the "
                             "bundle was altered or damaged: refused. Obtain it again from its publisher")
    unlisted = sorted(p.relative_to(bundle_dir).as_posix() for p in (bundle_dir / "models").rglob("*.pt")
                      if p.relative_to(bundle_dir).as_posix() not in expected)
    if unlisted:
        raise InputError(f"{bundle_dir}: model file(s) {unlisted[:5]} are not in {manifest}: refused "
                         "(unverifiable weights); remove them or obtain the bundle again")
    if CARD_JSON not in expected:
        raise InputError(f"{manifest}: does not cover {CARD_JSON}; obtain the bundle again")
    card = json.loads((bundle_dir / CARD_JSON).read_text())
    if card.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{bundle_dir / CARD_JSON}: bundle format {card.get('format')!r}, this "
                         f"spinedx reads {BUNDLE_FORMAT}")
    wanted = {checkpoint_name(b, s, k) for b in card["backbones"] for s in card["sequences"]
              for k in range(card["n_folds"])}
    if wanted != {m["file"] for m in card["models"]} or not wanted <= set(expected):
        raise InputError(f"{bundle_dir / CARD_JSON}: the card's models do not match its backbones x "
                         "sequences x folds, or some are not hashed; obtain the bundle again")
    return card


def manifest_sha256(bundle_dir) -> str:
    """The one hash that identifies a bundle (publish it beside the bundle)."""
    return sha256_file(Path(bundle_dir) / MANIFEST)
