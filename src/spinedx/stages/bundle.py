"""Bundle stage: the released models of a study, ready for an auditor's cohort.

The bundle folder holds every fold checkpoint, a model card (JSON for machines,
Markdown for people) and a manifest in the format of ``sha256sum -c`` over every other
file (names: :mod:`spinedx.paths`). The card's ``config`` section is what the audit mode
needs to preprocess and score a new cohort exactly as the models were trained;
``training_images_sha256`` lets it refuse an "external" cohort that contains training
images. Reading a bundle (every hash checked first) is :mod:`spinedx.readers.bundle`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from spinedx import paths
from spinedx.aggregation import ALL_INPUT
from spinedx.errors import InputError
from spinedx.imaging.volume_inputs import intensity_recipe
from spinedx.input_modes import model_mode, model_names, released_settings, volume_study
from spinedx.io import atomic_output, sha256_file, write_text
from spinedx.markdown import markdown_table
from spinedx.models.checkpoints import load_checkpoint
from spinedx.readers.bundle import BUNDLE_FORMAT, CARD_CONFIG_SECTIONS
from spinedx.records import code_version, environment
from spinedx.splitting import model_count
from spinedx.task import BinaryTask, task_from_config

log = logging.getLogger(__name__)

METRIC_SUMMARY = ["backbone", "input", "n_pos", "n_neg", "sensitivity", "specificity", "accuracy",
                  "auc", "auc_lo", "auc_hi", "kappa"]
INTENDED_USE = (
    "Research use: to reproduce and externally validate the study's diagnostic-accuracy "
    "estimates for the two classes named here, on sagittal MR slices with a labelme "
    "rectangle drawn around an intradural lesion of the filum terminale / cauda equina. "
    "Not a medical device; not for diagnosing individual patients."
)
INTENDED_USE_MULTICLASS = (
    "Research use: to reproduce and externally validate the study's diagnostic-accuracy "
    "estimates for the classes named here, on MR images prepared as described under input. "
    "Not a medical device; not for diagnosing individual patients."
)
LIMITATIONS_MULTICLASS = (
    "Only the listed classes exist for the models: any other finding is forced into one of "
    "them (the class of highest probability). Performance was estimated on the cohorts "
    "summarised here (see metrics); scanners, protocols, populations and class mixes unlike "
    "them may lower it, which is what an external validation with `spinedx audit` measures."
)
#: The N-class metrics the card quotes: every evaluation set's overall row of the ALL
#: input, ensemble (external) or the held-out models (internal), per backbone.
MULTICLASS_SUMMARY = ["level", "backbone", "input", "prediction_set", "model", "n", "n_patients", "accuracy",
                      "accuracy_lo", "accuracy_hi", "macro_f1", "macro_auc", "kappa"]
LIMITATIONS = (
    "Only the two listed classes exist for the models: any other lesion is forced into one "
    "of them. The input is the annotator's box, so results depend on how boxes are drawn. "
    "Performance was estimated on the cohorts summarised here (see metrics); scanners, "
    "protocols, populations and prevalence unlike them may lower it, which is what an "
    "external validation with `spinedx audit` measures."
)

REPRODUCIBILITY = (
    "Retraining with this card's config, code commit and software versions on the same "
    "machine gives bit-identical weights when training.deterministic is true (CPU, one "
    "thread). On another processor (other CPU kernels) or with several threads the weights "
    "differ in their last bits from the first training step on, and after training some "
    "case decisions and AUCs differ; the released weights, not a retraining, are what the "
    "metrics here describe (README, Reproducibility)."
)


def _patient_classes(patients: pd.DataFrame, classes: list[str]) -> pd.Series:
    """Each patient's class: the diagnosis column of the image table (the cases table's),
    else the class of the patient's label."""
    if "diagnosis" in patients.columns:
        return patients["diagnosis"]
    return patients["label"].map(dict(enumerate(classes)))
