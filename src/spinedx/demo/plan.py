"""What the built-in demo study writes, known without drawing a pixel.

The workflow imports this module (light: numpy only) to declare every file of the demo
cohort as an output and input of the DAG; the renderer (:mod:`spinedx.demo.spine`) draws
them. Both derive every random choice of a patient and sequence from
:func:`sequence_rng`, so the planned files are exactly the written ones.

Config ``demo_cohort.study`` chooses the study: ``spine`` (the reference study; its
settings are the flat keys of ``demo_cohort``) or another shape whose settings are the
subsection of its name (:data:`RENDERERS`: its module's own planner, imported only then).
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from spinedx import config as configuration
from spinedx.config import ConfigError
from spinedx.demo.patients import two_cohort_ids

DIAGNOSES = ("ependymoma", "schwannoma")
SEQUENCES = ("T1", "T2", "CE-T1")
#: The reference study's name in config ``demo_cohort.study``, and its mapping settings.
SPINE = "spine"
SPINE_COUNTS = ("n_internal", "n_external")
#: Other studies: config ``demo_cohort.study`` -> the module that plans and renders it
#: (``planned_files(settings)``, ``generate_demo_cohort(images_dir, cases_csv, settings)``,
#: ``SEQUENCES``). Each study's owner adds its line.
RENDERERS = {
    "ismf": "spinedx.demo.ismf",
    "canine": "spinedx.demo.canine",
    "brain_mets": "spinedx.demo.brain_mets",
    "vertebral_ct": "spinedx.demo.vertebral_ct",
}


@functools.cache
def _default_settings() -> dict:
    return demo_settings(configuration.resolve({}))


def default_settings() -> dict:
    """The generator's settings of the schema's defaults (config ``demo_cohort`` and
    ``sequences``; the schema is their only source)."""
    return copy.deepcopy(_default_settings())


def sequence_rng(settings: dict, patient_index: int, sequence_index: int) -> np.random.Generator:
    return np.random.default_rng([settings["seed"], 2, patient_index, sequence_index])


def renderer(settings: dict):
    """The module of a non-spine study (``settings["study"]``); None for the spine study."""
    study = settings.get("study", SPINE)
    if study == SPINE:
        return None
    if study not in RENDERERS:
        raise ConfigError(f"demo_cohort.study {study!r} has no renderer in this spinedx (known: "
                          f"{[SPINE, *RENDERERS]})")
    import importlib

    return importlib.import_module(RENDERERS[study])


def study_settings(config, study: str) -> dict:
    """Settings of a non-spine study: its subsection of ``demo_cohort``, the sequence
    folders from config ``sequences`` (the first folder name of each)."""
    module = renderer({"study": study})
    missing = [s for s in module.SEQUENCES if s not in config["sequences"]]
    if missing:
        raise ConfigError(f"the {study} demo has sequences {list(module.SEQUENCES)}; config `sequences` "
                          f"lacks {missing}")
    settings = copy.deepcopy(dict(config["demo_cohort"][study]))
    settings["study"] = study
    settings["sequence_folders"] = {s: config["sequences"][s][0] for s in module.SEQUENCES}
    return settings


def demo_settings(config) -> dict:
    """Generator settings from a resolved spinedx config (sections ``demo_cohort`` and
    ``sequences``), for the study config ``demo_cohort.study`` names."""
    study = config["demo_cohort"].get("study", SPINE)
    if study == BRAIN_METS:  # detection (issue 16): volumes, its own settings
        return brain_mets_settings(config)
    if study == "vertebral_ct":  # CT volumes (issue 14): its own settings
        return vertebral_ct_settings(config)
    if study != SPINE:
        return study_settings(config, study)
    # The spine's keys are the flat ones (the other studies' subsections are left out).
    settings = {key: value for key, value in config["demo_cohort"].items()
                if key not in ("enabled", "study") and (key in SPINE_COUNTS or not isinstance(value, dict))}
    missing = [s for s in SEQUENCES if s not in config["sequences"]]
    if missing:
        raise ConfigError(f"the demo cohort has {list(SEQUENCES)}; config `sequences` lacks {missing}")
    # Folders carry an alias rather than the canonical name, so the demo exercises the
    # folder-name mapping the way real data does.
    settings["sequence_folders"] = {s: names[1] if len(names) > 1 else names[0]
                                    for s, names in config["sequences"].items() if s in SEQUENCES}
    return settings


def planned_files(settings: dict) -> dict[str, list[str]]:
    """Relative paths (PNG and JSON) that :func:`spinedx.demo.spine.generate_demo_cohort`
    writes, per sequence, computed without rendering, so a workflow can declare them as
    outputs and inputs."""
    module = renderer(settings)
    if module is not None:
        return module.planned_files(settings)
    settings = checked_settings(settings)
    low, high = settings["slices_per_sequence"]
    patient_ids = two_cohort_ids(settings)
    files: dict[str, list[str]] = {sequence: [] for sequence in SEQUENCES}
    for index, patient_id in enumerate(patient_ids):
        for sequence_index, sequence in enumerate(SEQUENCES):
            folder = settings["sequence_folders"][sequence]
            n_slices = int(sequence_rng(settings, index, sequence_index).integers(low, high + 1))
            for k in range(1, n_slices + 1):
                stem = f"{patient_id}/{folder}/{patient_id}_{folder}_{k}"
                files[sequence] += [f"{stem}.png", f"{stem}.json"]
    return files


def checked_settings(settings: dict) -> dict:
    """Settings with the schema's defaults filled in, or ValueError naming the bad key."""
    merged = {**default_settings(), **settings}
    for key in ("n_internal", "n_external"):
        unknown = set(merged[key]) - set(DIAGNOSES)
        if unknown or any(int(n) < 0 for n in merged[key].values()):
            raise ValueError(f"demo_cohort.{key} must map {list(DIAGNOSES)} to counts >= 0, got {merged[key]}")
    for key, minimum in (("slices_per_sequence", 1), ("image_height", 64), ("image_width", 64)):
        value = merged[key]
        if len(value) != 2 or not minimum <= value[0] <= value[1]:
            raise ValueError(f"demo_cohort.{key} must be [low, high] with {minimum} <= low <= high, got {value}")
    folders = merged["sequence_folders"]
    missing = set(SEQUENCES) - set(folders)
    if missing:
        raise ValueError(f"demo_cohort.sequence_folders lacks {sorted(missing)}")
    if len({folders[s] for s in SEQUENCES}) < len(SEQUENCES):
        raise ValueError(f"demo_cohort.sequence_folders must name a different folder per sequence, got {folders}")
    return merged


