"""ISMF-Net-shaped demo study: five intraspinal tumour classes on four MR sequences.

A seeded synthetic study in the format a real one arrives in:
``<patient_id>/<sequence folder>/<patient_id>_<folder>_<k>.png`` (8-bit grayscale) with a
labelme 5.x JSON beside each PNG holding one rectangle around the tumour, and a cases
table ``patient_id, diagnosis, cohort, age, sex, symptom_months, known_primary_cancer``
whose ``diagnosis`` (histopathology) is the label. Cohorts: ``internal`` (centre 1) and
two external centres, ``external_centre2`` and ``external_centre3``, each scanning on
its own mix of machines (centre 3 partly on older low-field ones), i.e. a domain shift.

Sequences: sagittal T1W, T2W and T2 fat-suppressed (T2FS), and axial T2W, a genuinely
different plane: a transverse cut of the thoracic spine through the lesion (vertebral body
or disc, canal, cord, arch, paraspinal muscle, lungs and aorta), drawn from the same 3-D
patient model as the sagittal images (:mod:`spinedx.demo.anatomy`).

What each class looks like, and what in the literature it imitates (radiological reviews
of spinal tumours, e.g. Koeller et al., RadioGraphics 2000 (intramedullary) and 2019
(intradural extramedullary); Shah & Salzman, Int J Surg Oncol 2011 (metastases); and
MRI comparisons of ependymoma and astrocytoma such as Kim et al., Clin Radiol 2014):

- schwannoma: intradural extramedullary, round to oval, sharply marginated, beside the
  cord (which it displaces to the other side), arising at a root near the foramen; T1
  iso/hypointense, T2 clearly hyperintense and heterogeneous, cystic foci (CSF-like) and
  a target sign (darker centre on T2); a dumbbell extension through the widened foramen
  that the axial image shows best.
- meningioma: intradural extramedullary, dural-based with a broad flat attachment
  (dorsal or ventrolateral), iso to the cord on T1 and T2 and homogeneous, sometimes dark
  calcified foci; a dural tail (thin dural thickening running beyond the mass; not in the
  box, as annotators draw around the mass). Older patients, mostly women.
- astrocytoma: intramedullary, eccentric in the cord, long, poorly defined margin (soft
  edge), fusiform cord expansion, moderately T2 hyperintense; cysts and a syrinx less
  often than ependymoma; younger patients.
- ependymoma: intramedullary, central, well defined, symmetric cord expansion,
  heterogeneous T2 hyperintensity, haemosiderin cap (dark T2 rim at the poles), polar
  cysts / syrinx (CSF-like cavity in the cord above or below, not in the box).
- metastasis: vertebral body marrow replacement (dark on T1 against fatty marrow, bright
  on T2FS where marrow fat is suppressed, only mildly brighter on T2) with an epidural
  component compressing the sac and cord; often further foci in other bodies (not in the
  box); older patients, often a known primary cancer, short symptom history.

Overlap, deliberately: every feature is drawn from overlapping distributions, extras
occur in other classes at low rates, an incidental vertebral haemangioma (T1 and T2
bright) may appear in any class, and 30% of patients are atypical: some feature groups
(site, shape, signal, extras) come from a look-alike class (schwannoma <-> meningioma,
astrocytoma <-> ependymoma, metastasis <-> the others), so a small model does clearly
better than chance but not perfectly. Per-patient scanners vary field of view and
resolution, noise, bias field, blur, window, gamma, fat suppression and tissue contrast.

Clinical covariates carry real but partial signal (means after the case series above;
wide overlap): age (astrocytoma youngest, metastasis oldest), sex (meningioma mostly
women), symptom duration in months (metastasis shortest), a known primary cancer (in
about 60% of metastases, 2-5% of the others).

Everything comes from ``settings["seed"]`` through independent per-patient and
per-sequence random streams, so the same settings give byte-identical files. Settings
are a plain dict (keys: seed, n_patients, slices_per_sequence, sequence_folders,
sagittal_height, sagittal_width, transverse_size); their defaults live in the
configuration schema, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.demo import cohort
from spinedx.demo.anatomy import (TISSUE, Blob, CordEffect, Plane, Scanner, Spine, feature_sources,
                                  intradural_beside_cord, intramedullary, render, scanner_park, smooth_field,
                                  vertebral_with_epidural)

CLASSES = ("schwannoma", "meningioma", "astrocytoma", "ependymoma", "metastasis")
SEQUENCES = ("T1W", "T2W", "T2FS", "AX-T2W")
COHORTS = ("internal", "external_centre2", "external_centre3")
CASE_COLUMNS = ["patient_id", "diagnosis", "cohort", "age", "sex", "symptom_months", "known_primary_cancer"]
LAYOUT = cohort.Layout(
    name="ismf_demo", tag=1301, classes=CLASSES, sequences=SEQUENCES,
    cohorts=(("internal", "ISMF-C1-"), ("external_centre2", "ISMF-C2-"), ("external_centre3", "ISMF-C3-")),
)
_PLANE = {"T1W": ("sagittal", "T1"), "T2W": ("sagittal", "T2"), "T2FS": ("sagittal", "T2FS"),
          "AX-T2W": ("transverse", "T2")}

# Scanner park (fixed, so every cohort seed meets the same machines). Centre 1 scans on
# 0-4; centre 2 shares one of them and has two of its own; centre 3 shares one and runs
# three more, two of them older low-field machines. Machines of the external centres only
# differ more in contrast and fat suppression.
_N_SCANNERS = 10
_SCANNER_SEED = 1013
_LOW_FIELD = {8, 9}
_FOREIGN = {5, 6, 7, 8, 9}
_SCANNERS_BY_COHORT = {"internal": (0, 1, 2, 3, 4), "external_centre2": (3, 5, 6), "external_centre3": (4, 7, 8, 9)}

# Clinical covariates: age mean/sd, share of men, median symptom months, known primary.
_AGE = {"schwannoma": (48, 14), "meningioma": (57, 13), "astrocytoma": (33, 16), "ependymoma": (43, 14),
        "metastasis": (61, 11)}
_AGE_RANGE = (8, 88)
_MALE_SHARE = {"schwannoma": 0.52, "meningioma": 0.22, "astrocytoma": 0.55, "ependymoma": 0.55, "metastasis": 0.6}
_SYMPTOM_MONTHS = {"schwannoma": 12.0, "meningioma": 10.0, "astrocytoma": 6.0, "ependymoma": 9.0, "metastasis": 1.5}
_PRIMARY_CANCER = {"schwannoma": 0.04, "meningioma": 0.05, "astrocytoma": 0.02, "ependymoma": 0.03,
                   "metastasis": 0.62}

_ATYPICAL_SHARE = 0.30
_GROUPS = ("site", "shape", "signal", "extras")
_LOOKALIKES = {
    "schwannoma": {"meningioma": 0.6, "ependymoma": 0.15, "metastasis": 0.25},
    "meningioma": {"schwannoma": 0.7, "metastasis": 0.3},
    "astrocytoma": {"ependymoma": 0.8, "schwannoma": 0.2},
    "ependymoma": {"astrocytoma": 0.75, "schwannoma": 0.25},
    "metastasis": {"schwannoma": 0.3, "meningioma": 0.4, "astrocytoma": 0.3},
}
# Shape: half length range (mm), girth (share of the room the site offers), margin
# softness (pixels), superellipse exponent.
_SHAPE = {
    "schwannoma": ((7, 13), (0.6, 0.85), (0.6, 1.0), 2.0),
    "meningioma": ((8, 15), (0.5, 0.75), (0.6, 1.0), 2.2),
    "astrocytoma": ((18, 38), (0.55, 0.8), (2.5, 4.5), 2.0),
    "ependymoma": ((13, 26), (0.7, 0.9), (0.8, 1.3), 2.5),
    "metastasis": ((7, 11), (0.6, 0.9), (1.2, 2.0), 2.2),
}
# Signal: T1 relative to the cord, T2 level, heterogeneity, each (mean, sd).
_SIGNAL = {
    "schwannoma": ((0.88, 0.06), (0.78, 0.07), (0.18, 0.05)),
    "meningioma": ((1.00, 0.06), (0.46, 0.06), (0.05, 0.02)),
    "astrocytoma": ((0.86, 0.06), (0.64, 0.07), (0.10, 0.03)),
    "ependymoma": ((0.95, 0.07), (0.70, 0.07), (0.22, 0.05)),
    "metastasis": ((0.58, 0.07), (0.56, 0.07), (0.12, 0.04)),
}
_EXTRAS = ("cysts", "target", "dumbbell", "tail", "calcification", "cap", "syrinx", "bone_foci")
_EXTRA_P = {
    "schwannoma": (0.55, 0.35, 0.40, 0.08, 0.02, 0.08, 0.03, 0.03),
    "meningioma": (0.05, 0.03, 0.05, 0.60, 0.25, 0.02, 0.03, 0.03),
    "astrocytoma": (0.25, 0.02, 0.00, 0.00, 0.02, 0.08, 0.20, 0.03),
    "ependymoma": (0.25, 0.02, 0.02, 0.00, 0.03, 0.60, 0.50, 0.03),
    "metastasis": (0.05, 0.10, 0.08, 0.05, 0.02, 0.03, 0.03, 0.60),
}
_HAEMANGIOMA_P = 0.12
_CSF_LIKE = (0.12, 0.95, 0.93)
_HAEMOSIDERIN = (0.28, 0.08, 0.08)
_CALCIFIED = (0.10, 0.08, 0.08)
_ANNOTATION_LABELS = ("tumor", "tumor", "tumour", "lesion", "mass")


@dataclass(frozen=True)
class _Patient(cohort.Identity):
    age: int
    sex: str
    symptom_months: float
    known_primary_cancer: int
    scanner: Scanner
    spine: Spine
    torso: tuple  # (muscle thickness, subcutaneous fat, aorta centre z) in mm
    blobs: tuple
    cord_effects: tuple
    sagittal_shape: tuple  # (height, width) as displayed
    transverse_size: int
    label: str


def planned_files(settings: dict) -> dict[str, list[str]]:
    """Relative paths (PNG and JSON) that :func:`generate_demo_cohort` writes, per
    sequence, computed without rendering."""
    return cohort.planned_files(settings, LAYOUT)


def generate_demo_cohort(images_dir: str | Path, cases_csv: str | Path, settings: dict) -> pd.DataFrame:
    """Write the study's images, labelme JSONs and cases table; return the table.

    Patient folders of an earlier run (``ISMF-C<centre>-###``) are replaced; nothing else
    in ``images_dir`` is touched.
    """
    return cohort.generate(images_dir, cases_csv, settings, LAYOUT, plan_cohort, _render_sequence, CASE_COLUMNS)


def plan_cohort(settings: dict) -> list[_Patient]:
    """Every patient's identity, covariates, scanner, anatomy and tumour (no rendering)."""
    cohort.checked(settings, LAYOUT)
    scanners = scanner_park(_SCANNER_SEED, _N_SCANNERS, _LOW_FIELD, _FOREIGN)
    return [_draw_patient(cohort.patient_rng(settings, LAYOUT, index), index, patient_id, diagnosis, name,
                          scanners, settings)
            for index, name, patient_id, diagnosis in cohort.patients(settings, LAYOUT)]


def _draw_patient(rng, index, patient_id, diagnosis, cohort_name, scanners, settings) -> _Patient:
    mean, sd = _AGE[diagnosis]
    age = int(np.clip(round(rng.normal(mean, sd)), *_AGE_RANGE))
    sex = "M" if rng.random() < _MALE_SHARE[diagnosis] else "F"
    symptom_months = round(float(np.clip(_SYMPTOM_MONTHS[diagnosis] * np.exp(rng.normal(0, 0.9)), 0.2, 120)), 1)
    known_primary_cancer = int(rng.random() < _PRIMARY_CANCER[diagnosis])
    scanner = scanners[int(rng.choice(_SCANNERS_BY_COHORT[cohort_name]))]
    low, high = settings["sagittal_height"]
    sagittal_shape = (int(rng.integers(low, high + 1)),
                      int(rng.integers(settings["sagittal_width"][0], settings["sagittal_width"][1] + 1)))
    transverse_size = int(rng.integers(settings["transverse_size"][0], settings["transverse_size"][1] + 1))
    spine = _draw_spine(rng, age)
    torso = (rng.uniform(35, 50), rng.uniform(6, 22) + (5 if sex == "F" else 0), rng.uniform(8, 18))
    sources = feature_sources(rng, diagnosis, _GROUPS, _LOOKALIKES, _ATYPICAL_SHARE)
    blobs, effects = _draw_tumour(rng, sources, spine)
    label = str(rng.choice(_ANNOTATION_LABELS))
    return _Patient(index, patient_id, diagnosis, cohort_name, age, sex, symptom_months, known_primary_cancer,
                    scanner, spine, torso, blobs, effects, sagittal_shape, transverse_size, label)


def _draw_spine(rng, age: int) -> Spine:
    """Mid-thoracic column; discs desiccate with age."""
    pitch = rng.normal(27.0, 1.5)
    disc = rng.uniform(2.0, 3.0)
    levels = tuple(float(k * pitch + rng.normal(0, 0.4)) for k in range(-4, 5))
    degenerated = tuple(bool(rng.random() < min(0.05 + max(age - 30, 0) / 110, 0.7)) for _ in levels)
    return Spine(
        levels=levels, body_half_length=pitch / 2 - disc,
        disc_half=tuple(disc * (0.75 if d else 1.0) for d in degenerated),
        body_depth=rng.uniform(26, 32), body_half_width=rng.uniform(14, 18),
        canal=(rng.uniform(6.0, 7.2), rng.uniform(7.2, 8.5)), epidural=rng.uniform(1.0, 1.6),
        dorsal_fat=rng.uniform(1.5, 3.0), cord=(rng.uniform(3.6, 4.3), rng.uniform(4.4, 5.2)),
        cord_offset=-rng.uniform(0.3, 1.2), arch=rng.uniform(4.0, 5.5), spinous_length=rng.uniform(30, 40),
        spinous_lean=rng.uniform(0.35, 0.7), transverse_length=rng.uniform(18, 26), degenerated=degenerated,
        curvature=-rng.uniform(2e-4, 1e-3), apex=rng.normal(0, 15),
    )


def _draw_tumour(rng, sources: dict, spine: Spine) -> tuple[tuple, tuple]:
    """The tumour's blobs (main part first) and its mass effect on the cord."""
    (length_low, length_high), girth_range, edge_range, exponent = _SHAPE[sources["shape"]]
    half_length = rng.uniform(length_low, length_high)
    girth = rng.uniform(*girth_range)
    edge = rng.uniform(*edge_range)
    parts, effects = _site(rng, sources["site"], spine, half_length, girth)
    (t1_mean, t1_sd), (t2_mean, t2_sd), (het_mean, het_sd) = _SIGNAL[sources["signal"]]
    t1 = TISSUE["cord"][0] * rng.normal(t1_mean, t1_sd)
    t2 = rng.normal(t2_mean, t2_sd)
    signal = (max(t1, 0.05), max(t2, 0.1), max(t2, 0.1) * rng.uniform(0.92, 1.0))
    texture = abs(rng.normal(het_mean, het_sd))
    blobs = [Blob(centre, half, signal, exponent, edge, texture, boxed=boxed, in_sac=in_sac)
             for centre, half, in_sac, boxed in parts]
    main = blobs[0]
    extras = {name: rng.random() < p for name, p in zip(_EXTRAS, _EXTRA_P[sources["extras"]])}
    blobs += _extra_blobs(rng, extras, main, signal, spine, effects)
    if rng.random() < _HAEMANGIOMA_P:
        level = spine.levels[int(rng.integers(len(spine.levels)))]
        blobs.append(Blob((level + rng.normal(0, 3), spine.body_centre_u + rng.normal(0, 3), rng.normal(0, 4)),
                          tuple(rng.uniform(3, 6, size=3)), (0.85, 0.75, 0.45), edge=1.0, boxed=False))
    return tuple(blobs), tuple(effects)


def _site(rng, site: str, spine: Spine, half_length: float, girth: float):
    """Where the tumour grows: ``[(centre, half, in_sac, boxed)]`` and cord effects."""
    cu, cz = spine.canal
    ru, rz = spine.cord
    level = int(rng.integers(3, 6))  # one of the middle levels, so the FOV shows both ends
    if site == "schwannoma":  # from a root near the foramen
        a = spine.disc_centre(level) + rng.normal(0, 3)
        return intradural_beside_cord(spine, a, float(rng.choice([-1.0, 1.0])), rng.uniform(-0.3, 0.3),
                                      half_length, girth)
    if site == "meningioma":  # dural-based: a broad base on the dura, half inside the sac
        a = spine.levels[level] + rng.normal(0, 6)
        thickness = girth * 1.2 * cu
        if rng.random() < 0.55:  # dorsal
            centre, half = (a, cu, rng.normal(0, 1.0)), (half_length, thickness, 0.9 * cz)
            effect = CordEffect(a, half_length + 3, (-0.6 * thickness, 0.0), (0.75, 1.05))
        else:  # ventrolateral
            side = float(rng.choice([-1.0, 1.0]))
            centre, half = (a, -0.45 * cu, side * cz), (half_length, 0.75 * cu, thickness)
            effect = CordEffect(a, half_length + 3, (0.3 * thickness, -side * 0.6 * thickness), (0.9, 0.75))
        return [(centre, half, True, True)], [effect]
    if site == "astrocytoma":  # eccentric, poorly defined, fusiform expansion
        angle = rng.uniform(0, 2 * np.pi)
        return intramedullary(spine, spine.levels[level] + rng.normal(0, 8),
                              (0.3 * ru * np.cos(angle), 0.3 * rz * np.sin(angle)), half_length,
                              0.85 * girth, 1.2 + 0.5 * girth, 1.25 * half_length)
    if site == "ependymoma":  # central, symmetric expansion
        return intramedullary(spine, spine.levels[level] + rng.normal(0, 8), tuple(rng.normal(0, 0.2, size=2)),
                              half_length, 0.9 * girth, 1.3 + 0.5 * girth, 1.15 * half_length)
    if site == "metastasis":
        return vertebral_with_epidural(spine, spine.levels[level] + rng.normal(0, 1.5),
                                       rng.normal(0, 0.15) * spine.body_half_width, half_length, girth,
                                       rng.uniform(2.0, 4.5) * girth)
    raise ValueError(f"unknown site {site!r}")


def _extra_blobs(rng, extras: dict, main: Blob, signal: tuple, spine: Spine, effects: list) -> list:
    """Class-typical extras around the main part (``effects`` may grow)."""
    (a, u, z), (ha, hu, hz) = main.centre, main.half
    cu, cz = spine.canal
    ru, rz = spine.cord
    blobs = []
    if extras["dumbbell"]:  # through the foramen: a waist and an extraforaminal lobe
        side = np.sign(z) or 1.0
        lateral = cz + spine.epidural + spine.arch / 2
        blobs.append(Blob((a, -0.25 * cu, side * lateral), (min(ha, 4.5), min(hu, 3.5), spine.arch / 2 + 3.0),
                          signal, main.exponent, main.edge, main.texture))
        radius = rng.uniform(6, 12)
        blobs.append(Blob((a, -0.3 * cu - 2.0, side * (lateral + spine.arch / 2 + 0.8 * radius)),
                          (0.9 * ha, 0.9 * radius, radius), signal, main.exponent, main.edge, main.texture))
    for _ in range(int(rng.integers(1, 4)) if extras["cysts"] else 0):
        offset = rng.uniform(-0.45, 0.45, size=3) * (ha, hu, hz)
        radius = rng.uniform(0.2, 0.35) * min(hu, hz)
        blobs.append(Blob(tuple(np.add((a, u, z), offset)), (radius * 1.3, radius, radius), _CSF_LIKE, edge=0.7))
    if extras["target"]:  # fibrous centre, darker on T2
        blobs.append(Blob((a, u, z), (0.5 * ha, 0.5 * hu, 0.5 * hz), (signal[0], 0.55 * signal[1], 0.55 * signal[2]),
                          edge=2.5))
    for _ in range(int(rng.integers(1, 4)) if extras["calcification"] else 0):
        offset = rng.uniform(-0.5, 0.5, size=3) * (ha, hu, hz)
        blobs.append(Blob(tuple(np.add((a, u, z), offset)), tuple(rng.uniform(0.8, 1.8, size=3)), _CALCIFIED,
                          edge=0.6))
    if extras["cap"]:  # haemosiderin at the poles
        for pole in (-1, 1):
            blobs.append(Blob((a + pole * 0.88 * ha, u, z), (0.16 * ha, 0.85 * hu, 0.85 * hz), _HAEMOSIDERIN,
                              edge=1.0))
    if extras["tail"]:  # dural thickening running on beyond the mass
        angle = np.arctan2(z / cz, u / cu)
        dura = (cu * np.cos(angle), cz * np.sin(angle))
        thin = (1.2, 0.5 * hz) if abs(np.cos(angle)) > abs(np.sin(angle)) else (0.5 * hu, 1.2)
        blobs.append(Blob((a, *dura), (2.0 * ha, *thin), signal, edge=1.0, boxed=False, in_sac=True))
    if extras["syrinx"]:  # CSF-like cavity in the cord, above and/or below
        for pole in [p for p in (-1, 1) if rng.random() < 0.7] or [1]:
            length = rng.uniform(10, 30)
            centre = (a + pole * (ha + length - 2.0), spine.cord_offset, 0.0)
            blobs.append(Blob(centre, (length, 0.45 * ru, 0.5 * rz), _CSF_LIKE, edge=0.8, boxed=False))
            effects.append(CordEffect(centre[0], length, (0.0, 0.0), (1.12, 1.12)))
    if extras["bone_foci"]:  # further deposits in other bodies
        others = [level for level in spine.levels if abs(level - a) > spine.body_half_length]
        for level in rng.choice(others, size=int(rng.integers(1, 3)), replace=False):
            blobs.append(Blob((level + rng.normal(0, 3), spine.body_centre_u + rng.normal(0, 3), rng.normal(0, 5)),
                              tuple(rng.uniform(3, 7, size=3)), signal, edge=1.5, texture=main.texture,
                              boxed=False))
    return blobs


def _render_sequence(patient: _Patient, sequence: str, n_slices: int, rng):
    """Slices of one sequence through the tumour's main part: ``(image, box, label)``."""
    kind, contrast = _PLANE[sequence]
    main = patient.blobs[0]
    (a, _, z), (ha, _, hz) = main.centre, main.half
    if main.in_sac:  # aim at the part inside the dural sac, the only part painted
        cz = patient.spine.canal[1]
        low, high = max(z - hz, -cz), min(z + hz, cz)
        z, hz = (low + high) / 2, (high - low) / 2
    if kind == "sagittal":
        height, width = patient.sagittal_shape
        pixel = rng.uniform(150, 185) * patient.scanner.fov_scale / height
        top = a - rng.uniform(0.35, 0.65) * height * pixel
        left = -rng.uniform(0.40, 0.52) * width * pixel
        positions, tilt, shape = z, rng.normal(0, 0.02), (height, width)
        spacing = min(3.0, 1.1 * hz / max(n_slices - 1, 1))
    else:
        size = patient.transverse_size
        pixel = rng.uniform(110, 140) * patient.scanner.fov_scale / size
        top = -rng.uniform(0.45, 0.58) * size * pixel
        left = -rng.uniform(0.45, 0.55) * size * pixel
        positions, tilt, shape = a, rng.normal(0, 0.05), (size, size)
        spacing = min(4.0, 1.2 * ha / max(n_slices - 1, 1))
    for k in range(n_slices):
        position = positions + (k - (n_slices - 1) / 2) * spacing + rng.normal(0, 0.3)
        jitter = rng.normal(0, 1.0, size=2)
        plane = Plane(kind, position, tilt, top + jitter[0], left + jitter[1], pixel, shape)
        image, mask = render(plane, patient.spine, patient.blobs, patient.cord_effects, contrast, patient.scanner,
                             _torso(patient), rng)
        box = cohort.annotator_box(mask, rng)
        if box is None:
            raise AssertionError(f"{patient.patient_id} {sequence}: the slice missed the tumour")  # a planning bug
        yield image, box, patient.label


def _torso(patient: _Patient):
    """Thoracic soft tissue: paraspinal muscle, subcutaneous fat, mediastinum, lungs."""
    spine = patient.spine
    muscle_depth, fat_depth, aorta_z = patient.torso
    cu, cz = spine.canal
    back = cu + spine.epidural + spine.dorsal_fat + spine.arch
    front = -(cu + spine.epidural + spine.body_depth)

    def paint(image, g, signal, rng):
        px = g.pixel_mm
        skin = back + muscle_depth + fat_depth - 0.004 * g.z ** 2
        inside = np.clip(0.5 + (skin - g.u) / px, 0, 1)
        image += inside * (signal("fat") * (1 + 0.05 * smooth_field(rng, g.shape, 12)) - image)
        # Erector spinae: one belly each side of the spinous processes.
        muscle = signal("muscle") * (1 + 0.08 * smooth_field(rng, g.shape, 16))
        depth = 0.5 * (skin - fat_depth + cu)
        for side in (-1, 1):
            belly = 1 - np.hypot((g.u - back + depth - muscle_depth) / depth, (g.z - side * 27.0) / 27.0)
            image += np.clip(0.5 + 10 * belly / px, 0, 1) * inside * (muscle - image)
        # Lungs wrap round the vertebral body up to the ribs; the aorta lies left of it.
        for side in (-1, 1):
            lateral = g.z - side * (spine.body_half_width + 52.0)
            lung = 1 - np.hypot((g.u - front - 4.0) / (8.0 - front), lateral / 48.0)
            image += np.clip(0.5 + 20 * lung / px, 0, 1) * (signal("lung") - image)
        aorta = 11.0 - np.hypot(g.u - (front - 13.0), g.z - aorta_z)
        image += np.clip(0.5 + aorta / px, 0, 1) * (signal("vessel") - image)
        oesophagus = 1.0 - np.hypot((g.u - (front - 5.0)) / 4.0, (g.z + 3.0) / 6.0)
        image += np.clip(0.5 + 4.0 * oesophagus / px, 0, 1) * (signal("muscle") - image)

    return paint
