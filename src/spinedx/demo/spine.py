"""The built-in spine study: a seeded synthetic cohort in exactly the format a real user brings.

The demo exercises the real ingestion code, so it writes what a real study folder holds:
``<patient_id>/<sequence folder>/<patient_id>_<folder>_<k>.png`` (8-bit grayscale sagittal
slices) with a labelme 5.x JSON next to each PNG (one rectangle around the tumour), and a
cases table ``patient_id,diagnosis,cohort,age,sex``.

Images are sagittal lumbosacral phantoms drawn in millimetres and sampled on each
patient's pixel grid: vertebral bodies and discs along a lordotic curve, the thecal sac
with the conus, filum terminale and cauda equina, epidural fat and veins, posterior
elements, paraspinal muscle and subcutaneous fat, plus one intradural tumour. Tissue
intensities follow T1, T2 and contrast-enhanced T1 (CE-T1) contrast. Myxopapillary
ependymoma (label 0) and schwannoma (label 1) differ in shape, T1 signal, T2 texture
(hemosiderin caps vs cystic foci and target sign) and enhancement pattern, but every
patient draws these features from overlapping class distributions and about 30% of
patients are atypical (some feature groups drawn from the other class), so a small CNN
does clearly better than chance without being perfect. Per-patient "scanners" (field of
view, resolution, noise, bias field, window, gamma, fat saturation) add domain variation,
and the external cohort is mostly scanned on other machines than the internal one.

Everything is derived from ``settings["seed"]`` through independent per-patient random
streams, so the same settings give byte-identical files. Which files a cohort has is
known without rendering (:mod:`spinedx.demo.plan`, what the workflow imports).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from spinedx.demo.patients import (TWO_COHORTS, patient_id, remove_earlier_patients, shuffled_classes,
                                   two_cohort_folders)
from spinedx.demo.plan import DIAGNOSES, SEQUENCES, checked_settings, sequence_rng
from spinedx.io import atomic_output, write_csv, write_text

CASE_COLUMNS = ["patient_id", "diagnosis", "cohort", "age", "sex"]

# Table 1 of Gu et al. (BMC Cancer 2024): age mean/sd and share of men per diagnosis.
_AGE = {"ependymoma": (50.0, 21.0), "schwannoma": (68.0, 12.0)}
_AGE_RANGE = (12, 90)
_MALE_SHARE = {"ependymoma": 24 / 84, "schwannoma": 56 / 84}

# Relative signal of each tissue on (T1, T2, CE-T1) before scanner effects; the scanner's
# window maps them to grey levels. Values follow textbook lumbar MR appearance.
_TISSUE = {
    "air": (0.0, 0.0, 0.0),
    "fat": (0.95, 0.80, 0.93),
    "muscle": (0.35, 0.28, 0.38),
    "marrow": (0.62, 0.45, 0.66),
    "cortex": (0.06, 0.05, 0.06),  # cortical bone and ligaments: no signal
    "annulus": (0.33, 0.24, 0.36),
    "nucleus": (0.40, 0.85, 0.42),  # healthy disc: bright on T2
    "nucleus_degenerated": (0.34, 0.30, 0.36),  # desiccated disc: dark on T2
    "csf": (0.10, 1.00, 0.12),
    "cord": (0.42, 0.38, 0.44),
    "vein": (0.30, 0.60, 0.62),  # epidural veins enhance mildly
    "flow_void": (0.08, 0.08, 0.55),  # aorta/IVC: dark, bright after contrast
    "bowel": (0.45, 0.55, 0.50),
}

# Scanners: internal patients are scanned on the first six, external ones on the last six,
# so external testing sees a partly shifted domain as a real second hospital would. The
# scanner park is fixed (its own seed), so every cohort seed meets the same machines.
_N_SCANNERS = 9
_SCANNER_SEED = 1729
_SCANNERS_BY_COHORT = {"internal": range(0, 6), "external": range(3, 9)}

_ATYPICAL_SHARE = 0.30
_FEATURE_GROUPS = ("shape", "t1", "t2", "ce")
_ANNOTATION_LABELS = ("tumor", "tumor", "lesion", "Tumour")
# Opposite corners in the order annotators drag them: mostly top-left first.
_CORNER_ORDERS = (("tl", "br"), ("br", "tl"), ("tr", "bl"), ("bl", "tr"))
_CORNER_ORDER_P = (0.55, 0.2, 0.15, 0.1)
_SLICE_SPACING_MM = 4.0
_LABELME_VERSION = "5.4.1"


@dataclass(frozen=True)
class _Scanner:
    fov_mm: float  # typical vertical field of view of its protocol
    x_center: float  # where the canal sits across the image width (fraction)
    brightness: float
    gamma: float
    noise: float  # Rician noise sd relative to the brightest tissue
    bias: float  # amplitude of the smooth multiplicative bias field (log scale)
    blur_px: float
    downsample: float  # acquisition matrix coarser than the stored image by this factor
    window_pct: float  # upper percentile that maps to white
    ce_fatsat: bool
    contrast: dict  # sequence -> tissue -> multiplicative factor


@dataclass(frozen=True)
class _Anatomy:
    level_pitch: float  # one vertebral body plus disc (mm)
    body_share: float  # body height as a fraction of the pitch
    body_depth: float  # anteroposterior depth of the bodies
    l5_y: float  # centre of L5 along the image vertical (mm from the FOV top)
    x0: float  # canal centre at the lordotic apex (mm from the FOV left)
    lordosis: float  # curvature of the lumbar spine
    sacral_tilt: float  # curvature below S1
    canal: float  # thecal sac half-width
    conus_y: float
    cord_half: float
    cord_offset: float
    filum_half: float
    filum_offset: float
    subcut_fat: float  # subcutaneous fat thickness
    spinous_length: float
    degenerated: tuple  # per disc from T11/T12 to L5/S1, True when desiccated
    roots: tuple  # cauda equina roots as (offset at the conus, slope, half-width)


@dataclass(frozen=True)
class _Lesion:
    y: float  # centre (mm)
    u: float  # offset from the canal centre line (mm, + posterior)
    half_length: float
    half_width: float
    half_depth: float  # left-right half-extent: sets how adjacent slices see it
    exponent: float  # superellipse exponent: 2 = ellipse, larger = blunt "sausage"
    lobulation: float
    lobe_phase: float
    edge_px: float  # margin softness: schwannomas are sharply circumscribed
    t1_ratio: float  # T1 signal relative to the cord
    t2_level: float
    t2_heterogeneity: float
    cap: float  # hemosiderin cap strength at the poles
    target: float  # T2 target sign: darker centre
    cysts: tuple  # (v, u, depth, radius) in units of half_length/half_width/half_depth
    ce_level: float
    ce_heterogeneity: float
    ce_rim: float  # enhancement kept in the centre: 1 homogeneous, low = rim enhancement
    texture: tuple  # two 2-D grids of smooth noise, blended across slices


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_id: str
    diagnosis: str
    cohort: str
    age: int
    sex: str
    height: int
    width: int
    fov_mm: float  # vertical field of view: sets the pixel size
    scanner: _Scanner
    anatomy: _Anatomy
    lesion: _Lesion
    label: str


def generate_demo_cohort(images_dir: str | Path, cases_csv: str | Path, settings: dict) -> pd.DataFrame:
    """Write the demo cohort's images, labelme JSONs and cases table; return the table.

    ``settings`` holds the keys of :func:`spinedx.demo.plan.default_settings`; missing keys
    take the schema's defaults (other keys, e.g. a config's ``enabled``, are ignored).
    Patient folders of an earlier demo run (``DEMO-I###``/``DEMO-E###``) are replaced, so
    no stale slice survives into the new cohort; nothing else in ``images_dir`` is touched.
    """
    settings = checked_settings(settings)
    images_dir, cases_csv = Path(images_dir), Path(cases_csv)
    patients = _plan_cohort(settings)
    remove_earlier_patients(images_dir, two_cohort_folders())
    low, high = settings["slices_per_sequence"]
    for patient in patients:
        for sequence_index, sequence in enumerate(SEQUENCES):
            folder = settings["sequence_folders"][sequence]
            rng = sequence_rng(settings, patient.index, sequence_index)
            n_slices = int(rng.integers(low, high + 1))  # first draw: the planner repeats it
            out_dir = images_dir / patient.patient_id / folder
            out_dir.mkdir(parents=True)
            for k, (image, _, box) in enumerate(_render_sequence(patient, sequence, n_slices, rng), start=1):
                stem = f"{patient.patient_id}_{folder}_{k}"
                with atomic_output(out_dir / f"{stem}.png") as partial:
                    Image.fromarray(image).save(partial, format="PNG")
                annotation = labelme_document(stem, image.shape, box, patient.label, rng)
                write_text(json.dumps(annotation, indent=2) + "\n", out_dir / f"{stem}.json")
    cases = pd.DataFrame(
        [(p.patient_id, p.diagnosis, p.cohort, p.age, p.sex) for p in patients], columns=CASE_COLUMNS
    )
    write_csv(cases, cases_csv)
    return cases


def _plan_cohort(settings: dict) -> list[_Patient]:
    """Every patient's identity, demographics, scanner, anatomy and lesion."""
    seed = settings["seed"]
    scanner_rng = np.random.default_rng(_SCANNER_SEED)
    scanners = [draw_scanner(scanner_rng, i) for i in range(_N_SCANNERS)]
    assign_rng = np.random.default_rng([seed, 1])
    patients = []
    for cohort, key, prefix in TWO_COHORTS:
        for number, diagnosis in enumerate(shuffled_classes(settings[key], DIAGNOSES, assign_rng), start=1):
            index = len(patients)
            rng = np.random.default_rng([seed, 3, index])
            patients.append(_draw_patient(rng, index, patient_id(prefix, number), diagnosis, cohort, scanners,
                                          settings))
    return patients


def _draw_patient(rng, index, patient_id, diagnosis, cohort, scanners, settings) -> _Patient:
    mean, sd = _AGE[diagnosis]
    age = int(np.clip(round(rng.normal(mean, sd)), *_AGE_RANGE))
    sex = "M" if rng.random() < _MALE_SHARE[diagnosis] else "F"
    height = int(rng.integers(settings["image_height"][0], settings["image_height"][1] + 1))
    width = int(rng.integers(settings["image_width"][0], settings["image_width"][1] + 1))
    scanner = scanners[int(rng.choice(list(_SCANNERS_BY_COHORT[cohort])))]
    fov = scanner.fov_mm * rng.uniform(0.95, 1.05)
    anatomy = _draw_anatomy(rng, age, sex, fov, fov * width / height, scanner)
    # Atypical patients take some feature groups from the other class: the deliberate
    # class overlap that keeps the task from being trivially separable.
    other = DIAGNOSES[1 - DIAGNOSES.index(diagnosis)]
    swapped = set()
    if rng.random() < _ATYPICAL_SHARE:
        while not swapped:
            swapped = {g for g in _FEATURE_GROUPS if rng.random() < 0.5}
    sources = {g: other if g in swapped else diagnosis for g in _FEATURE_GROUPS}
    lesion = _draw_lesion(rng, sources, anatomy, fov)
    label = str(rng.choice(_ANNOTATION_LABELS))
    return _Patient(index, patient_id, diagnosis, cohort, age, sex, height, width, fov, scanner, anatomy, lesion,
                    label)


def draw_scanner(rng, index: int) -> _Scanner:
    """One scanner of the demo's fleet: field of view, matrix, noise, bias and per-tissue contrast."""
    contrast = {s: {t: float(rng.normal(1.0, 0.06)) for t in _TISSUE} for s in SEQUENCES}
    return _Scanner(
        fov_mm=rng.uniform(250, 310),
        x_center=rng.uniform(0.5, 0.6),
        brightness=rng.uniform(0.85, 1.15),
        gamma=rng.uniform(0.8, 1.25),
        noise=rng.uniform(0.015, 0.04),
        bias=rng.uniform(0.08, 0.3),
        blur_px=rng.uniform(0.0, 1.0),
        downsample=float(rng.choice([1.0, 1.0, 1.25, 1.5, 1.8])),
        window_pct=rng.uniform(99.0, 99.8),
        # Fat-saturated CE-T1 on every third machine, so both cohorts have some (a protocol
        # difference seen by one cohort only would be a confound, not a domain shift).
        ce_fatsat=index % 3 == 1,
        contrast=contrast,
    )


def _draw_anatomy(rng, age, sex, fov_y, fov_x, scanner) -> _Anatomy:
    pitch = rng.normal(35.0, 2.0)
    canal = rng.uniform(6.0, 7.5)
    l5_y = fov_y * rng.uniform(0.64, 0.72)
    conus_y = l5_y - 3.5 * pitch + rng.normal(0.0, 6.0)  # about the L1-L2 disc
    # Disc desiccation grows with age and towards the lower levels (T11/T12 .. L5/S1).
    degenerated = tuple(bool(rng.random() < min(0.05 + max(age - 20, 0) / 100 + 0.06 * k, 0.9)) for k in range(7))
    roots = tuple(
        (rng.uniform(-0.3, 0.85) * canal, rng.normal(0.0, 0.03), rng.uniform(0.35, 0.6))
        for _ in range(int(rng.integers(3, 6)))
    )
    return _Anatomy(
        level_pitch=pitch,
        body_share=rng.uniform(0.72, 0.78),
        body_depth=rng.uniform(32.0, 38.0),
        l5_y=l5_y,
        x0=fov_x * scanner.x_center + rng.normal(0.0, 4.0),
        lordosis=rng.uniform(2e-4, 7e-4),
        sacral_tilt=rng.uniform(2e-3, 4e-3),
        canal=canal,
        conus_y=conus_y,
        cord_half=rng.uniform(3.5, 4.5),
        cord_offset=0.15 * canal,
        filum_half=rng.uniform(0.6, 1.0),
        filum_offset=rng.uniform(-0.2, 0.3) * canal,
        subcut_fat=rng.uniform(8.0, 28.0) + (6.0 if sex == "F" else 0.0),
        spinous_length=rng.uniform(26.0, 34.0),
        degenerated=degenerated,
        roots=roots,
    )


def _draw_lesion(rng, sources: dict, anatomy: _Anatomy, fov_y: float) -> _Lesion:
    """One tumour; each feature group follows the class named in ``sources``.

    Ependymomas: elongated blunt "sausage" over more than one level, T1 iso- to
    hyperintense to the cord (mucin), heterogeneous bright T2 with hemosiderin caps,
    intense homogeneous enhancement. Schwannomas: round/oval and sharp, T1 iso/hypointense, T2 with cystic
    foci or a target sign, rim or heterogeneous enhancement. The spreads overlap.
    """
    ependymoma = {g: sources[g] == "ependymoma" for g in _FEATURE_GROUPS}
    canal = anatomy.canal
    if ependymoma["shape"]:
        half_width = canal * rng.uniform(0.55, 0.9)
        ratio = np.clip(np.exp(rng.normal(np.log(3.5), 0.25)), 1.5, 6.0)
        exponent, lobulation, edge = rng.uniform(2.3, 3.2), rng.uniform(0.0, 0.06), rng.uniform(0.9, 1.6)
        offset = rng.normal(0.0, 0.08) * canal  # grows along the filum, in the midline
    else:
        half_width = canal * rng.uniform(0.8, 1.2)
        ratio = np.clip(np.exp(rng.normal(np.log(1.3), 0.2)), 1.0, 2.5)
        exponent, lobulation, edge = rng.uniform(1.9, 2.2), rng.uniform(0.0, 0.03), rng.uniform(0.5, 0.9)
        offset = rng.normal(0.0, 0.3) * canal  # arises from a nerve root, often eccentric
    half_length = half_width * ratio
    # Below the conus and above S1, and wholly inside the field of view even after shifts.
    top = max(anatomy.conus_y + 0.3 * half_length, half_length + 15.0)
    bottom = min(anatomy.l5_y + 0.5 * anatomy.level_pitch - 0.5 * half_length, fov_y - half_length - 15.0)
    y = rng.uniform(top, bottom) if bottom > top else 0.5 * (top + bottom)

    t1_ratio = rng.normal(1.3, 0.12) if ependymoma["t1"] else rng.normal(0.85, 0.10)
    cysts = ()
    if ependymoma["t2"]:
        t2_level, t2_het = rng.normal(0.62, 0.07), abs(rng.normal(0.28, 0.06))
        cap = rng.uniform(0.6, 0.95) if rng.random() < 0.75 else 0.0
        target = 0.0
        if rng.random() < 0.15:
            cysts = _draw_cysts(rng, 1)
    else:
        t2_level, t2_het = rng.normal(0.72, 0.07), abs(rng.normal(0.10, 0.04))
        cap = rng.uniform(0.3, 0.6) if rng.random() < 0.08 else 0.0
        target = rng.uniform(0.2, 0.4) if rng.random() < 0.35 else 0.0
        if rng.random() < 0.75:
            cysts = _draw_cysts(rng, int(rng.integers(1, 4)))
    if ependymoma["ce"]:
        ce_level, ce_het, ce_rim = rng.normal(0.60, 0.08), abs(rng.normal(0.05, 0.02)), 1.0
    else:
        ce_level = rng.normal(0.40, 0.10)
        pattern = rng.choice(["rim", "heterogeneous", "homogeneous"], p=[0.55, 0.3, 0.15])
        ce_rim = rng.uniform(0.1, 0.4) if pattern == "rim" else 1.0
        ce_het = abs(rng.normal(0.22, 0.05)) if pattern == "heterogeneous" else abs(rng.normal(0.08, 0.03))
    return _Lesion(
        y=y, u=offset, half_length=half_length, half_width=half_width,
        half_depth=half_width * rng.uniform(0.9, 1.3), exponent=exponent, lobulation=lobulation,
        lobe_phase=rng.uniform(0, 2 * np.pi), edge_px=edge, t1_ratio=t1_ratio, t2_level=t2_level,
        t2_heterogeneity=t2_het, cap=cap, target=target, cysts=cysts, ce_level=max(ce_level, 0.15),
        ce_heterogeneity=ce_het, ce_rim=ce_rim,
        texture=(rng.normal(size=(10, 10)), rng.normal(size=(10, 10))),
    )


def _draw_cysts(rng, n: int) -> tuple:
    return tuple(
        (rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.2, 0.4))
        for _ in range(n)
    )


