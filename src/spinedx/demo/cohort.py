"""Cohort bookkeeping shared by the two-dimensional demo studies.

Settings checks, patient identifiers, the seeded random streams, the planned file list
and the writing of PNG + labelme pairs. :func:`planned_files` and :func:`write_cohort`
walk patients, sequences and slices in the same order and take the slice count as the
first draw of the same random stream, so the plan is exactly what the generator writes.
Settings are a plain dict whose defaults live in the configuration schema; this module
holds none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# Helpers of the reference phantom, imported in ONE place (spinedx.demo.spine after the
# package restructure): the annotator's rectangle and the labelme 5.x document.
from spinedx.demo import patients as demo_patients
from spinedx.demo.spine import labelme_document, tight_annotator_box
from spinedx.io import atomic_output, write_csv, write_text

_SIZE_KEYS = ("sagittal_height", "sagittal_width", "transverse_size")


@dataclass(frozen=True)
class Layout:
    """What a study is made of: its cohorts, classes and sequences."""

    name: str  # the settings section, for error messages
    tag: int  # keeps this study's random streams apart from other studies'
    cohorts: tuple  # (cohort name, patient identifier prefix), in writing order
    classes: tuple
    sequences: tuple

    def id_pattern(self) -> re.Pattern:
        return demo_patients.id_pattern(prefix for _, prefix in self.cohorts)


@dataclass(frozen=True)
class Identity:
    """Who a patient is; each study's patient record extends it."""

    index: int  # position in writing order: seeds the patient's random streams
    patient_id: str
    diagnosis: str
    cohort: str


def generate(images_dir, cases_csv, settings: dict, layout: Layout, plan, render, columns: list) -> pd.DataFrame:
    """Plan the cohort, write its images and labelme files and its cases table; return
    the table (``columns`` of each planned patient)."""
    checked(settings, layout)
    planned = plan(settings)
    write_cohort(Path(images_dir), settings, layout, planned, render)
    cases = pd.DataFrame([{column: getattr(p, column) for column in columns} for p in planned])
    write_csv(cases, cases_csv)
    return cases


def checked(settings: dict, layout: Layout) -> dict:
    """``settings`` unchanged, or ValueError naming the missing or bad key."""
    required = ("seed", "n_patients", "slices_per_sequence", "sequence_folders", *_SIZE_KEYS)
    missing = [key for key in required if key not in settings]
    if missing:
        raise ValueError(f"{layout.name} settings lack {missing} (defaults come from the configuration schema)")
    counts = settings["n_patients"]
    cohorts = [name for name, _ in layout.cohorts]
    if not isinstance(counts, dict) or set(counts) - set(cohorts):
        raise ValueError(f"{layout.name}.n_patients must map cohorts among {cohorts} to class counts, got {counts}")
    for cohort, per_class in counts.items():
        if (not isinstance(per_class, dict) or set(per_class) - set(layout.classes)
                or any(int(n) < 0 for n in per_class.values())):
            raise ValueError(f"{layout.name}.n_patients.{cohort} must map {list(layout.classes)} "
                             f"to counts >= 0, got {per_class}")
    for key, minimum in (("slices_per_sequence", 1), *((k, 48) for k in _SIZE_KEYS)):
        value = settings[key]
        if len(value) != 2 or not minimum <= value[0] <= value[1]:
            raise ValueError(f"{layout.name}.{key} must be [low, high] with {minimum} <= low <= high, got {value}")
    folders = settings["sequence_folders"]
    missing = set(layout.sequences) - set(folders)
    if missing:
        raise ValueError(f"{layout.name}.sequence_folders lacks {sorted(missing)}")
    bad = [folders[s] for s in layout.sequences
           if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(folders[s])) or ".." in str(folders[s])]
    if bad:
        raise ValueError(f"{layout.name}.sequence_folders must be plain folder names "
                         f"(letters, digits, _ . -), got {bad}")
    if len({folders[s] for s in layout.sequences}) < len(layout.sequences):
        raise ValueError(f"{layout.name}.sequence_folders must name a different folder per sequence, got {folders}")
    return settings


