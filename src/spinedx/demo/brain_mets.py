"""Built-in detection study: brain metastases on black-blood and bright-blood volumes.

Written exactly as a real study folder of this kind is brought to spinedx::

    <images_dir>/<patient_id>/<sequence>/image.nii.gz   one per sequence, int16, same grid
    <images_dir>/<patient_id>/lesions.nii.gz            uint8 instance labels 1..K, 0 background
    <cases_csv>   patient_id, cohort, n_lesions, age, sex, scanner, vendor, field_strength_t

The sequences are ``settings["sequences"]``: ``black_blood`` (``BB``: contrast-enhanced,
vessel-suppressed) and ``bright_blood`` (``DB``: contrast-enhanced, not suppressed), the
two images one 3D VISIBLE-type acquisition gives, co-registered on one voxel grid.
Patient ids are ``DEMO-I###`` (internal cohort) and ``DEMO-E###`` (external cohort).
``n_lesions`` = K, the number of labels in ``lesions.nii.gz`` (0 for a case without
metastases; the label volume is then all zero).

**Geometry.** NIfTI-1, sform = qform (code 1), units mm, world RAS+ as NIfTI defines it;
voxels stored in RAS order or (some scanners) LPS order (first two axes flipped, as ITK
writes DICOM-ordered data): read the affine. All files of a patient share shape and
affine. The volume is an axial slab (``field_of_view_mm``: superior-inferior,
anterior-posterior, left-right) through the upper head: scalp, skull (tables and diploe),
CSF, cortex with sulci, white matter, deep grey matter, lateral and third ventricles with
choroid plexus, falx, and air around the head. Spacing per scanner from
``in_plane_spacing_mm`` and ``slice_thickness_mm`` (often anisotropic).

**Lesions.** ``lesions_per_case`` (inclusive range; fewer cases with many lesions) small
enhancing metastases per case, equivalent diameters log-uniform in
``lesion_diameter_mm`` (2-15 mm by default, so about 45 % are < 5 mm, 35 % 5-10 mm,
20 % > 10 mm), solid or (larger ones) ring-enhancing with a necrotic centre, the larger
ones with perilesional oedema; mostly at the grey-white junction, never in a ventricle,
never touching another lesion (at least two voxels apart). Each lesion is bright on both
sequences. Its label covers the voxels at least half inside it; a lesion smaller than
that (a 2 mm lesion in 2.5 mm voxels) is labelled by the voxel holding most of it, so
every lesion has at least one voxel.

**Vessel distractors** (the reason the study used both images): the superior sagittal
sinus, cortical veins draining to it, branching middle-cerebral-artery trees, the
internal cerebral veins and small medullary veins, tubular and enhancing. The
bright-blood image shows them bright (in cross-section they look like small lesions);
the black-blood image suppresses flowing blood, so they are dark there, with a little
residual signal that is higher in slow-flow veins. Choroid plexus and dura enhance on
both (distractors that both images share).

**Scanners.** A fixed park of eight MR scanners (own seed): vendor, field strength,
spacing, noise (Rician), bias field, per-tissue contrast, blur, contrast-agent
enhancement, vessel-suppression efficacy, storage order and intensity scale. Internal
patients are scanned on scanners 1-5, external ones on 4-8.

Everything derives from ``settings["seed"]`` through independent per-patient random
streams; files are gzip-compressed with a fixed mtime, so the same settings give
byte-identical files. Defaults of every setting live only in the config schema
(``docs/demo_schema_snippets_3d.yaml``); this module requires all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinedx.demo import patients

ROLES = ("black_blood", "bright_blood")
SETTING_KEYS = ("seed", "n_internal", "n_external", "sequences", "field_of_view_mm", "in_plane_spacing_mm",
                "slice_thickness_mm", "lesions_per_case", "lesion_diameter_mm", "vessel_trees")
CASE_COLUMNS = ["patient_id", "cohort", "n_lesions", "age", "sex", "scanner", "vendor", "field_strength_t"]
LESIONS = "lesions"  # planned_files key of the per-patient label volumes
IMAGE_FILE, LESION_FILE = "image.nii.gz", "lesions.nii.gz"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

_AGE = (62.0, 11.0, 30, 88)
_FEMALE_SHARE = 0.52

# Relative signal (white matter = 1) on (black blood, bright blood) before scanner effects.
_SIGNAL = {
    "air": (0.0, 0.0), "scalp": (1.45, 1.25), "bone": (0.08, 0.08), "diploe": (1.05, 0.9),
    "csf": (0.22, 0.30), "grey": (0.80, 0.85), "white": (1.0, 1.0), "deep_grey": (0.86, 0.9),
    "dura": (1.3, 1.35), "choroid": (1.5, 1.55), "oedema": (0.78, 0.8), "necrosis": (0.4, 0.45),
}
_VESSEL_BRIGHT = (2.4, 3.2)  # bright-blood signal of enhancing blood (range over vessels)
_N_SCANNERS = 8
_SCANNER_SEED = 5113
_SCANNERS_BY_COHORT = {"internal": range(0, 5), "external": range(3, 8)}
_VENDORS = ("Siemens", "GE", "Philips", "Canon")


@dataclass(frozen=True)
class _Scanner:
    name: str
    vendor: str
    field_strength: float
    in_plane: float  # position in the configured spacing range (0..1)
    thickness: float
    noise: float  # Rician noise sd relative to white matter
    bias: float  # bias field amplitude (log scale)
    blur_voxels: float
    contrast: tuple  # per sequence: per-tissue multiplicative factors (dict)
    enhancement: float  # lesion/vessel enhancement factor (agent, timing)
    suppression: float  # black-blood residual factor (0 perfect suppression)
    scale: float  # stored value of white matter
    storage: str


@dataclass(frozen=True)
class _Lesion:
    centre: tuple  # body frame (mm)
    radii: tuple  # ellipsoid semi-axes (mm)
    diameter: float  # equivalent sphere diameter (mm)
    ring: float  # ring thickness (mm); 0 = solid
    oedema: float  # oedema radius factor (0: none)
    enhancement: float


@dataclass(frozen=True)
class _Vessel:
    kind: str  # sinus | cortical_vein | artery | internal_vein | medullary_vein
    segments: tuple  # ((start xyz, end xyz, radius), ...)
    bright: float  # bright-blood signal
    residual: float  # black-blood residual fraction of ``bright``


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_id: str
    cohort: str
    age: int
    sex: str
    scanner: _Scanner
    grid: object  # phantom_volume.Grid
    translation: tuple
    brain: tuple  # brain ellipsoid semi-axes (mm), centred at ``brain_centre``
    brain_centre: tuple
    scalp: float
    skull: float
    ventricles: tuple  # ((centre, radii), ...) CSF ellipsoids
    deep_grey: tuple
    choroid: tuple
    lesions: tuple
    vessels: tuple
    noise_seed: int


# --- public API ----------------------------------------------------------------------------


def planned_files(settings: dict) -> dict[str, list[str]]:
    """Relative paths under ``images_dir`` that :func:`generate_demo_cohort` writes: one list
    per sequence folder, and the per-patient label volumes under the key ``"lesions"``."""
    settings = _checked(settings)
    ids = patients.two_cohort_ids(settings)
    files = {folder: [f"{patient_id}/{folder}/{IMAGE_FILE}" for patient_id in ids]
             for folder in (settings["sequences"][role] for role in ROLES)}
    files[LESIONS] = [f"{patient_id}/{LESION_FILE}" for patient_id in ids]
    return files


def generate_demo_cohort(images_dir, cases_csv, settings: dict):
    """Render every patient's two sequences and lesion labels; write the cases table.

    Returns the cases table (pandas DataFrame). Patient folders of an earlier demo run
    (``DEMO-I###``/``DEMO-E###``) are replaced; nothing else in ``images_dir`` is touched.
    """
    import pandas as pd

    from spinedx.demo.phantom_volume import write_nifti
    from spinedx.io import write_csv

    settings = _checked(settings)
    images_dir = Path(images_dir)
    patients.remove_earlier_patients(images_dir, patients.two_cohort_folders())
    rows = []
    for patient in _plan_cohort(settings):
        images, labels, affine, flips = render_patient(patient)
        for role in ROLES:
            folder = settings["sequences"][role]
            write_nifti(images_dir / patient.patient_id / folder / IMAGE_FILE, images[role], affine, flips, np.int16)
        write_nifti(images_dir / patient.patient_id / LESION_FILE, labels, affine, flips, np.uint8)
        scanner = patient.scanner
        rows.append((patient.patient_id, patient.cohort, len(patient.lesions), patient.age, patient.sex,
                     scanner.name, scanner.vendor, scanner.field_strength))
    cases = pd.DataFrame(rows, columns=CASE_COLUMNS)
    write_csv(cases, cases_csv)
    return cases


def render_patient(patient: _Patient):
    """``({role: int16 image}, uint8 labels, affine, flips)``, arrays in RAS order."""
    from scipy import ndimage

    from spinedx.demo import phantom_volume as pv

    rng = np.random.default_rng(patient.noise_seed)
    canvas = pv.Canvas(patient.grid, {role: 0.0 for role in ROLES})
    _paint_head(canvas, patient, rng)
    labels = _paint_lesions(canvas, patient)
    for vessel in patient.vessels:
        pieces = [_tube(start, end, radius) for start, end, radius in vessel.segments]
        window, fraction = pv.coverage_union(patient.grid, pieces, oversample=3)
        canvas.paint(window, fraction, {"black_blood": vessel.bright * vessel.residual, "bright_blood": vessel.bright})
    images = _acquire(canvas.volumes, patient, rng, ndimage)
    affine, flips = pv.storage_affine(patient.grid, patient.translation, patient.scanner.storage)
    return images, labels, affine, flips


# --- settings and cohort plan ----------------------------------------------------------------


def _checked(settings: dict) -> dict:
    """The settings, or ValueError naming the missing or bad key (defaults live in the schema)."""
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise ValueError(f"demo brain-metastasis settings lack {missing}; resolve them from the config schema")
    for key in ("n_internal", "n_external"):
        if int(settings[key]) < 0:
            raise ValueError(f"{key} must be a count >= 0, got {settings[key]!r}")
    sequences = settings["sequences"]
    if not isinstance(sequences, dict) or set(sequences) != set(ROLES):
        raise ValueError(f"sequences must name a folder for each of {list(ROLES)}, got {sequences!r}")
    folders = [str(sequences[role]) for role in ROLES]
    if len(set(folders)) < 2 or LESIONS in folders or not all(_SAFE_NAME.fullmatch(f) for f in folders):
        raise ValueError(f"sequences must be two different plain folder names (not {LESIONS!r}), got {sequences!r}")
    fov = settings["field_of_view_mm"]
    if len(fov) != 3 or not (20 <= float(fov[0]) <= 200 and all(120 <= float(f) <= 300 for f in fov[1:])):
        raise ValueError(f"field_of_view_mm must be [superior-inferior 20..200, anterior-posterior and "
                         f"left-right 120..300] mm, got {fov!r}")
    for key in ("in_plane_spacing_mm", "slice_thickness_mm"):
        low, high = settings[key]
        if not 0.3 <= float(low) <= float(high) <= 6.0:
            raise ValueError(f"{key} must be [low, high] with 0.3 <= low <= high <= 6 mm, got {settings[key]!r}")
    low, high = settings["lesions_per_case"]
    if not 0 <= int(low) <= int(high) <= 30:
        raise ValueError(f"lesions_per_case must be [low, high] with 0 <= low <= high <= 30, got {[low, high]!r}")
    low, high = settings["lesion_diameter_mm"]
    if not 1.0 <= float(low) <= float(high) <= 30.0:
        raise ValueError(f"lesion_diameter_mm must be [low, high] with 1 <= low <= high <= 30, got {[low, high]!r}")
    low, high = settings["vessel_trees"]
    if not 0 <= int(low) <= int(high) <= 20:
        raise ValueError(f"vessel_trees must be [low, high] with 0 <= low <= high <= 20, got {[low, high]!r}")
    return settings


def _plan_cohort(settings: dict) -> list[_Patient]:
    seed = int(settings["seed"])
    scanner_rng = np.random.default_rng(_SCANNER_SEED)
    scanners = [_draw_scanner(scanner_rng, i) for i in range(_N_SCANNERS)]
    planned = []
    for cohort, key, prefix in patients.TWO_COHORTS:
        for number in range(1, int(settings[key]) + 1):
            index = len(planned)
            rng = np.random.default_rng([seed, 3, index])
            scanner = scanners[int(rng.choice(list(_SCANNERS_BY_COHORT[cohort])))]
            planned.append(_draw_patient(rng, index, patients.patient_id(prefix, number), cohort, scanner, settings))
    return planned


def _draw_scanner(rng, index: int) -> _Scanner:
    tesla = float(rng.choice([1.5, 3.0, 3.0]))
    contrast = tuple({tissue: float(rng.normal(1.0, 0.05)) for tissue in _SIGNAL} for _ in ROLES)
    return _Scanner(
        name=f"MR{index + 1:02d}", vendor=_VENDORS[index % len(_VENDORS)], field_strength=tesla,
        in_plane=float(rng.random()), thickness=float(rng.random()),
        noise=float(rng.uniform(0.045, 0.07) if tesla < 2 else rng.uniform(0.025, 0.045)),
        bias=float(rng.uniform(0.04, 0.1) if tesla < 2 else rng.uniform(0.1, 0.22)),
        blur_voxels=float(rng.uniform(0.3, 0.6)), contrast=contrast,
        enhancement=float(rng.uniform(0.85, 1.15)), suppression=float(rng.uniform(0.6, 1.4)),
        scale=float(rng.uniform(400, 1500)), storage=str(rng.choice(["RAS", "LPS"])),
    )


def _draw_patient(rng, index, patient_id, cohort, scanner: _Scanner, settings) -> _Patient:
    from spinedx.demo import phantom_volume as pv

    mean, sd, low, high = _AGE
    age = int(np.clip(round(rng.normal(mean, sd)), low, high))
    sex = "F" if rng.random() < _FEMALE_SHARE else "M"
    size = rng.normal(1.0, 0.035) * (1.03 if sex == "M" else 0.98)
    brain = tuple(float(size * b) for b in (rng.uniform(62, 68), rng.uniform(78, 86), rng.uniform(60, 66)))
    brain_centre = (0.0, -3.0, 5.0)
    scalp, skull = float(rng.uniform(4.5, 8.0)), float(rng.uniform(5.5, 8.0))

    # Ventricles enlarge with age (atrophy).
    vs = float(np.clip(0.8 + 0.012 * (age - 40) + rng.normal(0, 0.1), 0.7, 1.6))
    vz = brain_centre[2] + rng.uniform(8, 14)
    ventricles = []
    for side in (1, -1):
        ventricles += [((side * 7 * vs, 16.0, vz - 2), (5 * vs, 12.0, 7 * vs)),  # frontal horn
                       ((side * 6 * vs, -8.0, vz + 2), (4.5 * vs, 20.0, 5 * vs)),  # body
                       ((side * 12 * vs, -32.0, vz - 5), (6 * vs, 10.0, 8 * vs))]  # atrium
    ventricles.append(((0.0, -2.0, vz - 15), (1.5 * vs, 12.0, 8.0)))  # third ventricle
    deep_grey = []
    for side in (1, -1):
        deep_grey += [((side * 11.0, -12.0, vz - 15), (8.0, 13.0, 9.0)),  # thalamus
                      ((side * 23.0, 3.0, vz - 12), (6.0, 14.0, 9.0)),  # lentiform nucleus
                      ((side * 12 * vs, 14.0, vz - 4), (4.0, 7.0, 7.0))]  # caudate head
    choroid = tuple(((side * 12 * vs, -31.0, vz - 5), (3.0, 5.0, 3.0)) for side in (1, -1))

    in_plane = _between(settings["in_plane_spacing_mm"], scanner.in_plane)
    thickness = _between(settings["slice_thickness_mm"], scanner.thickness)
    fov_si, fov_ap, fov_lr = (float(f) for f in settings["field_of_view_mm"])
    # The slab covers the lateral ventricles and the convexity above them.
    centre = (float(rng.normal(0, 3)), float(brain_centre[1] + rng.normal(0, 4)),
              float(vz + fov_si / 2 - 22 + rng.normal(0, 4)))
    grid = pv.Grid.covering(centre, (fov_lr, fov_ap, fov_si), (in_plane, in_plane, thickness))
    translation = (float(rng.normal(0, 5)), float(rng.normal(20, 10)), float(rng.normal(10, 10)))

    anatomy = dict(brain=brain, brain_centre=brain_centre, ventricles=tuple(ventricles))
    lesions = _draw_lesions(rng, settings, grid, anatomy, scanner)
    vessels = _draw_vessels(rng, settings, anatomy, vz, scanner)
    return _Patient(index=index, patient_id=patient_id, cohort=cohort, age=age, sex=sex, scanner=scanner, grid=grid,
                    translation=translation, brain=brain, brain_centre=brain_centre, scalp=scalp, skull=skull,
                    ventricles=tuple(ventricles), deep_grey=tuple(deep_grey), choroid=choroid, lesions=lesions,
                    vessels=vessels, noise_seed=int(rng.integers(2**63)))


def _between(bounds, position: float) -> float:
    low, high = (float(b) for b in bounds)
    return low + position * (high - low)


def _lesion_count(rng, low: int, high: int) -> int:
    """Fewer patients with many metastases: weights 0.6 for none, then 0.8**(k-1)."""
    counts = np.arange(low, high + 1)
    weights = np.where(counts == 0, 0.6, 0.8 ** np.maximum(counts - 1, 0))
    return int(rng.choice(counts, p=weights / weights.sum()))


def _brain_radius(point, anatomy) -> float:
    """Ellipsoidal radius of ``point`` in the brain (1 = brain surface)."""
    offset = np.asarray(point) - np.asarray(anatomy["brain_centre"])
    return float(np.sqrt(np.sum((offset / np.asarray(anatomy["brain"])) ** 2)))


def _draw_lesions(rng, settings, grid, anatomy, scanner: _Scanner) -> tuple:
    """Metastases inside the slab's brain, out of the ventricles, apart from each other."""
    n = _lesion_count(rng, *(int(v) for v in settings["lesions_per_case"]))
    d_low, d_high = (float(v) for v in settings["lesion_diameter_mm"])
    z_low, z_high = grid.origin[2], grid.origin[2] + grid.spacing[2] * (grid.shape[2] - 1)
    gap = 2.0 * max(grid.spacing) + 1.0  # two voxels between lesions: never one component
    lesions = []
    for _ in range(n):
        diameter = float(np.exp(rng.uniform(np.log(d_low), np.log(d_high))))
        radius = diameter / 2
        for _attempt in range(500):
            centre = np.asarray(anatomy["brain_centre"]) + rng.uniform(-1, 1, 3) * np.asarray(anatomy["brain"])
            rho = _brain_radius(centre, anatomy)
            # Grey-white junction preferred; the lesion stays inside the brain.
            if rho > 0.92 - radius / min(anatomy["brain"]) or rho < 0.25:
                continue
            if rng.random() > 0.3 + 0.7 * np.exp(-((rho - 0.78) / 0.12) ** 2):
                continue
            if not z_low + radius + grid.spacing[2] <= centre[2] <= z_high - radius - grid.spacing[2]:
                continue
            if any(np.sqrt(np.sum(((centre - np.asarray(c)) / (np.asarray(r) + radius + 3.0)) ** 2)) < 1
                   for c, r in anatomy["ventricles"]):
                continue
            if any(np.linalg.norm(centre - np.asarray(other.centre)) < radius + other.diameter / 2 + gap
                   for other in lesions):
                continue
            break
        else:
            continue  # no room left: the case has fewer lesions (n_lesions says how many)
        stretch = rng.uniform(0.85, 1.15, 3)
        stretch /= np.cbrt(np.prod(stretch))  # same volume as the sphere of ``diameter``
        # Ring enhancement (larger lesions, necrotic centre): the rim is a fifth to a third of
        # the diameter, 1.5-3.5 mm.
        ring = 0.0
        if diameter >= 7 and rng.random() < 0.6:
            ring = float(np.clip(rng.uniform(0.2, 0.3) * diameter, 1.5, 3.5))
        oedema = float(rng.uniform(1.6, 2.6)) if diameter >= 6 and rng.random() < 0.7 else 0.0
        lesions.append(_Lesion(centre=tuple(float(c) for c in centre), radii=tuple(float(radius * s) for s in stretch),
                               diameter=diameter, ring=ring, oedema=oedema,
                               enhancement=float(rng.uniform(1.7, 2.3) * scanner.enhancement)))
    return tuple(lesions)


def _on_surface(point, anatomy, rho: float) -> np.ndarray:
    """``point`` moved along its ray from the brain centre to ellipsoidal radius ``rho``."""
    centre = np.asarray(anatomy["brain_centre"])
    offset = np.asarray(point) - centre
    return centre + offset * rho / max(_brain_radius(point, anatomy), 1e-6)


def _draw_vessels(rng, settings, anatomy, vz: float, scanner: _Scanner) -> tuple:
    """Sagittal sinus, cortical veins, MCA branches, internal cerebral and medullary veins."""
    brain, centre = np.asarray(anatomy["brain"]), np.asarray(anatomy["brain_centre"])
    enhancement = scanner.enhancement
    vessels = []

    def vessel(kind, points, radii, residual):
        segments = tuple((tuple(float(c) for c in a), tuple(float(c) for c in b), float(r))
                         for a, b, r in zip(points[:-1], points[1:], radii))
        bright = float(rng.uniform(*_VESSEL_BRIGHT) * enhancement)
        vessels.append(_Vessel(kind, segments, bright, float(np.clip(residual * scanner.suppression, 0, 0.9))))

    # Superior sagittal sinus: over the midline, just inside the skull.
    angles = np.linspace(0.12 * np.pi, 0.92 * np.pi, 14)
    points = [centre + np.array([0.0, (brain[1] + 2.5) * np.cos(a), (brain[2] + 2.5) * np.sin(a)]) for a in angles]
    vessel("sinus", points, [rng.uniform(2.8, 3.8)] * 13, rng.uniform(0.08, 0.2))

    n_trees = int(rng.integers(int(settings["vessel_trees"][0]), int(settings["vessel_trees"][1]) + 1))
    n_arteries = n_trees // 2
    for _ in range(n_trees - n_arteries):  # cortical veins climbing the convexity to the sinus
        start = centre + brain * np.array([rng.choice([-1, 1]) * rng.uniform(0.7, 0.95), rng.uniform(-0.6, 0.6),
                                           rng.uniform(-0.1, 0.4)])
        points = [_on_surface(start, anatomy, 0.97)]
        for _step in range(int(rng.integers(8, 15))):
            target = centre + np.array([0.0, points[-1][1] - centre[1], brain[2]])
            step = target - points[-1]
            step = step / np.linalg.norm(step) * 6.0 + rng.normal(0, 2.0, 3)
            points.append(_on_surface(points[-1] + step, anatomy, 0.97))
            if abs(points[-1][0] - centre[0]) < 6:
                break
        radius = rng.uniform(0.9, 1.6)
        vessel("cortical_vein", points, np.linspace(radius * 0.8, radius, len(points) - 1), rng.uniform(0.1, 0.3))
    for _ in range(n_arteries):  # middle cerebral artery branches fanning out from the Sylvian fissure
        side = rng.choice([-1, 1])
        root = centre + np.array([side * rng.uniform(0.55, 0.7) * brain[0], rng.uniform(-0.05, 0.25) * brain[1],
                                  rng.uniform(-0.1, 0.15) * brain[2]])
        direction = np.array([side * 0.5, rng.uniform(-0.6, 0.2), 1.0])
        _branch(rng, vessel, anatomy, root, direction / np.linalg.norm(direction), rng.uniform(1.3, 1.8), 0)
    for side in (1, -1):  # internal cerebral veins under the ventricles' bodies
        points = [np.array([side * 2.5, y, vz - 6 + 0.05 * (y - 10)]) for y in np.linspace(12, -32, 8)]
        vessel("internal_vein", points, [rng.uniform(1.0, 1.3)] * 7, rng.uniform(0.15, 0.3))
    for _ in range(int(rng.integers(6, 14))):  # medullary veins: short, radial, slow flow
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        start = centre + direction * brain * rng.uniform(0.3, 0.5)
        end = start + direction * rng.uniform(8, 15)
        vessel("medullary_vein", [start, end], [rng.uniform(0.55, 0.85)], rng.uniform(0.2, 0.45))
    return tuple(vessels)


def _branch(rng, vessel, anatomy, start, direction, radius, generation) -> None:
    """One arterial branch (a few segments) and, recursively, its two daughters."""
    points = [np.asarray(start)]
    for _ in range(int(rng.integers(2, 4))):
        direction = direction + rng.normal(0, 0.25, 3)
        direction /= np.linalg.norm(direction)
        point = points[-1] + direction * rng.uniform(5, 9)
        if _brain_radius(point, anatomy) > 0.96:
            point = _on_surface(point, anatomy, 0.96)
        points.append(point)
    vessel("artery", points, [radius] * (len(points) - 1), rng.uniform(0.03, 0.12))
    if generation < 2 and radius * 0.75 >= 0.6:
        for turn in (-1, 1):
            daughter = direction + turn * rng.uniform(0.4, 0.8) * np.cross(direction, rng.normal(size=3))
            _branch(rng, vessel, anatomy, points[-1], daughter / np.linalg.norm(daughter), radius * 0.75,
                    generation + 1)


# --- rendering -------------------------------------------------------------------------------


def _values(patient: _Patient, tissue: str) -> dict:
    """Per-sequence signal of a tissue on this patient's scanner."""
    return {role: _SIGNAL[tissue][k] * patient.scanner.contrast[k][tissue] for k, role in enumerate(ROLES)}


def _tube(start, end, radius):
    from spinedx.demo.phantom_volume import segment_distance

    low = np.minimum(start, end) - radius
    high = np.maximum(start, end) + radius

    def inside(X, Y, Z):
        distance, _ = segment_distance(X, Y, Z, start, end)
        return distance <= radius

    return low, high, inside


def _paint_head(canvas, patient: _Patient, rng) -> None:
    """Scalp, skull, CSF, cortex with sulci, white matter, deep grey, ventricles, falx."""
    from spinedx.demo import phantom_volume as pv

    cx, cy, cz = patient.brain_centre
    bx, by, bz = patient.brain
    csf_gap = 2.5
    head = (bx + csf_gap + patient.skull + patient.scalp, by + csf_gap + patient.skull + patient.scalp,
            bz + csf_gap + patient.skull + patient.scalp)
    gyri = pv.wave_field(rng, 10, (25.0, 45.0))
    sulci = pv.wave_field(rng, 12, (18.0, 32.0))
    fingers = pv.wave_field(rng, 10, (14.0, 24.0))

    def radius(X, Y, Z, axes):
        return np.sqrt(((X - cx) / axes[0]) ** 2 + ((Y - cy) / axes[1]) ** 2 + ((Z - cz) / axes[2]) ** 2)

    def shell(inset):
        axes = tuple(a - inset for a in head)
        return (np.array([cx, cy, cz]) - axes, np.array([cx, cy, cz]) + axes,
                lambda X, Y, Z: radius(X, Y, Z, axes) <= 1)

    for inset, tissue in ((0.0, "scalp"), (patient.scalp, "bone"), (patient.scalp + 1.8, "diploe"),
                          (patient.scalp + patient.skull - 1.8, "bone"), (patient.scalp + patient.skull, "csf")):
        canvas.shape(*shell(inset), _values(patient, tissue))
    low, high = np.array([cx - bx, cy - by, cz - bz]) - 2, np.array([cx + bx, cy + by, cz + bz]) + 2

    def brain(X, Y, Z):
        return radius(X, Y, Z, patient.brain) <= 1 + 0.02 * gyri(X, Y, Z)

    def white(X, Y, Z):
        depth = 1 - radius(X, Y, Z, patient.brain)  # about 0.05 = 3.5 mm under the surface
        return depth >= 0.055 + 0.03 * fingers(X, Y, Z)

    canvas.shape(low, high, brain, _values(patient, "grey"))
    canvas.shape(low, high, white, _values(patient, "white"))
    for centre, radii in patient.deep_grey:
        canvas.shape(*pv.ellipsoid(centre, radii), _values(patient, "deep_grey"))

    def sulcus(X, Y, Z):
        rho = radius(X, Y, Z, patient.brain)
        return (rho > 0.88) & (np.abs(sulci(X, Y, Z)) < 0.11) & (rho <= 1.02)

    canvas.shape(low, high, sulcus, _values(patient, "csf"))
    vz = patient.ventricles[1][0][2]

    def fissure(X, Y, Z):  # interhemispheric fissure above the corpus callosum
        above = (Z > vz + 10) | (Y > cy + 32) | (Y < cy - 45)
        return (np.abs(X - cx) < 1.1) & above

    canvas.shape(np.array([cx - 3, cy - by - 3, cz - bz]), np.array([cx + 3, cy + by + 3, cz + bz + 3]),
                 lambda X, Y, Z: fissure(X, Y, Z) & (radius(X, Y, Z, patient.brain) <= 1.03), _values(patient, "csf"))
    canvas.shape(np.array([cx - 1, cy - by - 3, cz - bz]), np.array([cx + 1, cy + by + 3, cz + bz + 3]),
                 lambda X, Y, Z: fissure(X, Y, Z) & (np.abs(X - cx) < 0.5) & (radius(X, Y, Z, patient.brain) <= 1.03),
                 _values(patient, "dura"), oversample=3)
    for centre, radii in patient.ventricles:
        canvas.shape(*pv.ellipsoid(centre, radii), _values(patient, "csf"))
    for centre, radii in patient.choroid:
        canvas.shape(*pv.ellipsoid(centre, radii), _values(patient, "choroid"), oversample=3)


def _paint_lesions(canvas, patient: _Patient) -> np.ndarray:
    """Oedema, then each enhancing lesion (solid or ring); returns the label volume."""
    from spinedx.demo import phantom_volume as pv

    grid = patient.grid
    labels = np.zeros(grid.shape, np.uint8)
    for lesion in patient.lesions:
        if lesion.oedema:
            radii = tuple(r * lesion.oedema for r in lesion.radii)
            low, high, inside = pv.ellipsoid(lesion.centre, radii)
            brain = patient.brain

            def oedema(X, Y, Z, inside=inside):  # spreads in white matter, spares the cortex
                rho = np.sqrt(sum(((c - m) / a) ** 2 for c, m, a in zip((X, Y, Z), patient.brain_centre, brain)))
                return inside(X, Y, Z) & (rho < 0.93)

            canvas.shape(low, high, oedema, _values(patient, "oedema"))
    for number, lesion in enumerate(patient.lesions, start=1):
        low, high, inside = pv.ellipsoid(lesion.centre, lesion.radii)
        window, fraction = pv.coverage(grid, low, high, inside, oversample=4)
        level = {role: lesion.enhancement * (0.95 if role == "bright_blood" else 1.0) for role in ROLES}
        canvas.paint(window, fraction, level)
        if lesion.ring:
            core = tuple(max(r - lesion.ring, 0.3) for r in lesion.radii)
            canvas.shape(*pv.ellipsoid(lesion.centre, core), _values(patient, "necrosis"), oversample=3)
        block = labels[window]
        chosen = fraction >= 0.5
        if not chosen.any():  # smaller than a voxel: the voxel holding most of it
            chosen = fraction == fraction.max()
        block[chosen & (block == 0)] = number
    return labels


def _acquire(volumes: dict, patient: _Patient, rng, ndimage) -> dict:
    """Bias field, blur, Rician noise and the scanner's intensity scale; int16 per sequence."""
    from spinedx.demo import phantom_volume as pv

    scanner, grid = patient.scanner, patient.grid
    # Coil sensitivity: smooth over tens of millimetres, mostly shared by both images.
    shared = pv.smooth_noise(rng, grid.shape, tuple(25.0 / s for s in grid.spacing), ndimage)
    images = {}
    for role in ROLES:
        own = pv.smooth_noise(rng, grid.shape, tuple(40.0 / s for s in grid.spacing), ndimage)
        image = volumes[role] * np.exp(scanner.bias * (shared + 0.3 * own))
        image = ndimage.gaussian_filter(image, scanner.blur_voxels, mode="nearest")
        sd = scanner.noise * rng.uniform(0.9, 1.1)
        image = np.hypot(image + rng.normal(0, sd, grid.shape), rng.normal(0, sd, grid.shape))
        images[role] = np.clip(np.round(image * scanner.scale * rng.uniform(0.95, 1.05)), 0, 32767).astype(np.int16)
    return images