def _render_sequence(patient: _Patient, sequence: str, n_slices: int, rng) -> list:
    """Adjacent sagittal slices of one sequence: ``[(uint8 image, lesion mask, box)]``.

    The slices are spread around a central plane through the tumour, never so far out that
    the tumour leaves the slice, so every image shows it. Each sequence has its own small
    positioning shift, each slice a smaller one on top.
    """
    lesion = patient.lesion
    spacing = min(_SLICE_SPACING_MM, 1.2 * lesion.half_depth / max(n_slices - 1, 1))
    centre = rng.uniform(-0.1, 0.1) * lesion.half_depth
    ppm = patient.height / patient.fov_mm
    shift = rng.normal(0.0, [5.0, 3.0])
    slices = []
    for k in range(n_slices):
        depth = centre + (k - (n_slices - 1) / 2) * spacing
        y0, x0 = shift + rng.normal(0.0, 1.0, size=2)
        slices.append(_render_slice(patient, sequence, depth, y0, x0, ppm, rng))
    return slices


def _render_slice(patient: _Patient, sequence: str, depth: float, y0: float, x0: float, ppm: float, rng):
    """One slice at ``depth`` mm lateral of the tumour centre; returns (image, mask, box).

    (y0, x0) is the millimetre position of the image's top-left corner in patient space,
    ppm the pixels per millimetre. ``mask`` marks the tumour's pixels, ``box`` is the
    annotator's rectangle (x_min, y_min, x_max, y_max) in pixel coordinates.
    """
    anatomy, lesion, scanner = patient.anatomy, patient.lesion, patient.scanner
    height, width = patient.height, patient.width
    s = SEQUENCES.index(sequence)

    def signal(tissue: str) -> float:
        value = _TISSUE[tissue][s] * scanner.contrast[sequence][tissue]
        if tissue == "fat" and sequence == "CE-T1" and scanner.ce_fatsat:
            value *= 0.25
        return value

    y = ((np.arange(height, dtype=np.float32) + 0.5) / ppm + y0)[:, None]
    x = ((np.arange(width, dtype=np.float32) + 0.5) / ppm + x0)[None, :]
    centre = _canal_centre(anatomy, y)
    u = x - centre  # position across the canal, + posterior
    image = np.zeros((height, width), np.float32)

    # Body wall: subcutaneous fat out to the skin, paraspinal muscle inside it.
    fat = anatomy.subcut_fat * (1 + 0.1 * np.sin(y / 40.0))
    skin = centre + anatomy.canal + anatomy.spinous_length + 10.0 + fat
    _blend(image, _edge((skin - x) * ppm), signal("fat") * (1 + 0.06 * smooth_field(rng, (height, width), 12)))
    muscle = signal("muscle") * (1 + 0.08 * smooth_field(rng, (height, width), 16))
    _blend(image, _edge((skin - fat - x) * ppm), muscle)

    # Prevertebral space: bowel and retroperitoneal fat, and the aorta above its bifurcation.
    front = centre - anatomy.canal - 1.5 - anatomy.body_depth - 2.0
    mix = 1 / (1 + np.exp(-1.5 * smooth_field(rng, (height, width), 8)))
    _blend(image, _edge((front - x) * ppm), signal("bowel") * mix + signal("fat") * (1 - mix))
    bifurcation = anatomy.l5_y - 1.2 * anatomy.level_pitch
    aorta = np.minimum(np.minimum(front - 2.0 - x, x - (front - 22.0)), bifurcation - y)
    _blend(image, _edge(aorta * ppm), signal("flow_void"))

    _paint_spine(image, anatomy, y, x, ppm, signal, rng, patient.age)
    _paint_canal(image, anatomy, lesion, y, u, depth, ppm, signal)
    mask = _paint_lesion(image, lesion, sequence, y, u, depth, ppm, signal)

    image = acquire_slice(image, scanner, rng)
    box = tight_annotator_box(mask, rng)
    return image, mask, box


