"""What the built-in demo study writes, known without drawing a pixel.

The workflow imports this module (light: numpy only) to declare every file of the demo
cohort as an output and input of the DAG; the renderer (:mod:`spinedx.demo.spine`) draws
them. Both derive every random choice of a patient and sequence from
:func:`sequence_rng`, so the planned files are exactly the written ones.
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from spinedx import config as configuration
from spinedx.config import ConfigError

DIAGNOSES = ("ependymoma", "schwannoma")
SEQUENCES = ("T1", "T2", "CE-T1")


@functools.cache
def _default_settings() -> dict:
    return demo_settings(configuration.resolve({}))


def default_settings() -> dict:
    """The generator's settings of the schema's defaults (config ``demo_cohort`` and
    ``sequences``; the schema is their only source)."""
    return copy.deepcopy(_default_settings())


def sequence_rng(settings: dict, patient_index: int, sequence_index: int) -> np.random.Generator:
    return np.random.default_rng([settings["seed"], 2, patient_index, sequence_index])


#: Keys of config ``demo_cohort`` that are not the spine study's settings: the study
#: selector and the other studies' subsections.
STUDY_KEYS = ("enabled", "study", "ismf", "canine", "vertebral_ct", "brain_mets")


def demo_settings(config) -> dict:
    """Generator settings from a resolved spinedx config (sections ``demo_cohort`` and
    ``sequences``); another study than the spine study: its subsection, with ``study``."""
    study = config["demo_cohort"].get("study", "spine")
    if study == "vertebral_ct":
        return vertebral_ct_settings(config)
    settings = {key: value for key, value in config["demo_cohort"].items() if key not in STUDY_KEYS}
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
    if settings.get("study") == "vertebral_ct":
        from spinedx.demo import vertebral_ct  # numpy only at import: light enough here

        return vertebral_ct.planned_files(settings)
    settings = checked_settings(settings)
    low, high = settings["slices_per_sequence"]
    patient_ids = [f"{prefix}{number:03d}"
                   for key, prefix in (("n_internal", "DEMO-I"), ("n_external", "DEMO-E"))
                   for number in range(1, sum(int(n) for n in settings[key].values()) + 1)]
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


def vertebral_ct_settings(config) -> dict:
    """Settings of the vertebral CT study (config ``demo_cohort.vertebral_ct``); its CT
    folder must be one of config ``sequences``' folder names."""
    settings = {"study": "vertebral_ct", **config["demo_cohort"]["vertebral_ct"]}
    folders = {name.lower() for names in config["sequences"].values() for name in names}
    if settings["sequence"].lower() not in folders:
        raise ConfigError(f"the vertebral CT demo writes its volumes into folders {settings['sequence']!r}; "
                          f"map that folder to a sequence in config `sequences` (e.g. CT: [CT])")
    return settings