def patients(settings: dict, layout: Layout) -> list[tuple[int, str, str, str]]:
    """``(index, cohort, patient_id, class)`` of every patient, in writing order.

    Classes are shuffled within each cohort, so identifier order says nothing about them.
    """
    assign_rng = np.random.default_rng([settings["seed"], layout.tag, 1])
    rows = []
    for cohort, prefix in layout.cohorts:
        classes = demo_patients.shuffled_classes(settings["n_patients"].get(cohort, {}), layout.classes, assign_rng)
        for number, name in enumerate(classes, start=1):
            rows.append((len(rows), cohort, demo_patients.patient_id(prefix, number), name))
    return rows


def patient_rng(settings: dict, layout: Layout, index: int) -> np.random.Generator:
    return np.random.default_rng([settings["seed"], layout.tag, 3, index])


def _sequence_rng(settings: dict, layout: Layout, index: int, sequence_index: int) -> np.random.Generator:
    return np.random.default_rng([settings["seed"], layout.tag, 2, index, sequence_index])


def _slice_count(rng: np.random.Generator, settings: dict) -> int:
    low, high = settings["slices_per_sequence"]
    return int(rng.integers(low, high + 1))


def planned_files(settings: dict, layout: Layout) -> dict[str, list[str]]:
    """Relative paths (PNG and JSON) that :func:`write_cohort` writes, per sequence."""
    checked(settings, layout)
    files: dict[str, list[str]] = {sequence: [] for sequence in layout.sequences}
    for index, _, patient_id, _ in patients(settings, layout):
        for sequence_index, sequence in enumerate(layout.sequences):
            folder = settings["sequence_folders"][sequence]
            n_slices = _slice_count(_sequence_rng(settings, layout, index, sequence_index), settings)
            for k in range(1, n_slices + 1):
                stem = f"{patient_id}/{folder}/{patient_id}_{folder}_{k}"
                files[sequence] += [f"{stem}.png", f"{stem}.json"]
    return files


def write_cohort(images_dir: Path, settings: dict, layout: Layout, planned: list, render) -> None:
    """Write every patient's images and labelme files.

    ``planned`` holds objects with ``index`` and ``patient_id``; ``render(patient,
    sequence, n_slices, rng)`` yields ``(uint8 image, box or None, shape label)``: a box
    gives one rectangle, None an annotation without shapes (an unremarkable image).
    Patient folders of an earlier run of this study are replaced; nothing else is touched.
    """
    images_dir = Path(images_dir)
    demo_patients.remove_earlier_patients(images_dir, layout.id_pattern())
    for patient in planned:
        for sequence_index, sequence in enumerate(layout.sequences):
            folder = settings["sequence_folders"][sequence]
            rng = _sequence_rng(settings, layout, patient.index, sequence_index)
            n_slices = _slice_count(rng, settings)  # first draw: planned_files repeats it
            out_dir = images_dir / patient.patient_id / folder
            out_dir.mkdir(parents=True)
            for k, (image, box, label) in enumerate(render(patient, sequence, n_slices, rng), start=1):
                stem = f"{patient.patient_id}_{folder}_{k}"
                with atomic_output(out_dir / f"{stem}.png") as partial:
                    Image.fromarray(image).save(partial, format="PNG")
                # An unremarkable image keeps the header of a lesion annotation, without shapes.
                annotation = labelme_document(stem, image.shape, box or (0.0, 0.0, 1.0, 1.0), label, rng)
                if box is None:
                    annotation["shapes"] = []
                write_text(json.dumps(annotation, indent=2) + "\n", out_dir / f"{stem}.json")


def annotator_box(mask: np.ndarray, rng) -> tuple | None:
    """The annotator's rectangle around ``mask`` (None when the mask is empty)."""
    return tight_annotator_box(mask, rng) if mask.any() else None