def _canal_centre(anatomy: _Anatomy, y):
    """Canal centre line: lumbar lordosis (apex near L3) and the sacrum bending back."""
    apex = anatomy.l5_y - 2.0 * anatomy.level_pitch
    sacrum = anatomy.l5_y + 0.5 * anatomy.level_pitch
    return anatomy.x0 + anatomy.lordosis * (y - apex) ** 2 + anatomy.sacral_tilt * np.maximum(y - sacrum, 0) ** 2


def _canal_slope(anatomy: _Anatomy, y: float) -> float:
    apex = anatomy.l5_y - 2.0 * anatomy.level_pitch
    sacrum = anatomy.l5_y + 0.5 * anatomy.level_pitch
    return 2 * anatomy.lordosis * (y - apex) + 2 * anatomy.sacral_tilt * max(y - sacrum, 0.0)


def _paint_spine(image, anatomy: _Anatomy, y, x, ppm, signal, rng, age: int) -> None:
    """Discs, vertebral bodies and spinous processes, from T11 down to the sacrum."""
    pitch = anatomy.level_pitch
    marrow = signal("marrow") * (1 + 0.004 * (age - 50))  # marrow fattens with age
    marrow = marrow * (1 + 0.1 * smooth_field(rng, image.shape, 24))  # fatty/red marrow foci
    cortex = signal("cortex")
    for level in range(-6, 4):  # 0 = L5; 1, 2, 3 = fused sacral segments
        sacral = level > 0
        yc = anatomy.l5_y + (level if not sacral else 0.8 * level + 0.2) * pitch
        depth = anatomy.body_depth * (1 - 0.15 * level if sacral else 1.0)
        angle = float(np.arctan(_canal_slope(anatomy, yc)))
        offset = -(anatomy.canal + 1.5 + depth / 2)  # body centre, anterior of the canal
        half = 0.5 * anatomy.body_share * pitch * (0.8 if sacral else 1.0)
        disc_y = yc + 0.5 * pitch * (0.8 if sacral else 1.0)
        disc_cy, disc_cx = _off_axis(anatomy, disc_y, offset)
        if not sacral:
            # The disc below this body (L5/S1 for level 0); desiccated discs are also lower.
            degenerated = anatomy.degenerated[level + 6]
            disc_half = (0.5 * pitch - half + 1.0) * (0.7 if degenerated else 1.0)
            annulus, nucleus = signal("annulus"), signal("nucleus_degenerated" if degenerated else "nucleus")
            _shape(image, y, x, disc_cy, disc_cx, disc_half, depth / 2 + 0.8, angle, 3.0, ppm, annulus)
            _shape(image, y, x, disc_cy, disc_cx, 0.45 * disc_half, 0.3 * depth, angle, 2.0, ppm, nucleus, soft=3.0)
        else:
            # Rudimentary disc between fused sacral segments: a thin dark line.
            _shape(image, y, x, disc_cy, disc_cx, 1.5, depth / 2, angle, 3.0, ppm, signal("annulus"))
        _bone(image, y, x, *_off_axis(anatomy, yc, offset), half, depth / 2, angle, 5.0, ppm, cortex, marrow)
        if level <= 1:
            # Lamina and spinous process, pointing backwards and a little downwards.
            length = anatomy.spinous_length * (0.7 if sacral else 1.0)
            tilt = angle - 0.25
            back = anatomy.canal + 3.5 + length / 2
            base_y, base_x = _off_axis(anatomy, yc + 0.1 * pitch, 0.0)
            sy, sx = base_y - np.sin(tilt) * back, base_x + np.cos(tilt) * back
            _bone(image, y, x, sy, sx, 7.0, length / 2, tilt, 4.0, ppm, cortex, marrow)


