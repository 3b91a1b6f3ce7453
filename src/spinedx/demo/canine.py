"""Canine-thoracolumbar-shaped demo study: unremarkable images and five pathologies,
labelled per image.

A seeded synthetic study in the format a real one arrives in:
``<patient_id>/<sequence folder>/<patient_id>_<folder>_<k>.png`` (8-bit grayscale) with a
labelme 5.x JSON beside each PNG. Labels belong to IMAGES: a dog has several images per
sequence; those that cut its lesion carry one rectangle whose shape label is the
pathology (``IVDE``, ``IVDP``, ``FCE_ANNPE``, ``syringomyelia``, ``neoplasia``), the
others are unremarkable (a labelme file with no shapes). Whether an image shows the lesion
follows from geometry: a parasagittal slice beside a lateralised extrusion, or a
transverse slice two levels away, misses it. The cases table ``patient_id, cohort, breed,
age, sex, weight_kg, diagnosis`` carries no image-level label: ``diagnosis`` documents the
dog's pathology (``unremarkable`` for dogs without one) and is not the label source.
Cohorts: ``internal`` and ``external`` (the study's 375:125 dogs, scaled down), scanned on
partly different machines, several of them low-field as is common in veterinary MRI.

Sequences: T1W and T2W in the sagittal (``T1_SAG``, ``T2_SAG``) and transverse
(``T1_TRA``, ``T2_TRA``) planes, drawn from one 3-D model per dog
(:mod:`spinedx.demo.anatomy`) scaled by body weight. Display conventions of veterinary
MRI: sagittal with cranial to the left and dorsal up, transverse with dorsal up.

What each pathology looks like, and what it imitates (veterinary MRI literature, e.g. da
Costa et al., Front Vet Sci 2020 on imaging disc disease; De Risio, Front Vet Sci 2015 on
FCE and ANNPE; Besalti et al., JAVMA 2006 on thoracolumbar disc disease; Hansen's type
I/II):

- IVDE (Hansen type I extrusion): the source disc degenerated (T2-dark nucleus) and
  narrowed; extruded material in the ventral or ventrolateral epidural space, hypointense
  on T2 and T1 (mixed when haemorrhagic), dispersed along the canal, usually lateralised,
  compressing and displacing the cord. Young adult chondrodystrophic breeds.
- IVDP (Hansen type II protrusion): a smooth, broad-based midline dorsal bulge of the
  annulus (dark on both sequences) at a degenerated disc, less compression; more
  degenerated discs elsewhere. Older, large non-chondrodystrophic breeds.
- FCE_ANNPE: a focal, ill-defined intramedullary T2 hyperintensity over a vertebral body
  (FCE) or a disc (ANNPE, whose disc is a little narrowed), often lateralised, little or no
  compression, nearly invisible on T1 (the study's low sagittal sensitivity).
- syringomyelia: an elongated, sharply bordered CSF-like cavity (T1 dark, T2 bright) in
  the centre of the cord over several segments, mild cord widening. Rare.
- neoplasia: a vertebral mass with bone lysis (marrow and cortex replaced, T1 dark, T2
  heterogeneously bright) and an epidural component, or an intradural extramedullary mass
  beside the cord. Older dogs. Rare.

Rarer classes are rarer by the configured counts (the study found neoplasia and
syringomyelia too sparse). Overlap, deliberately: every feature is drawn from overlapping
distributions, unremarkable images still show incidental degenerated discs in older
dogs, and 30% of dogs are atypical, taking some feature groups (site, shape, signal) from a
look-alike pathology (IVDE <-> IVDP, FCE/ANNPE <-> syringomyelia, neoplasia <-> disc
disease). Per-dog scanners vary field of view and resolution, noise, bias field, blur,
window, gamma and tissue contrast.

Everything comes from ``settings["seed"]`` through independent random streams, so the
same settings give byte-identical files. Settings are a plain dict (keys: seed,
n_patients, slices_per_sequence, sequence_folders, sagittal_height, sagittal_width,
transverse_size); their defaults live in the configuration schema, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spinedx.demo import cohort
from spinedx.demo.anatomy import (Blob, CordEffect, Plane, Scanner, Spine, feature_sources, intradural_beside_cord,
                                  intramedullary, render, scanner_park, smooth_field, vertebral_with_epidural)

PATHOLOGIES = ("IVDE", "IVDP", "FCE_ANNPE", "syringomyelia", "neoplasia")
REFERENCE = "unremarkable"
CLASSES = (*PATHOLOGIES, REFERENCE)  # what a dog can have, for the cohort counts
SEQUENCES = ("T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA")
COHORTS = ("internal", "external")
CASE_COLUMNS = ["patient_id", "cohort", "breed", "age", "sex", "weight_kg", "diagnosis"]
LAYOUT = cohort.Layout(name="canine_demo", tag=1302, classes=CLASSES, sequences=SEQUENCES,
                       cohorts=(("internal", "DOG-I"), ("external", "DOG-E")))
_PLANE = {"T1_SAG": ("sagittal", "T1"), "T2_SAG": ("sagittal", "T2"), "T1_TRA": ("transverse", "T1"),
          "T2_TRA": ("transverse", "T2")}

_N_SCANNERS = 8
_SCANNER_SEED = 1302
_LOW_FIELD = {1, 5, 6}
_FOREIGN = {5, 6, 7}  # machines of the external cohort only
_SCANNERS_BY_COHORT = {"internal": (0, 1, 2, 3, 4), "external": (3, 5, 6, 7)}

# Breeds per pathology (weights), breed body weight (kg, mean), age in years (mean, sd).
_BREEDS = {
    "IVDE": {"Dachshund": 0.35, "French Bulldog": 0.25, "Beagle": 0.1, "Shih Tzu": 0.1, "Cocker Spaniel": 0.1,
             "Mixed breed": 0.1},
    "IVDP": {"German Shepherd": 0.35, "Labrador Retriever": 0.25, "Mixed breed": 0.25, "Border Collie": 0.15},
    "FCE_ANNPE": {"Labrador Retriever": 0.25, "German Shepherd": 0.15, "Miniature Schnauzer": 0.25,
                  "Border Collie": 0.15, "Mixed breed": 0.2},
    "syringomyelia": {"Cavalier King Charles Spaniel": 0.5, "French Bulldog": 0.2, "Mixed breed": 0.3},
    "neoplasia": {"Mixed breed": 0.35, "Labrador Retriever": 0.25, "German Shepherd": 0.2, "Boxer": 0.2},
    "unremarkable": {"Mixed breed": 0.3, "Labrador Retriever": 0.2, "Dachshund": 0.15, "French Bulldog": 0.15,
                     "German Shepherd": 0.2},
}
_BREED_WEIGHT = {"Dachshund": 9, "French Bulldog": 12, "Beagle": 13, "Shih Tzu": 7, "Cocker Spaniel": 13,
                 "Mixed breed": 20, "German Shepherd": 33, "Labrador Retriever": 31, "Border Collie": 19,
                 "Miniature Schnauzer": 8, "Cavalier King Charles Spaniel": 8, "Boxer": 30}
_AGE = {"IVDE": (5.5, 2.0), "IVDP": (9.5, 2.2), "FCE_ANNPE": (6.0, 2.5), "syringomyelia": (5.0, 2.5),
        "neoplasia": (9.5, 2.5), "unremarkable": (6.5, 3.0)}
_AGE_RANGE = (1.0, 16.0)

_ATYPICAL_SHARE = 0.30
_GROUPS = ("site", "shape", "signal")


@dataclass(frozen=True)
class _Look:
    """How one pathology looks; sizes in mm for a 20 kg dog, each range drawn uniformly."""

    lookalikes: dict  # pathology -> weight, for atypical dogs
    half_length: tuple  # along the spine
    girth: tuple  # share of the room its site offers
    edge: tuple  # margin softness (pixels)
    t1: tuple  # signal (mean, sd)
    t2: tuple
    heterogeneity: tuple


_LOOKS = {
    "IVDE": _Look(lookalikes={"IVDP": 0.6, "neoplasia": 0.2, "FCE_ANNPE": 0.2},
                  half_length=(4, 10), girth=(0.5, 0.9), edge=(1.0, 1.5),
                  t1=(0.22, 0.05), t2=(0.12, 0.04), heterogeneity=(0.20, 0.06)),
    "IVDP": _Look(lookalikes={"IVDE": 0.8, "neoplasia": 0.2},
                  half_length=(3, 5), girth=(0.4, 0.8), edge=(0.7, 1.0),
                  t1=(0.28, 0.04), t2=(0.20, 0.04), heterogeneity=(0.05, 0.02)),
    "FCE_ANNPE": _Look(lookalikes={"syringomyelia": 0.5, "IVDE": 0.5},
                       half_length=(5, 14), girth=(0.45, 0.65), edge=(2.0, 3.5),
                       t1=(0.41, 0.03), t2=(0.72, 0.08), heterogeneity=(0.08, 0.03)),
    "syringomyelia": _Look(lookalikes={"FCE_ANNPE": 0.8, "neoplasia": 0.2},
                           half_length=(20, 55), girth=(0.45, 0.75), edge=(0.7, 1.0),
                           t1=(0.13, 0.04), t2=(0.93, 0.05), heterogeneity=(0.02, 0.01)),
    "neoplasia": _Look(lookalikes={"IVDE": 0.5, "IVDP": 0.2, "FCE_ANNPE": 0.3},
                       half_length=(8, 16), girth=(0.6, 0.9), edge=(1.2, 2.0),
                       t1=(0.35, 0.05), t2=(0.62, 0.08), heterogeneity=(0.20, 0.05)),
}
_VISIBLE_PX = 8  # fewer lesion pixels in a slice: the annotator calls it unremarkable
_TRANSVERSE_ON_LESION = 0.55  # share of transverse slices placed through the lesion


@dataclass(frozen=True)
class _Dog(cohort.Identity):
    breed: str
    age: float
    sex: str
    weight_kg: float
    scale: float  # linear size relative to a 20 kg dog
    scanner: Scanner
    spine: Spine
    torso: tuple  # (epaxial depth, subcutaneous fat) in mm
    blobs: tuple  # empty for an unremarkable dog
    cord_effects: tuple
    sagittal_shape: tuple  # (height, width) as displayed
    transverse_size: int


def planned_files(settings: dict) -> dict[str, list[str]]:
    """Relative paths (PNG and JSON) that :func:`generate_demo_cohort` writes, per
    sequence, computed without rendering."""
    return cohort.planned_files(settings, LAYOUT)


def generate_demo_cohort(images_dir: str | Path, cases_csv: str | Path, settings: dict) -> pd.DataFrame:
    """Write the study's images, labelme JSONs and cases table; return the table.

    Dog folders of an earlier run (``DOG-I###``/``DOG-E###``) are replaced; nothing else
    in ``images_dir`` is touched.
    """
    return cohort.generate(images_dir, cases_csv, settings, LAYOUT, plan_cohort, _render_sequence, CASE_COLUMNS)


def plan_cohort(settings: dict) -> list[_Dog]:
    """Every dog's identity, signalment, scanner, anatomy and lesion (no rendering)."""
    cohort.checked(settings, LAYOUT)
    scanners = scanner_park(_SCANNER_SEED, _N_SCANNERS, _LOW_FIELD, _FOREIGN)
    return [_draw_dog(cohort.patient_rng(settings, LAYOUT, index), index, patient_id, diagnosis, name, scanners,
                      settings)
            for index, name, patient_id, diagnosis in cohort.patients(settings, LAYOUT)]


def _draw_dog(rng, index, patient_id, diagnosis, cohort_name, scanners, settings) -> _Dog:
    breeds = _BREEDS[diagnosis]
    breed = str(list(breeds)[int(rng.choice(len(breeds), p=list(breeds.values())))])
    spread = 0.45 if breed == "Mixed breed" else 0.15
    weight = round(float(np.clip(_BREED_WEIGHT[breed] * np.exp(rng.normal(0, spread)), 3, 60)), 1)
    scale = (weight / 20) ** (1 / 3)
    mean, sd = _AGE[diagnosis]
    age = round(float(np.clip(rng.normal(mean, sd), *_AGE_RANGE)), 1)
    sex = "M" if rng.random() < 0.5 else "F"
    scanner = scanners[int(rng.choice(_SCANNERS_BY_COHORT[cohort_name]))]
    sagittal_shape = (int(rng.integers(settings["sagittal_height"][0], settings["sagittal_height"][1] + 1)),
                      int(rng.integers(settings["sagittal_width"][0], settings["sagittal_width"][1] + 1)))
    transverse_size = int(rng.integers(settings["transverse_size"][0], settings["transverse_size"][1] + 1))
    spine = _draw_spine(rng, age, scale)
    torso = (rng.uniform(28, 38) * scale, rng.uniform(3, 12) * scale)
    blobs, effects = (), ()
    if diagnosis != REFERENCE:
        lookalikes = {name: look.lookalikes for name, look in _LOOKS.items()}
        sources = feature_sources(rng, diagnosis, _GROUPS, lookalikes, _ATYPICAL_SHARE)
        spine, blobs, effects = _draw_lesion(rng, sources, spine, scale)
    return _Dog(index, patient_id, diagnosis, cohort_name, breed, age, sex, weight, scale, scanner, spine, torso,
                blobs, effects, sagittal_shape, transverse_size)


def _draw_spine(rng, age: float, scale: float) -> Spine:
    """Thoracolumbar column (about T10 to L4) of a dog; discs degenerate with age."""
    pitch = rng.normal(23.0, 1.2) * scale
    disc = rng.uniform(1.5, 2.2) * scale
    levels = tuple(float(k * pitch + rng.normal(0, 0.3)) for k in range(-4, 5))
    degenerated = tuple(bool(rng.random() < min(0.03 + max(age - 3, 0) / 25, 0.6)) for _ in levels)
    return Spine(
        levels=levels, body_half_length=pitch / 2 - disc,
        disc_half=tuple(disc * (0.8 if d else 1.0) for d in degenerated),
        body_depth=rng.uniform(12, 15) * scale, body_half_width=rng.uniform(8, 10) * scale,
        canal=(rng.uniform(4.0, 4.6) * scale, rng.uniform(4.8, 5.5) * scale), epidural=rng.uniform(0.8, 1.2) * scale,
        dorsal_fat=rng.uniform(1.0, 1.8) * scale, cord=(rng.uniform(2.8, 3.2) * scale, rng.uniform(3.3, 3.9) * scale),
        cord_offset=-0.3 * scale, arch=rng.uniform(2.5, 3.5) * scale, spinous_length=rng.uniform(15, 22) * scale,
        spinous_lean=rng.uniform(-0.4, 0.3), transverse_length=rng.uniform(18, 26) * scale,
        degenerated=degenerated, curvature=-rng.uniform(0, 6e-4) / scale, apex=rng.normal(0, 20),
    )


def _draw_lesion(rng, sources: dict, spine: Spine, scale: float):
    """The spine (with the lesion's disc changes), the lesion's blobs and cord effects."""
    shape, look = _LOOKS[sources["shape"]], _LOOKS[sources["signal"]]
    half_length = rng.uniform(*shape.half_length) * scale
    girth = rng.uniform(*shape.girth)
    edge = rng.uniform(*shape.edge)
    t2 = max(rng.normal(*look.t2), 0.05)
    signal = (max(rng.normal(*look.t1), 0.05), t2, t2)
    texture = abs(rng.normal(*look.heterogeneity))
    spine, parts, effects = _site(rng, sources["site"], spine, half_length, girth, scale)
    blobs = tuple(Blob(centre, half, signal, 2.0, edge, texture, boxed=boxed, in_sac=in_sac)
                  for centre, half, in_sac, boxed in parts)
    return spine, blobs, tuple(effects)


def _with_disc(spine: Spine, k: int, narrowing: float) -> Spine:
    """``spine`` with disc ``k`` degenerated and narrowed by ``narrowing``."""
    degenerated = tuple(d or i == k for i, d in enumerate(spine.degenerated))
    halves = tuple(h * narrowing if i == k else h for i, h in enumerate(spine.disc_half))
    return replace(spine, degenerated=degenerated, disc_half=halves)


def _site(rng, site: str, spine: Spine, half_length: float, girth: float, scale: float):
    cu, cz = spine.canal
    ru, rz = spine.cord
    k = int(rng.integers(2, 6))  # the disc or body of the lesion, away from the ends of the FOV
    side = float(rng.choice([-1.0, 1.0]))
    if site == "IVDE":  # ventral/ventrolateral epidural, dark, dispersed, lateralised
        spine = _with_disc(spine, k, rng.uniform(0.5, 0.75))
        a = spine.disc_centre(k) + rng.normal(0, 0.2) * (spine.levels[1] - spine.levels[0])
        thickness, width = girth * 1.1 * cu, rng.uniform(0.5, 0.9) * cz
        z = side * rng.uniform(0.2, 0.7) * cz
        centre = (a, -(cu + spine.epidural) + 0.5 * thickness, z)  # on the canal floor
        effect = CordEffect(a, half_length + 3 * scale, (0.6 * thickness, -0.4 * side * width), (0.7, 0.9))
        return spine, [(centre, (half_length, 0.5 * thickness, width), False, True)], [effect]
    if site == "IVDP":  # broad midline dorsal bulge of a degenerated disc
        spine = _with_disc(spine, k, rng.uniform(0.7, 0.85))
        for other in rng.choice([i for i in range(len(spine.levels)) if i != k], size=int(rng.integers(0, 3)),
                                replace=False):
            spine = _with_disc(spine, int(other), 0.85)
        thickness = girth * 0.8 * cu
        centre = (spine.disc_centre(k), -(cu + spine.epidural), rng.normal(0, 0.1) * cz)
        half = (spine.disc_half[k] + rng.uniform(1.0, 2.5) * scale, thickness, rng.uniform(0.6, 0.9) * cz)
        effect = CordEffect(centre[0], half[0] + 3 * scale, (0.5 * thickness, 0.0), (0.85, 1.0))
        return spine, [(centre, half, False, True)], [effect]
    if site == "FCE_ANNPE":  # over a body (FCE) or a disc (ANNPE), lateralised, no compression
        if rng.random() < 0.5:
            a = spine.levels[k] + rng.normal(0, 2) * scale
        else:
            spine = _with_disc(spine, k, rng.uniform(0.75, 0.9))
            a = spine.disc_centre(k)
        shift = (rng.normal(0, 0.2) * ru, side * rng.uniform(0.15, 0.45) * rz)
        parts, effects = intramedullary(spine, a, shift, half_length, girth, 1.08, half_length + 2 * scale)
        return spine, parts, effects
    if site == "syringomyelia":  # central cavity over several segments
        parts, effects = intramedullary(spine, spine.levels[k] + rng.normal(0, 5) * scale, (0.0, 0.0), half_length,
                                        girth, 1.1, half_length)
        return spine, parts, effects
    if site == "neoplasia":
        if rng.random() < 0.5:  # vertebral, with lysis and an epidural component
            parts, effects = vertebral_with_epidural(spine, spine.levels[k] + rng.normal(0, 1.5) * scale,
                                                     rng.normal(0, 0.2) * spine.body_half_width,
                                                     half_length, girth, rng.uniform(1.5, 3.0) * girth * scale)
        else:  # intradural extramedullary
            parts, effects = intradural_beside_cord(spine, spine.levels[k] + rng.normal(0, 4) * scale, side,
                                                    rng.uniform(-0.3, 0.3), min(half_length, 10 * scale), girth)
        return spine, parts, effects
    raise ValueError(f"unknown site {site!r}")


def _render_sequence(dog: _Dog, sequence: str, n_slices: int, rng):
    """Slices of one sequence: ``(image, box or None, label)`` in display orientation."""
    kind, contrast = _PLANE[sequence]
    spine = dog.spine
    focus = dog.blobs[0].centre if dog.blobs else (spine.levels[4] + rng.normal(0, 10), 0.0, 0.0)
    reach = dog.blobs[0].half if dog.blobs else (10.0, 3.0, 3.0)
    if kind == "sagittal":
        height, width = dog.sagittal_shape
        pixel = rng.uniform(110, 140) * dog.scale * dog.scanner.fov_scale / width
        top = focus[0] - rng.uniform(0.35, 0.65) * width * pixel  # rows along a: the display's columns
        left = -rng.uniform(0.45, 0.6) * height * pixel
        shape, tilt = (width, height), rng.normal(0, 0.02)
        spacing = rng.uniform(2.5, 3.5) * dog.scale
        centre = rng.normal(0, 1.0) * dog.scale
        positions = [centre + (k - (n_slices - 1) / 2) * spacing for k in range(n_slices)]
    else:
        size = dog.transverse_size
        pixel = rng.uniform(85, 105) * dog.scale * dog.scanner.fov_scale / size
        top = -rng.uniform(0.5, 0.62) * size * pixel
        left = -rng.uniform(0.45, 0.55) * size * pixel
        shape, tilt = (size, size), rng.normal(0, 0.05)
        positions = sorted(_transverse_position(rng, spine, focus[0], reach[0], bool(dog.blobs))
                           for _ in range(n_slices))
    for position in positions:
        jitter = rng.normal(0, 1.0, size=2)
        plane = Plane(kind, float(position), tilt, top + jitter[0], left + jitter[1], pixel, shape)
        image, mask = render(plane, spine, dog.blobs, dog.cord_effects, contrast, dog.scanner, _torso(dog), rng)
        # Veterinary display: dorsal up; sagittal with cranial to the left.
        image, mask = (np.flipud(image.T), np.flipud(mask.T)) if kind == "sagittal" else (np.flipud(image),
                                                                                            np.flipud(mask))
        image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
        visible = mask.sum() >= _VISIBLE_PX
        yield image, cohort.annotator_box(mask, rng) if visible else None, dog.diagnosis


def _transverse_position(rng, spine: Spine, focus: float, reach: float, has_lesion: bool) -> float:
    """Through the lesion, or at a level or disc elsewhere in the study's slab."""
    if has_lesion and rng.random() < _TRANSVERSE_ON_LESION:
        return focus + rng.uniform(-0.8, 0.8) * reach
    candidates = [a for k, level in enumerate(spine.levels[1:-1], start=1)
                  for a in (level, spine.disc_centre(k)) if not has_lesion or abs(a - focus) > reach + 4.0]
    return float(rng.choice(candidates)) + rng.normal(0, 1.5)


def _torso(dog: _Dog):
    """Epaxial and hypaxial muscles, subcutaneous fat and abdominal viscera of a dog."""
    spine = dog.spine
    epaxial, fat_depth = dog.torso
    cu, cz = spine.canal
    back = cu + spine.epidural + spine.dorsal_fat + spine.arch
    front = -(cu + spine.epidural + spine.body_depth)
    s = dog.scale

    def paint(image, g, signal, rng):
        px = g.pixel_mm
        skin = back + epaxial + fat_depth - 0.006 * g.z ** 2 / s
        belly = 1 - np.hypot((g.u - front + 5 * s) / (60 * s), g.z / (58 * s))
        inside = np.clip(0.5 + (skin - g.u) / px, 0, 1) * np.clip(0.5 + 30 * s * belly / px, 0, 1)
        image += inside * (signal("fat") * (1 + 0.05 * smooth_field(rng, g.shape, 12)) - image)
        mix = 1 / (1 + np.exp(-1.5 * smooth_field(rng, g.shape, 10)))
        below = front - 10 * s - 0.015 * g.z ** 2 / s - g.u  # the peritoneal cavity's dorsal wall
        viscera = np.clip(0.5 + below / (2 * px), 0, 1) * np.clip(0.5 + 22 * s * belly / px, 0, 1)
        image += viscera * (signal("viscera") * mix + signal("fat") * (1 - mix) - image)
        muscle = signal("muscle") * (1 + 0.08 * smooth_field(rng, g.shape, 16))
        for side in (-1, 1):
            dorsal = 1 - np.hypot((g.u - back - 0.45 * epaxial) / (0.6 * epaxial + 4 * s),
                                  (g.z - side * 17 * s) / (19 * s))
            ventral = 1 - np.hypot((g.u - front - 2 * s) / (8 * s), (g.z - side * 11 * s) / (12 * s))
            for part in (dorsal, ventral):
                image += np.clip(0.5 + 12 * s * part / px, 0, 1) * inside * (muscle - image)

    return paint
