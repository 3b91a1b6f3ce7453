"""A released model bundle (written by the bundle stage): checked before any use.

:func:`verify` is the only way spinedx opens a bundle: every file against its
``SHA256SUMS``, then the model card. :func:`apply_bundle` gives audit mode the models'
own settings from the card. File names inside a bundle: :mod:`spinedx.paths`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spinedx import paths
from spinedx.config import ConfigError
from spinedx.errors import InputError
from spinedx.io import sha256_file

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "spinedx-bundle/1"
#: Config sections the audit mode takes from the bundle (the models' own settings).
CARD_CONFIG_SECTIONS = ("classes", "sequences", "backbones", "preprocessing", "splits", "training",
                        "decision", "labels", "planes")


def verify(bundle_dir) -> dict:
    """Check every file of a bundle against SHA256SUMS and return its model card.

    Refuses a bundle with a missing, altered or unlisted model file, or a card that does
    not list exactly the backbone x sequence x fold models it should (detection: the
    model x input pairs of its operating points x folds).
    """
    bundle_dir = Path(bundle_dir)
    manifest = bundle_dir / paths.BUNDLE_MANIFEST
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
    unlisted = sorted(p.relative_to(bundle_dir).as_posix()
                      for p in (bundle_dir / paths.BUNDLE_MODELS_DIR).rglob("*.pt")
                      if p.relative_to(bundle_dir).as_posix() not in expected)
    if unlisted:
        raise InputError(f"{bundle_dir}: model file(s) {unlisted[:5]} are not in {manifest}: refused "
                         "(unverifiable weights); remove them or obtain the bundle again")
    card_path = bundle_dir / paths.BUNDLE_CARD_JSON
    if paths.BUNDLE_CARD_JSON not in expected:
        raise InputError(f"{manifest}: does not cover {paths.BUNDLE_CARD_JSON}; obtain the bundle again")
    card = json.loads(card_path.read_text())
    if card.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{card_path}: bundle format {card.get('format')!r}, this "
                         f"spinedx reads {BUNDLE_FORMAT}")
    # A detection study trains each model on its own inputs (not every model x input): its
    # card's operating points name the model x input pairs released.
    scheme = card.get("split_scheme", "kfold")
    pairs = ([(point["model"], point["input"]) for point in card["detection"]["operating_points"]]
             if "detection" in card else [(b, s) for b in card["backbones"] for s in card["sequences"]])
    wanted = {paths.bundle_model(b, s, k, scheme) for b, s in pairs for k in range(card["n_folds"])}
    if wanted != {m["file"] for m in card["models"]} or not wanted <= set(expected):
        raise InputError(f"{card_path}: the card's models do not match its backbones x "
                         "sequences x folds, or some are not hashed; obtain the bundle again")
    return card


def manifest_sha256(bundle_dir) -> str:
    """The one hash that identifies a bundle (publish it beside the bundle)."""
    return sha256_file(Path(bundle_dir) / paths.BUNDLE_MANIFEST)


def apply_bundle(config: dict) -> dict:
    """Put the settings of the bundle named by ``config['audit']['bundle']`` into ``config``
    (in place; returned too). The auditor keeps data, results, device and resources;
    folder names the auditor maps to the bundle's sequences are added to the bundle's."""
    card_path = Path(paths.BundlePaths(config["audit"]["bundle"]).card_json)
    try:
        card = json.loads(card_path.read_text())
        released = card["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{card_path}: cannot read the bundle's model card ({error}); config "
                          "audit.bundle must name a folder written by the bundle stage") from error
    if released.get("task", {}).get("type") == "detection":  # detection (issue 16)
        return apply_detection_bundle(config, released)
    unknown = sorted(set(config["sequences"]) - set(released["sequences"]))
    ours = config["sequences"]
    config["sequences"] = {name: list(dict.fromkeys([*folders, *ours.get(name, [])]))
                           for name, folders in released["sequences"].items()}
    if unknown:
        log.info("audit: sequences %s have no model in the bundle and are not scored", unknown)
    for section in ("classes", "backbones", "preprocessing", "decision"):
        config[section] = released[section]
    for section in ("labels", "planes"):  # cards of studies before these sections had the defaults
        if section in released:
            config[section] = released[section]
    for key in ("n_folds", "scheme", "repeats"):
        if key in released["splits"]:
            config["splits"][key] = released["splits"][key]
    # Volume studies: the models' input modes, 3-D networks and volume input.
    for section in ("input_modes", "networks_3d"):
        if section in released:
            config[section] = released[section]
    if "data_format" in released:
        config["data"]["format"] = released["data_format"]
    for key in ("mean", "std", "in_chans"):
        config["training"][key] = released["training"][key]
    return config


# --- detection (issue 16) -------------------------------------------------------------------

#: Config sections a detection bundle's card records for audit mode.
DETECTION_CARD_SECTIONS = ("task", "sequences", "detection", "detection_preprocessing", "splits")
#: Keys of config ``detection`` that belong to the models (taken from the bundle in audit
#: mode); the others (matching, FP rates) and ``detection_evaluation`` stay the auditor's.
DETECTION_MODEL_KEYS = ("inputs", "models", "patches_per_case", "lesion_fraction", "lesion_sampling", "selection",
                        "inference", "candidates")


def apply_detection_bundle(config: dict, released: dict) -> dict:
    """Audit mode for a detection bundle: the task, the sequences (the auditor's folder
    names added), the number of folds, the preprocessing and the models' detection
    settings come from the card; the candidates' operating thresholds are the card's
    (evaluation reads them)."""
    ours = config["sequences"]
    config["task"] = released["task"]
    config["sequences"] = {name: list(dict.fromkeys([*folders, *ours.get(name, [])]))
                           for name, folders in released["sequences"].items()}
    config["splits"]["n_folds"] = released["splits"]["n_folds"]
    config["detection_preprocessing"] = released["detection_preprocessing"]
    for key in DETECTION_MODEL_KEYS:
        config["detection"][key] = released["detection"][key]
    return config