# Volume studies (data.format volume): what the models read, and their use.
VOLUME_INTENDED_USE = (
    "Research use: to reproduce and externally validate the study's diagnostic-accuracy "
    "estimates for the two classes named here, on 3-D images (NIfTI or DICOM series) with the "
    "lesion given as a mask (or a box) on the image's grid, preprocessed exactly as recorded "
    "under `input` (resampling, intensity recipe, crops of each input mode). Not a medical "
    "device; not for diagnosing individual patients."
)
VOLUME_LIMITATIONS = (
    "Only the two listed classes exist for the models: any other lesion is forced into one "
    "of them. The input is cut around the annotated lesion, so results depend on how masks or "
    "boxes are drawn; the intensity recipe assumes the recorded units (Hounsfield units for CT "
    "windows). Performance was estimated on the cohorts summarised here (see metrics); "
    "scanners, reconstruction kernels, protocols, populations and prevalence unlike them may "
    "lower it, which is what an external validation with `spinedx audit` measures."
)


def _volume_input(config, models: list[str]) -> dict:
    """A volume study's model input: the exact recipe, grid and crops, per model its mode."""
    settings = config["preprocessing"]
    return {"data_format": "volume",
            "image_formats": "NIfTI (.nii, .nii.gz) or a DICOM series (one folder of single-frame slices)",
            "input_modes": {name: model_mode(name)[0] for name in models},
            "intensity_recipe": intensity_recipe(settings),
            "preprocessing": {key: settings[key] for key in ("spacing", "plane", "neighbours", "crop_mm",
                                                            "max_slices", "intensity")},
            "mean": config["training"]["mean"], "std": config["training"]["std"]}


def _cohort_summary(images: pd.DataFrame, classes: list[str]) -> dict:
    summary = {}
    for cohort, rows in images.groupby("cohort"):
        patients = rows.drop_duplicates("patient_id")
        summary[cohort] = {
            "patients": int(len(patients)),
            # The patient's class: the cases table's diagnosis (also with image-level labels).
            "patients_per_class": {str(k): int(n) for k, n in _patient_classes(patients, classes).value_counts()
                                   .reindex(classes).dropna().items()},
            "images_per_class": {classes[k]: int(n) for k, n in rows["label"].value_counts().sort_index().items()},
            "images_per_sequence": {str(k): int(n) for k, n in rows["sequence"].value_counts().sort_index().items()},
        }
    return summary


def _metrics(path, columns=METRIC_SUMMARY, keep=None) -> list[dict]:
    table = pd.read_csv(path)
    if keep is not None:
        table = table[keep(table)]
    columns = [c for c in columns if c in table.columns]
    return json.loads(table[columns].to_json(orient="records"))


def _initial_weights(checkpoints: list[dict]) -> dict:
    """Per backbone: the pretrained weights its fold models started from (source and
    sha256 of the file), or "random initialisation"."""
    weights = {}
    for model in checkpoints:
        start = model.get("pretrained") or "random initialisation"
        if weights.setdefault(model["backbone"], start) != start:
            raise InputError(f"{model['file']}: the {model['backbone']} fold models started from different "
                             "initial weights; retrain them with one training.pretrained setting")
    return weights


def _multiclass_metrics(path) -> dict:
    """The N-class overall rows of the ALL input (multiclass_overall.csv), internal and external."""
    def rows(internal: bool):
        return _metrics(path, MULTICLASS_SUMMARY, lambda t: (t["input"] == ALL_INPUT) & (
            t["prediction_set"].isin(("oof", "validation", "internal_test")) == internal))
    return {"external": rows(False), "internal": rows(True)}