def _off_axis(anatomy: _Anatomy, y: float, offset: float) -> tuple[float, float]:
    """Point ``offset`` mm from the canal centre line at height ``y``, along its normal."""
    angle = np.arctan(_canal_slope(anatomy, y))
    return float(y - np.sin(angle) * offset), float(_canal_centre(anatomy, y) + np.cos(angle) * offset)


def _paint_canal(image, anatomy: _Anatomy, lesion: _Lesion, y, u, depth, ppm, signal) -> None:
    """Epidural fat and veins, the CSF-filled thecal sac, cord, conus, filum and roots."""
    pitch = anatomy.level_pitch
    # The sac is a tube: an off-midline slice cuts it narrower.
    canal = anatomy.canal * np.sqrt(max(1 - (depth / (1.6 * anatomy.canal)) ** 2, 0.3))
    # A tumour wider than the sac expands it (and scallops the bone) around its level.
    around = np.exp(-(((y - lesion.y) / (lesion.half_length + 4.0)) ** 4))
    front = canal + around * max(0.0, lesion.half_width - lesion.u - canal + 0.7)
    back = canal + around * max(0.0, lesion.half_width + lesion.u - canal + 0.7)
    # The sac ends at S2; below it the sacral canal holds only fat.
    sac_end = anatomy.l5_y + 1.6 * pitch
    taper = np.clip((sac_end - y) / 12.0, 0, 1)
    front, back = front * taper, back * taper
    # Posterior epidural fat pads sit at the laminae of each level.
    phase = (y - anatomy.l5_y) / pitch
    fat_pad = 1.5 + 2.5 * np.cos(np.pi * (phase - 0.3)) ** 2
    epidural = np.minimum(u + anatomy.canal + 1.5, anatomy.canal + fat_pad - u)
    _blend(image, _edge(epidural * ppm), signal("fat"))
    veins = np.minimum(u + anatomy.canal + 1.5, -anatomy.canal - 0.2 + 1.0 * np.cos(np.pi * phase) ** 2 - u)
    _blend(image, _edge(veins * ppm) * 0.8, signal("vein"))
    _blend(image, _edge(np.minimum(u + front, back - u) * ppm), signal("csf"))
    # Cauda equina: thin roots hanging from the conus, lying posteriorly in a supine patient.
    below = y > anatomy.conus_y
    for offset, slope, half in anatomy.roots:
        line = half - np.abs(u - offset - slope * (y - anatomy.conus_y))
        _blend(image, _edge(line * ppm) * below * taper * 0.7, signal("cord"))
    # Cord tapering through the conus into the thin filum terminale.
    along = np.clip((anatomy.conus_y - y) / 30.0, 0, 1)
    half_width = anatomy.filum_half + (anatomy.cord_half - anatomy.filum_half) * np.sqrt(along)
    middle = anatomy.filum_offset + (anatomy.cord_offset - anatomy.filum_offset) * along
    _blend(image, _edge((half_width - np.abs(u - middle)) * ppm) * taper, signal("cord"))