# --- detection (issue 16): the brain-metastasis demo --------------------------------------

BRAIN_METS = "brain_mets"
#: Keys of demo_cohort that belong to the other built-in studies, not to the spine demo.
OTHER_STUDY_KEYS = ("study", "brain_mets", "brain_mets_readers")


def brain_mets_settings(config) -> dict:
    """Settings of :mod:`spinedx.demo.brain_mets` (config ``demo_cohort.brain_mets``), with
    ``study`` set; its two folders must be mapped to sequences by config ``sequences``."""
    settings = {**config["demo_cohort"][BRAIN_METS], "study": BRAIN_METS}
    mapped = {name.lower() for names in config["sequences"].values() for name in names}
    unmapped = [folder for folder in settings["sequences"].values() if folder.lower() not in mapped]
    if unmapped:
        raise ConfigError(f"the brain_mets demo writes sequence folders {unmapped}, which config `sequences` "
                          "does not map; e.g. sequences: {black_blood: [BB], bright_blood: [DB]}")
    return settings


def vertebral_ct_settings(config) -> dict:
    """Settings of the vertebral CT study (config ``demo_cohort.vertebral_ct``); its CT
    folder must be one of config ``sequences``' folder names."""
    settings = {"study": "vertebral_ct", **config["demo_cohort"]["vertebral_ct"]}
    folders = {name.lower() for names in config["sequences"].values() for name in names}
    if settings["sequence"].lower() not in folders:
        raise ConfigError(f"the vertebral CT demo writes its volumes into folders {settings['sequence']!r}; "
                          f"map that folder to a sequence in config `sequences` (e.g. CT: [CT])")
    return settings