def build_card(checkpoints: list[dict], images: pd.DataFrame, external_metrics, internal_metrics,
               config, workflow_dir, multiclass_metrics=None) -> dict:
    """The machine-readable model card (plain JSON types only). Two classes: the binary
    case-level tables (``external_metrics``, ``internal_metrics``); more: the N-class
    overall table (``multiclass_metrics``)."""
    task = task_from_config(config)
    binary = isinstance(task, BinaryTask) and multiclass_metrics is None
    classes = list(task.classes)
    internal = images[images["cohort"] == "internal"]
    # The sequences with models, in the study's order (config `sequences`).
    scored = {m["sequence"] for m in checkpoints}
    sequences = {name: list(folders) for name, folders in config["sequences"].items() if name in scored}
    released = {section: config[section] for section in CARD_CONFIG_SECTIONS}
    models = list(dict.fromkeys(m["backbone"] for m in checkpoints))
    volumes = volume_study(config)
    # The config values that rebuild exactly these model names in audit mode.
    released.update(sequences=sequences, **released_settings(models, config))
    if volumes:
        released["data_format"] = "volume"
    scheme = config["splits"]["scheme"]
    if binary:
        task_text = ("binary classification of a spinal intradural lesion from the lesion box of "
                     f"one sagittal MR slice; case decision = mean positive-class probability over "
                     f"the case's images > {task.threshold}")
        if volumes:
            task_text = ("binary classification of the annotated lesion of a 3-D image, per model in its "
                         "input mode (2d: each slice through the lesion; 2.5d: each slice with its "
                         "neighbours as channels; 3d: the sub-volume); case decision = mean positive-class "
                         f"probability over the case's crops > {task.threshold}")
        metrics = {"external_case_level": _metrics(external_metrics),
                   "internal_cv_case_level": _metrics(internal_metrics)}
    else:
        unit = ("each image (labels from the annotation)" if config["labels"]["source"] == "annotation"
                else "each case (mean probability vector over the case's images)")
        task_text = (f"{len(classes)}-class classification of {unit}; decision = the class of highest "
                     "probability (ties: the earlier class)")
        metrics = _multiclass_metrics(multiclass_metrics)
    return {
        "format": BUNDLE_FORMAT,
        "task": task_text,
        "classes": classes,
        "positive_class": task.positive_class if isinstance(task, BinaryTask) else None,
        "labels": dict(config["labels"]),
        "sequences": sequences,
        "backbones": models,
        # Models per backbone x sequence: folds (k-fold) or hold-out repeats.
        "n_folds": model_count(config["splits"]),
        "split_scheme": scheme,
        "input": _volume_input(config, models) if volumes else {
            "preprocessing": dict(config["preprocessing"]),
            "mean": config["training"]["mean"], "std": config["training"]["std"],
            "in_chans": config["training"]["in_chans"],
            "image_formats": "PNG/JPEG (any mode, to 8-bit gray) or DICOM (stored rescale and window)"},
        "models": checkpoints,
        "initial_weights": _initial_weights(checkpoints),
        "training_cohort": _cohort_summary(images, classes),
        "metrics": metrics,
        "intended_use": VOLUME_INTENDED_USE if volumes else INTENDED_USE if binary else INTENDED_USE_MULTICLASS,
        "limitations": VOLUME_LIMITATIONS if volumes else LIMITATIONS if binary else LIMITATIONS_MULTICLASS,
        "reproducibility": REPRODUCIBILITY,
        "software": environment(),
        "code": code_version(workflow_dir),
        "config": released,
        # Hashes only (no pixels, no names): the audit refuses a cohort holding these images.
        # Volumes add the voxels' hash: the same image as NIfTI or DICOM is recognised.
        "training_images_sha256": sorted(set(internal["image_sha256"])
                                         | set(internal.get("voxels_sha256", pd.Series(dtype=str)))),
    }