def _paint_lesion(image, lesion: _Lesion, sequence: str, y, u, depth: float, ppm: float, signal) -> np.ndarray:
    """Paint the tumour as cut by this slice; return its pixel mask (boolean)."""
    # An ellipsoid cut off-centre shows a smaller section of the same shape.
    section = np.sqrt(max(1 - (depth / lesion.half_depth) ** 2, 0.0))
    a, b = lesion.half_length * section, lesion.half_width * section
    rows = np.flatnonzero(np.abs(y[:, 0] - lesion.y) < a + 3.0)
    dv, du = y[rows] - lesion.y, u[rows] - lesion.u
    theta = np.arctan2(dv / a, du / b)
    p = lesion.exponent
    radius = ((np.abs(dv) / a) ** p + (np.abs(du) / b) ** p) ** (1 / p)
    radius = radius / (1 + lesion.lobulation * np.cos(3 * theta + lesion.lobe_phase))
    fraction = np.clip(0.5 + (1 - radius) * min(a, b) * ppm / lesion.edge_px, 0, 1)

    # Smooth texture in tumour coordinates, blended between two fields across slices so
    # neighbouring slices share most of their pattern.
    turn = 0.4 * np.pi * depth / lesion.half_depth
    gv, gu = dv / lesion.half_length, du / lesion.half_width
    first, second = lesion.texture
    field = np.cos(turn) * _sample(first, gv, gu) + np.sin(turn) * _sample(second, gv, gu)
    cyst = np.zeros_like(radius)
    for cv, cu, cd, cr in lesion.cysts:
        seen = cr ** 2 - (depth / lesion.half_depth - cd) ** 2
        if seen > 0:
            distance = np.hypot(dv - cv * lesion.half_length, du - cu * lesion.half_width)
            cyst = np.maximum(cyst, np.clip(0.5 + (np.sqrt(seen) * lesion.half_width - distance) * ppm, 0, 1))
    pole = np.clip((np.abs(dv) / a - 0.72) / 0.2, 0, 1)
    cap = lesion.cap * pole * pole * (3 - 2 * pole)

    t1 = signal("cord") * lesion.t1_ratio * (1 + 0.05 * field)
    if sequence == "T1":
        value = t1 * (1 - 0.3 * cap)
        value = value * (1 - cyst) + signal("csf") * cyst
    elif sequence == "T2":
        value = lesion.t2_level * (1 + lesion.t2_heterogeneity * field)
        value = value * (1 - lesion.target * np.exp(-((radius / 0.55) ** 2)))
        value = value * (1 - cap) + 0.12 * cap  # hemosiderin: dark on T2
        value = value * (1 - cyst) + signal("csf") * cyst
    else:
        rim = np.clip((radius - 0.45) / 0.45, 0, 1)
        pattern = lesion.ce_rim + (1 - lesion.ce_rim) * rim
        enhancement = lesion.ce_level * pattern * (1 + lesion.ce_heterogeneity * field)
        value = t1 + enhancement * (1 - cap) * (1 - cyst)  # cysts and haemosiderin do not enhance
        value = value * (1 - cyst) + signal("csf") * cyst
    block = image[rows]
    image[rows] = block * (1 - fraction) + fraction * value
    mask = np.zeros(image.shape, bool)
    mask[rows] = radius < 1
    return mask