def render_card(card: dict) -> str:
    """model_card.md: the card for people (the JSON is the reference)."""
    table = markdown_table
    cohort = "\n".join(f"- {name}: {info['patients']} patients {info['patients_per_class']}, "
                       f"images per sequence {info['images_per_sequence']}"
                       for name, info in card["training_cohort"].items())
    software = ", ".join(f"{k} {v}" for k, v in card["software"].items() if v is not None)
    code = card["code"]
    initial = "; ".join(f"{backbone}: " + (start if isinstance(start, str) else
                                           f"pretrained {start['source']} (sha256 {start['sha256']})")
                        for backbone, start in card["initial_weights"].items())
    holdout = card.get("split_scheme") == "holdout"
    ensembles = f"{card['n_folds']} hold-out model(s)" if holdout else f"{card['n_folds']}-fold ensembles"
    if card["positive_class"] is not None:
        classes = f"Classes: {', '.join(card['classes'])}; **positive class: {card['positive_class']}**."
    else:
        classes = (f"Classes: {', '.join(card['classes'])} (decision: the class of highest probability); "
                   f"labels from {card['labels']['source']}"
                   + (f", reference class {card['labels']['reference_class']}"
                      if card["labels"].get("reference_class") else "") + ".")
    if "external_case_level" in card["metrics"]:  # the binary tables
        metrics = f"""## Metrics (case level, ensemble of the fold models)
External cohort:

{table(card['metrics']['external_case_level'])}
Internal cross-validation (out-of-fold):

{table(card['metrics']['internal_cv_case_level'])}"""
    else:
        metrics = f"""## Metrics (ALL input; external: mean of the models; internal: held-out patients)
External cohorts:

{table(card['metrics']['external'])}
Internal ({'validation and internal test' if holdout else 'cross-validation, out-of-fold'}):

{table(card['metrics']['internal'])}"""
    shift = card.get("distribution_shift")
    shift_text = ("" if shift is None else
                  "## Distribution-shift reference\n"
                  f"{shift['method']}.\n\n"
                  + "".join(f"- `{name}` (sha256 {shift['sha256'][name]})\n" for name in shift["references"])
                  + "\n`spinedx audit` scores a new cohort against these before any metric (README, "
                  "\"Auditing a released model\").\n\n")
    return f"""# Model card: spinedx {', '.join(card['backbones'])} ({ensembles})

## Task
{card['task']}.

{classes}
Sequences (one model per backbone x sequence x {'repeat' if holdout else 'fold'}): {', '.join(card['sequences'])}.

## Input and preprocessing
{_input_text(card['input'])}

## Training cohort
{cohort}

{metrics}
## Intended use
{card['intended_use']}

## Limitations
{card['limitations']}

## Reproducibility
{card['reproducibility']}

## Models
{table([{k: m[k] for k in ('file', 'epoch', 'val_accuracy')} for m in card['models']])}
Initial weights: {initial}.

{shift_text}## Software
{software}; code: spinedx {code['spinedx']}, git commit {code['git_commit']} (uncommitted changes: {code['git_dirty']}).

Verify the files with `sha256sum -c {paths.BUNDLE_MANIFEST}` (or `spinedx audit --verify-only`);
score a new cohort with `spinedx audit` (README, "Auditing a released model").
"""


def _input_text(spec: dict) -> str:
    """The card's input section for people: volume studies spell out modes and recipe."""
    if spec.get("data_format") != "volume":
        return json.dumps(spec, sort_keys=True)
    settings = spec["preprocessing"]
    modes = ", ".join(f"{name} ({mode})" for name, mode in spec["input_modes"].items())
    recipe = spec["intensity_recipe"]
    if recipe["kind"] == "ct_window":
        channels = "; ".join(f"{w['name']} level {w['level']:g} / width {w['width']:g} HU" for w in recipe["windows"])
        intensity = f"CT windows, one channel each, clip((HU - level + width/2) / width, 0, 1): {channels}"
    else:
        intensity = (f"percentiles {recipe['low']:g}-{recipe['high']:g} of the {recipe['region']}, "
                     "clip((x - p_low) / (p_high - p_low), 0, 1)")
    return (f"Images: {spec['image_formats']}, read into LPS millimetres (canonical axes superior, posterior, "
            f"patient left), resampled to {settings['spacing']} mm (linear; masks nearest neighbour).\n\n"
            f"Intensity recipe (re-applied identically by `spinedx audit`): {intensity}.\n\n"
            f"Models and input modes: {modes}. Crops centred on the lesion's box, {settings['crop_mm']} mm "
            f"(superior-inferior, anterior-posterior, left-right), 0 beyond the volume; 2d/2.5d: {settings['plane']} "
            f"slices through the lesion (at most {settings['max_slices'] or 'all'}), 2.5d with {settings['neighbours']} "
            f"neighbour(s) on either side as channels; inputs normalised (x - {spec['mean']}) / {spec['std']}.\n\n"
            f"Exact values: {json.dumps(spec, sort_keys=True)}")


def write_bundle(checkpoint_paths, images_path, external_metrics, internal_metrics, config,
                 out_dir, workflow_dir=paths.WORKFLOW_DIR, multiclass_metrics=None, shift_references=()) -> dict:
    """Copy the fold checkpoints into ``out_dir`` and write the card and the manifest.

    ``shift_references``: the distribution-shift references of the training cohort, one per
    model x sequence in the config's order (stage distribution_shift), copied and hashed
    with the models so that audit mode can tell a shifted cohort."""
    out_dir = Path(out_dir)
    images = pd.read_parquet(images_path)
    entries, files = [], []
    for path in checkpoint_paths:
        checkpoint = load_checkpoint(path)  # refuses anything unsafe or corrupt
        name = paths.bundle_model(checkpoint["backbone"], checkpoint["sequence"], checkpoint["fold"],
                                  config["splits"]["scheme"])
        if list(checkpoint["classes"]) != list(config["classes"]):
            raise InputError(f"{path}: trained for classes {checkpoint['classes']}, config says "
                             f"{config['classes']}; retrain or fix config `classes`")
        with atomic_output(out_dir / name) as partial:
            shutil.copyfile(path, partial)
        entries.append({"file": name, "backbone": checkpoint["backbone"], "sequence": checkpoint["sequence"],
                        "fold": int(checkpoint["fold"]), "epoch": int(checkpoint["epoch"]),
                        "val_accuracy": float(checkpoint["val_accuracy"]),
                        # initial weights (source, sha256); None: random initialisation
                        "pretrained": checkpoint.get("pretrained")})
        files.append(name)
    if shift_references:
        jobs = [(b, q) for b in model_names(config) for q in config["sequences"]]
        if len(jobs) != len(shift_references):
            raise InputError(f"give one distribution-shift reference per model x sequence ({len(jobs)}), "
                             f"got {len(shift_references)}")
        for (backbone, sequence), path in zip(jobs, shift_references):
            name = paths.shift_reference(backbone, sequence)
            with atomic_output(out_dir / name) as partial:
                shutil.copyfile(path, partial)
            files.append(name)
    card = build_card(entries, images, external_metrics, internal_metrics, config, workflow_dir,
                      multiclass_metrics)
    if shift_references:
        references = [name for name in files if name.startswith(paths.BUNDLE_SHIFT_DIR)]
        card["distribution_shift"] = {
            "references": references,
            "sha256": {name: sha256_file(out_dir / name) for name in references},
            "method": "per fold model: probabilistic-PCA Mahalanobis distance of penultimate-layer features to "
                      "the images it trained on, threshold from its held-out images; intensity and size "
                      "statistics of the internal images (box fractions only where every image has a box; "
                      "volumes: of the crops each model reads, per intensity channel, with the volumes' "
                      "dimensions, spacing and lesion size) (spinedx.stats.shift)"}
    bundle = paths.BundlePaths(out_dir)
    write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", bundle.card_json)
    write_text(render_card(card), bundle.card_md)
    names = sorted([*files, paths.BUNDLE_CARD_JSON, paths.BUNDLE_CARD_MD])
    lines = [f"{sha256_file(out_dir / name)}  {name}" for name in names]
    write_text("\n".join(lines) + "\n", bundle.manifest)
    log.info("bundle of %d models -> %s", len(entries), out_dir)
    return card