def acquire_slice(image, scanner: _Scanner, rng) -> np.ndarray:
    """Scanner effects and display window: float tissue signal to uint8 grey levels."""
    height, width = image.shape
    image = image * np.exp(scanner.bias * rng.uniform(0.7, 1.3) * smooth_field(rng, image.shape, 3))
    if scanner.downsample > 1:
        small = (max(int(width / scanner.downsample), 8), max(int(height / scanner.downsample), 8))
        low = Image.fromarray(image.astype(np.float32)).resize(small, Image.Resampling.BOX)
        image = np.asarray(low.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    if scanner.blur_px > 0.2:
        image = _gaussian_blur(image, scanner.blur_px)
    # Magnitude images: noise on both quadrature channels gives the Rician floor in air.
    sd = scanner.noise * rng.uniform(0.85, 1.15)
    image = np.hypot(image + rng.normal(0, sd, image.shape), rng.normal(0, sd, image.shape))
    low = np.percentile(image, 1.0)
    high = np.percentile(image, scanner.window_pct) / (scanner.brightness * rng.normal(1.0, 0.04))
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1) ** (scanner.gamma * rng.normal(1.0, 0.04))
    return np.round(scaled * 255).astype(np.uint8)


def tight_annotator_box(mask: np.ndarray, rng) -> tuple[float, float, float, float]:
    """Tight box around the tumour plus a few pixels of cord/filum, clipped to the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    margin = rng.uniform(2.0, 6.0, size=4)
    height, width = mask.shape
    return (
        round(max(cols[0] - margin[0], 0.0), 2),
        round(max(rows[0] - margin[1], 0.0), 2),
        round(min(cols[-1] + 1 + margin[2], float(width)), 2),
        round(min(rows[-1] + 1 + margin[3], float(height)), 2),
    )


def labelme_document(stem: str, shape, box, label: str, rng) -> dict:
    """The labelme JSON of one image: ``box`` as a two-point rectangle whose corners come
    in the orders real annotators leave (the reader must normalise them)."""
    x_min, y_min, x_max, y_max = box
    corners = {"tl": [x_min, y_min], "br": [x_max, y_max], "tr": [x_max, y_min], "bl": [x_min, y_max]}
    order = _CORNER_ORDERS[int(rng.choice(len(_CORNER_ORDERS), p=_CORNER_ORDER_P))]
    return {
        "version": _LABELME_VERSION,
        "flags": {},
        "shapes": [{
            "label": label,
            "points": [corners[order[0]], corners[order[1]]],
            "group_id": None,
            "description": "",
            "shape_type": "rectangle",
            "flags": {},
            "mask": None,
        }],
        "imagePath": f"{stem}.png",
        "imageData": None,
        "imageHeight": int(shape[0]),
        "imageWidth": int(shape[1]),
    }


# --- small image helpers (no scipy) -------------------------------------------------------


def _edge(distance_px):
    """Area fraction of a pixel inside a boundary at signed distance (pixels, + inside)."""
    return np.clip(0.5 + distance_px, 0, 1)


def _blend(image, fraction, value) -> None:
    """Paint ``value`` over ``image`` with partial-volume ``fraction`` (in place)."""
    image += fraction * (value - image)


def _shape(image, y, x, cy, cx, half_y, half_x, angle, exponent, ppm, value, soft=1.0) -> np.ndarray:
    """Paint a rotated superellipse (a rounded rectangle for large exponents).

    Only the window it can reach is computed, which keeps a slice at a few milliseconds.
    ``value`` is a number or an image-sized array (a texture).
    """
    reach = np.hypot(half_y, half_x) + 2.0
    rows = np.flatnonzero(np.abs(y[:, 0] - cy) < reach)
    cols = np.flatnonzero(np.abs(x[0] - cx) < reach)
    if rows.size == 0 or cols.size == 0:
        return
    window = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    dy, dx = y[window[0]] - cy, x[:, window[1]] - cx
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = dy * cos + dx * sin, -dy * sin + dx * cos
    radius = ((np.abs(along) / half_y) ** exponent + (np.abs(across) / half_x) ** exponent) ** (1 / exponent)
    fraction = np.clip(0.5 + (1 - radius) * min(half_y, half_x) * ppm / soft, 0, 1)
    block = image[window]
    value = value[window] if np.ndim(value) == 2 else value
    image[window] = block + fraction * (value - block)


def _bone(image, y, x, cy, cx, half_y, half_x, angle, exponent, ppm, cortex, marrow) -> None:
    """Cortical shell (about 1 mm, dark) filled with marrow."""
    _shape(image, y, x, cy, cx, half_y, half_x, angle, exponent, ppm, cortex)
    _shape(image, y, x, cy, cx, half_y - 1.0, half_x - 1.0, angle, exponent, ppm, marrow)


def smooth_field(rng, shape, cells: int) -> np.ndarray:
    """Zero-mean, unit-sd random field varying over about ``cells`` blobs per image side."""
    grid = rng.normal(size=(cells + 1, cells + 1)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return (field - field.mean()) / (field.std() + 1e-6)


def _sample(grid: np.ndarray, v, u) -> np.ndarray:
    """Bilinear lookup of ``grid`` at coordinates in [-1.3, 1.3] (clamped outside)."""
    n = grid.shape[0] - 1
    gy = np.clip((v + 1.3) / 2.6 * n, 0, n - 1e-4)
    gx = np.clip((u + 1.3) / 2.6 * n, 0, n - 1e-4)
    iy, ix = gy.astype(int), gx.astype(int)
    fy, fx = gy - iy, gx - ix
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        length = image.shape[axis]
        image = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(taps))
    return image.astype(np.float32)
