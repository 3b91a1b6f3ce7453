"""Built-in CT study: malignant vs osteoporotic vertebral compression fractures (volumes).

Written exactly as a real study folder of this kind is brought to spinedx::

    <images_dir>/<patient_id>/<sequence>/image.nii.gz   CT volume, int16 Hounsfield units
    <images_dir>/<patient_id>/<sequence>/mask.nii.gz    uint8, 1 = the fractured vertebral body
    <cases_csv>   patient_id, diagnosis, cohort, age, sex, level, scanner, vendor, kvp, kernel

``<sequence>`` is ``settings["sequence"]`` (``CT``); patient ids are ``DEMO-I###``
(internal cohort) and ``DEMO-E###`` (external cohort); ``diagnosis`` is ``malignant`` or
``osteoporotic``; ``level`` names the fractured vertebra (T12..L4).

**Geometry.** NIfTI-1, sform = qform (code 1), units mm, world RAS+ as NIfTI defines it.
Voxels are stored in RAS order (affine diagonal +) or, for about half the scanners, in
LPS order (first two axes flipped, negative diagonal entries) as ITK writes DICOM-ordered
data: read the affine, never assume an axis order. Image and mask share shape and affine.
Spacing is per scanner: in-plane ``in_plane_spacing_mm``, slices ``slice_thickness_mm``
(contiguous), so most scanners are anisotropic. The field of view
(``field_of_view_mm``: superior-inferior, anterior-posterior, left-right) is centred
on the spinal canal at the fractured level, so it shows the fractured vertebra, one
whole vertebra above and below, parts of the next ones, the discs, canal, posterior
elements, paraspinal muscles, prevertebral fat and vessels, and in most patients the
skin of the back, air and the CT table behind it.

**The mask** marks the fractured vertebra's body as it is after the fracture: the
collapsed body inside its (possibly convex) cortical outline, including lytic foci
within that outline, the fracture gap and a retropulsed posterior-superior fragment (one
connected piece); it excludes the
posterior elements (pedicles, laminae, processes), the discs and any soft-tissue mass
outside the outline. A voxel is in the mask when at least half of it lies in the body.

**Classes.** Malignant (metastatic) fractures: lytic trabecular and cortical
destruction, pedicle/posterior-element involvement, a paravertebral and/or epidural
soft-tissue mass, a convex posterior border, sometimes other vertebral metastases;
patients younger and less often women, with bone density of their age. Osteoporotic
fractures: a band-like sclerotic (impaction) zone under the collapsed endplate (CT's
counterpart of the MR oedema band), a retropulsed posterior-superior fragment, preserved
posterior elements, sometimes an intravertebral vacuum cleft or a thin symmetric
haematoma, and diffusely low bone density; patients older, mostly women. Each sign has a
probability below one, and about ``atypical_share`` of patients take one or two of the
four feature groups (density, body pattern, posterior border/elements, soft tissue) from
the other class: the deliberate overlap that keeps the task from being trivial.

**Scanners.** A fixed park of nine CT scanners (own seed): vendor, kVp (bone HU scale
with it), reconstruction kernel (standard: smoother, less noise; bone: sharper with
edge overshoot and more noise), spacing, noise level, beam-hardening-like bias (cupping
and dark streaks between the pedicles), a calibration offset and the storage order.
Internal patients are scanned on scanners 1-6, external ones on 4-9.

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

DIAGNOSES = ("malignant", "osteoporotic")
SETTING_KEYS = ("seed", "n_internal", "n_external", "sequence", "field_of_view_mm", "in_plane_spacing_mm",
                "slice_thickness_mm", "atypical_share")
CASE_COLUMNS = ["patient_id", "diagnosis", "cohort", "age", "sex", "level", "scanner", "vendor", "kvp", "kernel"]
IMAGE_FILE, MASK_FILE = "image.nii.gz", "mask.nii.gz"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Demographics (shape of published VCF cohorts: osteoporotic patients older, mostly women).
_AGE = {"malignant": (63.0, 11.0, 35, 90), "osteoporotic": (73.0, 8.0, 50, 95)}
_FEMALE_SHARE = {"malignant": 0.42, "osteoporotic": 0.74}
_LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
_FRACTURE_LEVEL_P = {  # T12, L1, L2, L3, L4: osteoporotic fractures cluster at the junction
    "malignant": (0.16, 0.22, 0.22, 0.2, 0.2),
    "osteoporotic": (0.3, 0.3, 0.2, 0.12, 0.08),
}
_FEATURE_GROUPS = ("density", "body", "posterior", "soft_tissue")

# Tissue Hounsfield units before scanner effects.
_HU = {"air": -1000.0, "fat": -100.0, "muscle": 48.0, "blood": 42.0, "csf": 8.0, "annulus": 88.0,
       "nucleus": 68.0, "haematoma": 55.0, "gas": -850.0, "fracture_gap": 60.0}

_N_SCANNERS = 9
_SCANNER_SEED = 4021
_SCANNERS_BY_COHORT = {"internal": range(0, 6), "external": range(3, 9)}
_VENDORS = ("Siemens", "GE", "Philips", "Canon", "United Imaging")


@dataclass(frozen=True)
class _Scanner:
    name: str
    vendor: str
    kvp: int
    kernel: str  # "standard" | "bone"
    in_plane: float  # position in the configured spacing range (0..1)
    thickness: float  # position in the configured thickness range (0..1)
    blur_mm: float  # in-plane point-spread sd
    noise_hu: float
    cupping_hu: float
    streak_hu: float
    offset_hu: float
    storage: str  # "RAS" | "LPS"


@dataclass(frozen=True)
class _Level:
    name: str
    frame: object  # phantom_volume.Frame at the body centre: u right, v anterior, w superior
    height: float
    half_width: float
    half_depth: float
    canal_half_width: float
    canal_half_depth: float
    pedicle_half_width: float
    spinous_length: float
    transverse_length: float
    disc_below: float  # height of the disc under this body (mm)
    degenerated: bool  # disc below: desiccated (lower nucleus HU)


@dataclass(frozen=True)
class _Fracture:
    level: int  # index into the patient's levels
    top_loss: tuple  # superior endplate depression (base, anterior wedge, central), mm
    bottom_loss: tuple
    posterior_bulge: float  # mm; + convex posterior border, - the normal slight concavity
    lytic_foci: tuple  # ((u, v, w), (ru, rv, rw)) in the level frame
    pedicle_lysis: tuple  # (side, radius): side +1 right, -1 left
    masses: tuple  # paravertebral / epidural soft tissue, ((u, v, w), (ru, rv, rw))
    tumour_hu: float
    haematoma_mm: float  # thin symmetric paravertebral haematoma (0: none)
    band: tuple | None  # (thickness mm, extra HU) sclerotic impaction band under the endplate
    vacuum: tuple | None  # (w offset from the band, thickness) intravertebral gas cleft
    fragment: tuple | None  # (depth, height, posterior shift) retropulsed fragment, mm


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_id: str
    diagnosis: str
    cohort: str
    age: int
    sex: str
    scanner: _Scanner
    grid: object  # phantom_volume.Grid
    translation: tuple  # body frame -> scanner coordinates (mm)
    levels: tuple
    fracture: _Fracture
    other_foci: tuple  # ((level, (u, v, w), radius, hu), ...): metastases / bone islands
    trabecular_hu: float
    texture_hu: float
    cortex_hu: float
    trunk: tuple  # (centre y, half width, half depth) of the body wall outline
    subcutaneous_fat: float
    erector: tuple  # (centre offset u, v, radius u, radius v)
    psoas_scale: float
    aortic_calcification: bool
    table_gap: float  # air between the skin of the back and the table top (mm)
    atypical: tuple  # swapped feature groups (for tests and benchmarks; not written)
    noise_seed: int  # textures and scanner noise


# --- public API ----------------------------------------------------------------------------


def planned_files(settings: dict) -> dict[str, list[str]]:
    """Relative paths under ``images_dir`` that :func:`generate_demo_cohort` writes, per
    sequence (one: the CT), computed without rendering so the workflow can declare them."""
    settings = _checked(settings)
    sequence = settings["sequence"]
    return {sequence: [f"{patient_id}/{sequence}/{name}" for patient_id in patients.two_cohort_ids(settings)
                       for name in (IMAGE_FILE, MASK_FILE)]}


def generate_demo_cohort(images_dir, cases_csv, settings: dict):
    """Render every patient's CT volume and fractured-body mask and write the cases table.

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
        image, mask, affine, flips = render_patient(patient)
        folder = images_dir / patient.patient_id / settings["sequence"]
        write_nifti(folder / IMAGE_FILE, image, affine, flips, np.int16)
        write_nifti(folder / MASK_FILE, mask, affine, flips, np.uint8)
        scanner = patient.scanner
        rows.append((patient.patient_id, patient.diagnosis, patient.cohort, patient.age, patient.sex,
                     patient.levels[patient.fracture.level].name, scanner.name, scanner.vendor, scanner.kvp,
                     scanner.kernel))
    cases = pd.DataFrame(rows, columns=CASE_COLUMNS)
    write_csv(cases, cases_csv)
    return cases


def render_patient(patient: _Patient):
    """``(image int16 HU, mask uint8, affine, flips)`` of one patient, arrays in RAS order."""
    from scipy import ndimage

    from spinedx.demo import phantom_volume as pv

    rng = np.random.default_rng(patient.noise_seed)
    canvas = pv.Canvas(patient.grid, {"ct": _HU["air"]})
    _paint_soft_tissue(canvas, patient, rng, ndimage)
    mask = _paint_spine(canvas, patient, rng, ndimage)
    image = _acquire(canvas.volumes["ct"], patient, rng, ndimage)
    affine, flips = pv.storage_affine(patient.grid, patient.translation, patient.scanner.storage)
    return image, mask, affine, flips


# --- settings and cohort plan ----------------------------------------------------------------


def _checked(settings: dict) -> dict:
    """The settings, or ValueError naming the missing or bad key (defaults live in the schema)."""
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise ValueError(f"demo vertebral CT settings lack {missing}; resolve them from the config schema")
    for key in ("n_internal", "n_external"):
        counts = settings[key]
        if not isinstance(counts, dict) or set(counts) - set(DIAGNOSES) or any(int(n) < 0 for n in counts.values()):
            raise ValueError(f"{key} must map {list(DIAGNOSES)} to counts >= 0, got {counts!r}")
    if not _SAFE_NAME.fullmatch(str(settings["sequence"])):
        raise ValueError(f"sequence must be a plain folder name (letters, digits, _.-), got {settings['sequence']!r}")
    fov = settings["field_of_view_mm"]
    if len(fov) != 3 or not all(60 <= float(f) <= 400 for f in fov):
        raise ValueError(f"field_of_view_mm must be [superior-inferior, anterior-posterior, left-right] in "
                         f"60..400 mm, got {fov!r}")
    for key in ("in_plane_spacing_mm", "slice_thickness_mm"):
        low, high = settings[key]
        if not 0.3 <= float(low) <= float(high) <= 6.0:
            raise ValueError(f"{key} must be [low, high] with 0.3 <= low <= high <= 6 mm, got {settings[key]!r}")
    if not 0.0 <= float(settings["atypical_share"]) <= 1.0:
        raise ValueError(f"atypical_share must lie in [0, 1], got {settings['atypical_share']!r}")
    return settings


def _plan_cohort(settings: dict) -> list[_Patient]:
    """Every patient's identity, demographics, scanner, anatomy and fracture."""
    seed = int(settings["seed"])
    scanner_rng = np.random.default_rng(_SCANNER_SEED)
    scanners = [_draw_scanner(scanner_rng, i) for i in range(_N_SCANNERS)]
    assign_rng = np.random.default_rng([seed, 1])
    planned = []
    for cohort, key, prefix in patients.TWO_COHORTS:
        for number, diagnosis in enumerate(patients.shuffled_classes(settings[key], DIAGNOSES, assign_rng), start=1):
            index = len(planned)
            rng = np.random.default_rng([seed, 3, index])
            scanner = scanners[int(rng.choice(list(_SCANNERS_BY_COHORT[cohort])))]
            planned.append(_draw_patient(rng, index, patients.patient_id(prefix, number), diagnosis, cohort, scanner,
                                         settings))
    return planned


def _draw_scanner(rng, index: int) -> _Scanner:
    kernel = "bone" if rng.random() < 0.35 else "standard"
    return _Scanner(
        name=f"CT{index + 1:02d}",
        vendor=_VENDORS[index % len(_VENDORS)],
        kvp=int(rng.choice([100, 120, 120, 140])),
        kernel=kernel,
        in_plane=float(rng.random()),
        thickness=float(rng.random()),
        blur_mm=float(rng.uniform(0.35, 0.5) if kernel == "bone" else rng.uniform(0.7, 1.0)),
        noise_hu=float(rng.uniform(28, 45) if kernel == "bone" else rng.uniform(10, 22)),
        cupping_hu=float(rng.uniform(0, 35)),
        streak_hu=float(rng.uniform(0, 45)),
        offset_hu=float(rng.normal(0, 6)),
        storage=str(rng.choice(["RAS", "LPS"])),
    )


def _draw_patient(rng, index, patient_id, diagnosis, cohort, scanner: _Scanner, settings) -> _Patient:
    from spinedx.demo import phantom_volume as pv

    mean, sd, low, high = _AGE[diagnosis]
    age = int(np.clip(round(rng.normal(mean, sd)), low, high))
    sex = "F" if rng.random() < _FEMALE_SHARE[diagnosis] else "M"
    other = DIAGNOSES[1 - DIAGNOSES.index(diagnosis)]
    swapped = ()
    if rng.random() < float(settings["atypical_share"]):
        n_swapped = 1 if rng.random() < 0.6 else 2
        swapped = tuple(sorted(str(g) for g in rng.choice(_FEATURE_GROUPS, size=n_swapped, replace=False)))
    source = {g: other if g in swapped else diagnosis for g in _FEATURE_GROUPS}

    # Bone density falls with age, faster in post-menopausal women; osteoporosis lowers it more.
    trabecular = 235 - 2.0 * (age - 30) - (22 if sex == "F" and age > 50 else 0) + rng.normal(0, 28)
    if source["density"] == "osteoporotic":
        trabecular -= rng.uniform(8, 30)
    trabecular = float(np.clip(trabecular, 35, 280))
    texture = float(rng.uniform(22, 34) if source["density"] == "osteoporotic" else rng.uniform(14, 24))

    size = rng.normal(1.0, 0.04) * (1.04 if sex == "M" else 1.0)
    fractured = 2 + int(rng.choice(5, p=_FRACTURE_LEVEL_P[diagnosis]))  # index in _LEVELS (T12..L4)
    levels = _draw_levels(rng, size, age, fractured)
    fracture = _draw_fracture(rng, source, levels[fractured], fractured)

    other_foci = []
    n_metastases = int(rng.integers(1, 3)) if diagnosis == "malignant" and rng.random() < 0.35 else 0
    n_islands = 1 if rng.random() < (0.08 if diagnosis == "osteoporotic" else 0.04) else 0
    for k in range(n_metastases + n_islands):
        level = int(rng.choice([i for i in range(len(levels)) if i != fractured and abs(i - fractured) <= 2]))
        lv = levels[level]
        centre = (rng.uniform(-0.5, 0.5) * lv.half_width, rng.uniform(-0.5, 0.5) * lv.half_depth,
                  rng.uniform(-0.3, 0.3) * lv.height)
        if k < n_metastases:
            hu = float(rng.uniform(30, 55) if rng.random() < 0.7 else rng.uniform(500, 800))  # lytic / blastic
            radius = float(rng.uniform(3.5, 7.0))
        else:
            hu, radius = float(rng.uniform(600, 900)), float(rng.uniform(2.0, 4.0))
        other_foci.append((level, centre, radius, hu))

    in_plane = _between(settings["in_plane_spacing_mm"], scanner.in_plane)
    thickness = _between(settings["slice_thickness_mm"], scanner.thickness)
    fov_si, fov_ap, fov_lr = (float(f) for f in settings["field_of_view_mm"])
    body = levels[fractured]
    canal = -body.half_depth - body.canal_half_depth - 0.5
    centre = body.frame.to_body(0.0, canal, 0.0) + rng.normal(0, [3.0, 4.0, 4.0])
    grid = pv.Grid.covering(centre, (fov_lr, fov_ap, fov_si), (in_plane, in_plane, thickness))
    translation = (float(rng.normal(0, 15)), float(rng.uniform(-200, -120)), float(rng.uniform(-650, -350)))

    # Trunk outline: the spine lies in its posterior part; subcutaneous fat varies widely.
    fat = float(rng.uniform(6, 38) + (6 if sex == "F" else 0))
    canal_back = body.frame.to_body(0.0, -body.half_depth - 2 * body.canal_half_depth, 0.0)[1]
    back = canal_back - rng.uniform(40, 50) - fat  # skin of the back (y, mm)
    half_depth = float(rng.uniform(95, 125))
    trunk = (float(back + half_depth), float(rng.uniform(140, 175)), half_depth)
    erector = (float(rng.uniform(20, 26)), float(rng.uniform(24, 30)), float(rng.uniform(17, 23)),
               float(rng.uniform(15, 20)))
    return _Patient(
        index=index, patient_id=patient_id, diagnosis=diagnosis, cohort=cohort, age=age, sex=sex, scanner=scanner,
        grid=grid, translation=translation, levels=levels, fracture=fracture, other_foci=tuple(other_foci),
        trabecular_hu=trabecular, texture_hu=texture, cortex_hu=float(560 + 2.0 * trabecular + rng.normal(0, 40)),
        trunk=trunk, subcutaneous_fat=fat, erector=erector, psoas_scale=float(rng.uniform(0.8, 1.25)),
        aortic_calcification=bool(rng.random() < (age - 40) / 60), table_gap=float(rng.uniform(1.0, 8.0)),
        atypical=swapped,
        noise_seed=int(rng.integers(2**63)),
    )


def _between(bounds, position: float) -> float:
    low, high = (float(b) for b in bounds)
    return low + position * (high - low)


def _draw_levels(rng, size: float, age: int, fractured: int) -> tuple:
    """Vertebrae T10..S1 along a lordotic curve, the fractured body's centre at the origin."""
    from spinedx.demo.phantom_volume import Frame

    n = len(_LEVELS)
    heights = [size * (21.0 + 1.0 * k + rng.normal(0, 0.6)) if k < n - 1 else size * 24.0 for k in range(n)]
    degenerated = [bool(rng.random() < min(0.1 + max(age - 40, 0) / 80 + 0.05 * k, 0.9)) for k in range(n)]
    discs = [size * (6.5 + 0.8 * k + rng.normal(0, 0.5)) * (0.75 if degenerated[k] else 1.0) for k in range(n)]
    # Centres along z: walk up and down from the fractured body.
    z = [0.0] * n
    for k in range(fractured - 1, -1, -1):
        z[k] = z[k + 1] + heights[k + 1] / 2 + discs[k] + heights[k] / 2
    for k in range(fractured + 1, n):
        z[k] = z[k - 1] - heights[k - 1] / 2 - discs[k - 1] - heights[k] / 2
    apex = z[_LEVELS.index("L3")] + rng.normal(0, 8)
    lordosis = rng.uniform(0.25e-3, 0.7e-3)
    scoliosis = rng.normal(0, 0.03)

    def centre_line(height):  # body centres: most anterior at the apex (L3)
        return (scoliosis * height, -lordosis * ((height - apex) ** 2 - apex ** 2), height)

    levels = []
    for k, name in enumerate(_LEVELS):
        slope_y = -2 * lordosis * (z[k] - apex)
        w = np.array([scoliosis, slope_y, 1.0])
        w /= np.linalg.norm(w)
        u = np.array([1.0, 0.0, 0.0])
        u = u - (u @ w) * w
        u /= np.linalg.norm(u)
        v = np.cross(w, u)
        frame = Frame(tuple(float(c) for c in centre_line(z[k])), (tuple(u), tuple(v), tuple(w)))
        lumbar = max(k - 2, 0)
        levels.append(_Level(
            name=name, frame=frame, height=float(heights[k]),
            half_width=float(size * (16.0 + 1.3 * k + rng.normal(0, 0.5))),
            half_depth=float(size * (12.5 + 0.6 * k + rng.normal(0, 0.4))),
            canal_half_width=float(10.0 + 0.4 * k + rng.normal(0, 0.5)),
            canal_half_depth=float(rng.uniform(6.5, 8.5)),
            pedicle_half_width=float(3.0 + 0.3 * k + rng.normal(0, 0.2)),
            spinous_length=float(size * rng.uniform(26, 33)),
            transverse_length=float(size * (10.0 + 2.0 * min(lumbar, 3) + rng.uniform(0, 4))),
            disc_below=float(discs[k]),
            degenerated=degenerated[k],
        ))
    return tuple(levels)


def _draw_fracture(rng, source: dict, body: _Level, level: int) -> _Fracture:
    """The fracture; each feature group follows the class named in ``source``."""
    bw, bd, height = body.half_width, body.half_depth, body.height
    malignant = {g: source[g] == "malignant" for g in _FEATURE_GROUPS}

    # Body pattern: collapse shape and what fills the body.
    loss = rng.uniform(0.15, 0.45) * height if malignant["body"] else rng.uniform(0.2, 0.55) * height
    pattern = rng.choice(["crush", "wedge", "biconcave"], p=[0.4, 0.35, 0.25] if malignant["body"]
                         else [0.2, 0.45, 0.35])
    if pattern == "crush":
        top, bottom = (0.55 * loss, 0.0, 0.1 * loss), (0.35 * loss, 0.0, 0.0)
    elif pattern == "wedge":
        top, bottom = (0.1 * loss, 0.9 * loss, 0.0), (0.0, 0.25 * loss, 0.0)
    else:
        top, bottom = (0.1 * loss, 0.0, 0.7 * loss), (0.0, 0.0, 0.35 * loss)
    lytic, band, vacuum = [], None, None
    tumour_hu = float(rng.uniform(32, 58))
    if malignant["body"]:
        # Moth-eaten lysis: a few foci near the cortex, breaking through it, and one deeper.
        for k in range(int(rng.integers(3, 7))):
            angle = rng.uniform(-np.pi, np.pi)
            depth = rng.uniform(0.1, 0.4) if k == 0 else rng.uniform(0.5, 0.9)
            centre = (depth * bw * np.cos(angle), depth * bd * np.sin(angle), rng.uniform(-0.3, 0.25) * height)
            radii = rng.uniform([6.0, 5.0, 5.0], [0.6 * bw, 0.7 * bd, 0.45 * height])
            lytic.append((tuple(float(c) for c in centre), tuple(float(r) for r in radii)))
    else:
        if rng.random() < 0.85:
            band = (float(rng.uniform(3.0, 7.0)), float(rng.uniform(160, 320)))
        if rng.random() < 0.15:
            vacuum = (float(rng.uniform(2.0, 5.0)), float(rng.uniform(1.0, 2.0)))

    # Posterior border and posterior elements.
    pedicle_lysis, fragment = [], None
    if malignant["posterior"]:
        bulge = float(rng.uniform(2.5, 6.0)) if rng.random() < 0.75 else float(rng.uniform(-1.5, 0.5))
        if rng.random() < 0.75:
            sides = [1, -1] if rng.random() < 0.35 else [int(rng.choice([1, -1]))]
            pedicle_lysis = [(side, float(rng.uniform(4.5, 7.5))) for side in sides]
            if bulge > 0:  # the posterior cortex is where the tumour reaches the pedicle
                lytic.append(((0.0, -0.75 * bd, 0.0), (0.45 * bw, 0.3 * bd, 0.3 * height)))
    else:
        bulge = float(rng.uniform(-1.8, -0.5))
        if rng.random() < 0.55:
            # Displaced by less than its own depth: still hinged to the body, not a loose piece.
            depth = float(rng.uniform(0.3, 0.45) * bd)
            fragment = (depth, float(rng.uniform(0.3, 0.45) * height), float(rng.uniform(0.4, 0.7) * depth))

    masses, haematoma = [], 0.0
    if malignant["soft_tissue"]:
        if rng.random() < 0.8:  # paravertebral: lateral or anterolateral, often asymmetric
            side = float(rng.choice([1, -1]))
            angle = rng.uniform(-0.2, 1.1)  # 0: lateral, pi/2: anterior
            reach = rng.uniform(10, 20)
            centre = (side * np.cos(angle) * (bw + 0.3 * reach), np.sin(angle) * (bd + 0.3 * reach), rng.normal(0, 3))
            radii = (reach, rng.uniform(0.7, 1.1) * reach, rng.uniform(0.5, 0.8) * height + reach * 0.3)
            masses.append((tuple(float(c) for c in centre), tuple(float(r) for r in radii)))
            lytic.append(((float(side * 0.7 * bw), float(np.sin(angle) * 0.5 * bd), 0.0),
                          (0.35 * bw, 0.4 * bd, 0.3 * height)))
        if rng.random() < 0.5:  # epidural: from the posterior body wall into the canal
            radii = (rng.uniform(5, 9), rng.uniform(3.5, 6.0), rng.uniform(8, 14))
            masses.append(((float(rng.normal(0, 3)), float(-bd - 0.6 * radii[1]), float(rng.normal(0, 3))),
                           tuple(float(r) for r in radii)))
    elif rng.random() < 0.35:
        haematoma = float(rng.uniform(2.0, 5.0))
    return _Fracture(
        level=level, top_loss=tuple(float(t) for t in top), bottom_loss=tuple(float(b) for b in bottom),
        posterior_bulge=bulge, lytic_foci=tuple(lytic), pedicle_lysis=tuple(pedicle_lysis), masses=tuple(masses),
        tumour_hu=tumour_hu, haematoma_mm=haematoma, band=band, vacuum=vacuum, fragment=fragment,
    )


# --- rendering -------------------------------------------------------------------------------


def _bone_hu(patient: _Patient, hu):
    """Bone attenuation scales with tube voltage: brighter at low kVp."""
    factor = 1.0 + 0.22 * (120 - patient.scanner.kvp) / 40
    return 40.0 + (hu - 40.0) * factor


def _paint_soft_tissue(canvas, patient: _Patient, rng, ndimage) -> None:
    """Body wall, paraspinal muscles, psoas, prevertebral fat, aorta and IVC."""
    from spinedx.demo import phantom_volume as pv

    grid = canvas.grid
    trunk_y, trunk_a, trunk_b = patient.trunk
    fat_texture = _HU["fat"] + 8.0 * pv.smooth_noise(rng, grid.shape, 2.0, ndimage)
    muscle_texture = _HU["muscle"] + 6.0 * pv.smooth_noise(rng, grid.shape, 1.5, ndimage)
    big = np.array([1e4, 1e4, 1e4])

    def trunk(shrink):
        def inside(X, Y, Z):
            return (np.abs(X) / (trunk_a - shrink)) ** 2.2 + (np.abs(Y - trunk_y) / (trunk_b - shrink)) ** 2.2 <= 1
        return inside
    canvas.shape(-big, big, trunk(0.0), {"ct": fat_texture})
    # Inside the subcutaneous fat: retroperitoneal fat (textured); muscles come next.
    canvas.shape(-big, big, trunk(patient.subcutaneous_fat), {"ct": fat_texture + 10.0})

    # The table the patient lies on (supine): a dense shell over a foam core.
    table_top = trunk_y - trunk_b - patient.table_gap
    canvas.shape(-big, np.array([1e4, table_top, 1e4]), lambda X, Y, Z: Y <= table_top, {"ct": -880.0})
    canvas.shape(np.array([-1e4, table_top - 3.0, -1e4]), np.array([1e4, table_top, 1e4]),
                 lambda X, Y, Z: Y >= table_top - 3.0, {"ct": _bone_hu(patient, 220.0)})

    levels = patient.levels
    top, bottom = levels[0].frame.centre[2] + 40, levels[-1].frame.centre[2] - 40
    ou, ov, ru, rv = patient.erector

    def along_spine(z):  # canal centre line (x, y) at height z, from the level frames
        zs = np.array([lv.frame.centre[2] for lv in levels])[::-1]
        canal = [lv.frame.to_body(0.0, -lv.half_depth - lv.canal_half_depth - 1.0, 0.0) for lv in levels][::-1]
        return (np.interp(z, zs, [c[0] for c in canal]).astype(np.float32),
                np.interp(z, zs, [c[1] for c in canal]).astype(np.float32))

    def erector(X, Y, Z):
        cx, cy = along_spine(Z)
        inside_trunk = (np.abs(X) / trunk_a) ** 2.2 + (np.abs(Y - trunk_y) / trunk_b) ** 2.2 <= 1
        return ((((np.abs(X - cx) - ou) / ru) ** 2 + ((Y - cy + ov) / rv) ** 2) <= 1) & inside_trunk

    canvas.shape(np.array([-60, -200, bottom]), np.array([60, 50, top]), erector, {"ct": muscle_texture})

    l1_z = levels[_LEVELS.index("L1")].frame.centre[2]

    def psoas(X, Y, Z):  # grows from L1 downwards, lateral to the bodies
        cx, cy = along_spine(Z)
        radius = patient.psoas_scale * np.clip(4.0 + 0.16 * (l1_z - Z), 0, 24)
        lateral = 24.0 + 0.6 * radius
        return ((np.abs(X - cx) - lateral) ** 2 + (Y - cy - 28.0) ** 2) <= radius ** 2

    canvas.shape(np.array([-90, -60, bottom]), np.array([90, 100, l1_z]), psoas, {"ct": muscle_texture})

    # Great vessels in front of the spine: aorta to the left (RAS: -x), IVC to the right.
    def vessel(offset_x, offset_y, rx, ry):
        def inside(X, Y, Z):
            cx, cy = along_spine(Z)
            return ((X - cx - offset_x) / rx) ** 2 + ((Y - cy - offset_y) / ry) ** 2 <= 1
        return inside

    body = levels[patient.fracture.level]
    front = 2 * body.half_depth + body.canal_half_depth + 4.0
    canvas.shape(np.array([-60, -60, bottom]), np.array([60, 150, top]), vessel(-14.0, front + 11, 10.5, 10.5),
                 {"ct": _HU["blood"]})
    canvas.shape(np.array([-60, -60, bottom]), np.array([60, 150, top]), vessel(20.0, front + 8, 11.0, 7.5),
                 {"ct": _HU["blood"]})
    if patient.aortic_calcification:
        for _ in range(int(rng.integers(2, 6))):
            z = rng.uniform(bottom + 40, top - 40)
            angle = rng.uniform(0, 2 * np.pi)
            cx, cy = (float(c) for c in along_spine(np.float32(z)))
            centre = (cx - 14.0 + 10.0 * np.cos(angle), cy + front + 11 + 10.0 * np.sin(angle), z)
            low, high, inside = pv.ellipsoid(centre, (1.5, 1.5, rng.uniform(2, 5)))
            canvas.shape(low, high, inside, {"ct": _bone_hu(patient, 500.0)}, oversample=3)


def _body_test(level: _Level, fracture: _Fracture | None, shrink: float):
    """Inside test of a vertebral body in its level frame (``shrink`` mm inwards: marrow)."""
    bw, bd, height = level.half_width - shrink, level.half_depth - shrink, level.height
    bulge = fracture.posterior_bulge if fracture else -1.0
    half = height / 2 - shrink

    def loss(u, v, parameters):
        base, wedge, central = parameters
        front = np.clip((v / level.half_depth + 1) / 2, 0, 1)
        middle = np.clip(1 - (u / level.half_width) ** 2 - (v / level.half_depth) ** 2, 0, None)
        return base + wedge * front + central * middle

    def inside(u, v, w):
        lateral = np.clip(1 - (u / (0.75 * level.half_width)) ** 2, 0, None)
        depth = np.where(v >= 0, bd, bd + bulge * lateral)
        radial = (np.abs(u) / bw) ** 2.6 + (np.abs(v) / depth) ** 2.6
        middle = np.clip(1 - (u / level.half_width) ** 2 - (v / level.half_depth) ** 2, 0, None)
        top = half - 0.8 * middle  # the normal slight endplate concavity
        bottom = -half + 0.8 * middle
        if fracture is not None:
            top = top - loss(u, v, fracture.top_loss)
            bottom = bottom + loss(u, v, fracture.bottom_loss)
        return (radial <= 1) & (w <= top) & (w >= bottom)

    return inside


def _fragment_tests(level: _Level, fracture: _Fracture):
    """(gap, fragment): the posterior-superior corner's old place and its retropulsed position."""
    depth, height, shift = fracture.fragment
    bd = level.half_depth
    base, wedge, central = fracture.top_loss
    top = level.height / 2 - base  # the posterior wedge term is 0 at the back

    def triangle(u, v, w, moved):
        back = -bd - moved
        return ((np.abs(u) <= 0.5 * level.half_width) & (v >= back) & (w <= top)
                & ((v - back) / depth + (top - w) / height <= 1))

    return (lambda u, v, w: triangle(u, v, w, 0.0)), (lambda u, v, w: triangle(u, v, w + 1.0, shift))


def _in_frame(frame, test):
    def inside(X, Y, Z):
        return test(*frame.local(X, Y, Z))
    return inside


def _paint_spine(canvas, patient: _Patient, rng, ndimage) -> np.ndarray:
    """Discs, canal, vertebrae, the fracture and its signs; returns the body mask (uint8)."""
    from spinedx.demo import phantom_volume as pv

    grid = canvas.grid
    fracture = patient.fracture
    trabecular = _bone_hu(patient, patient.trabecular_hu + patient.texture_hu
                          * pv.smooth_noise(rng, grid.shape, 0.8, ndimage))
    cortex = _bone_hu(patient, patient.cortex_hu)
    tumour = fracture.tumour_hu + 7.0 * pv.smooth_noise(rng, grid.shape, 1.0, ndimage)
    levels = patient.levels

    def paint(frame, low, high, test, value, oversample=2):
        box = frame.box(low, high)
        return canvas.shape(box[0], box[1], _in_frame(frame, test), {"ct": value}, oversample)

    # Discs under each body, then the canal contents along the whole column.
    for k, level in enumerate(levels[:-1]):
        below = levels[k + 1]
        centre = (np.asarray(level.frame.centre) + np.asarray(below.frame.centre)) / 2
        frame = pv.Frame(tuple(centre), level.frame.axes)
        gap = (level.frame.centre[2] - below.frame.centre[2]) / 2
        bw, bd = (level.half_width + below.half_width) / 2 + 0.8, (level.half_depth + below.half_depth) / 2 + 0.8
        nucleus = _HU["nucleus"] + (20.0 if level.degenerated else 0.0)

        def disc(u, v, w, bw=bw, bd=bd, gap=gap):
            return ((np.abs(u) / bw) ** 2.4 + (np.abs(v) / bd) ** 2.4 <= 1) & (np.abs(w) <= gap)

        def nucleus_test(u, v, w, bw=bw, bd=bd, gap=gap):
            return ((u / (0.5 * bw)) ** 2 + ((v + 0.1 * bd) / (0.45 * bd)) ** 2 + (w / gap) ** 2) <= 1

        paint(frame, (-bw, -bd, -gap), (bw, bd, gap), disc, _HU["annulus"])
        paint(frame, (-bw, -bd, -gap), (bw, bd, gap), nucleus_test, nucleus)
    for level in levels:
        reach = level.height / 2 + level.disc_below + 1.0
        ca, cb = level.canal_half_depth, level.canal_half_width
        v0 = -level.half_depth - ca - 0.5

        def canal(u, v, w, ca=ca, cb=cb, v0=v0, reach=reach):
            return ((u / cb) ** 2 + ((v - v0) / ca) ** 2 <= 1) & (w <= level.height / 2 + 2) & (w >= -reach)

        def sac(u, v, w, ca=ca, cb=cb, v0=v0, reach=reach):
            return ((u / (0.8 * cb)) ** 2 + ((v - v0 + 0.5) / (0.8 * ca)) ** 2 <= 1) & (w <= level.height / 2 + 2) \
                & (w >= -reach)

        paint(level.frame, (-cb, v0 - ca, -reach), (cb, v0 + ca, level.height / 2 + 2), canal, _HU["fat"] + 15)
        paint(level.frame, (-cb, v0 - ca, -reach), (cb, v0 + ca, level.height / 2 + 2), sac, _HU["csf"])

    body_level = levels[fracture.level]
    frame = body_level.frame
    bw, bd, height = body_level.half_width, body_level.half_depth, body_level.height
    # Soft tissue around the fractured body (the body is painted over its inner part).
    if fracture.haematoma_mm > 0:
        grown = _Level(**{**body_level.__dict__, "half_width": bw + fracture.haematoma_mm,
                          "half_depth": bd + fracture.haematoma_mm})
        haematoma = _body_test(grown, None, 0.0)
        paint(frame, (-bw - 8, -bd - 8, -height), (bw + 8, bd + 8, height),
              lambda u, v, w: haematoma(u, v, w) & (v > -0.6 * bd), _HU["haematoma"])
    for centre, radii in fracture.masses:
        low, high, test = pv.ellipsoid(centre, radii)
        paint(frame, low, high, test, tumour)

    # Vertebrae: cortical shell, marrow, posterior elements.
    mask = np.zeros(grid.shape, np.uint8)
    for k, level in enumerate(levels):
        fractured = k == fracture.level
        this = fracture if fractured else None
        hw, hd, h = level.half_width + 8, level.half_depth + 8, level.height / 2 + 2
        paint(level.frame, (-hw, -hd, -h), (hw, hd, h), _body_test(level, this, 0.0), cortex)
        paint(level.frame, (-hw, -hd, -h), (hw, hd, h), _body_test(level, this, 1.3), trabecular)
        if level.name != "S1":
            _paint_posterior_elements(paint, level, cortex, trabecular)
    # The fracture's own signs, in the fractured level's frame.
    outer = _body_test(body_level, fracture, 0.0)
    inner = _body_test(body_level, fracture, 1.3)
    box_low, box_high = (-bw - 10, -bd - 12, -height / 2 - 2), (bw + 10, bd + 10, height / 2 + 2)
    for centre, radii in fracture.lytic_foci:
        low, high, test = pv.ellipsoid(centre, radii)
        # Lysis within the body and through its cortex (the margin reaches the shell).
        grown = _body_test(body_level, fracture, -1.5)
        paint(frame, low, high, lambda u, v, w, test=test, grown=grown: test(u, v, w) & grown(u, v, w), tumour)
    for side, radius in fracture.pedicle_lysis:
        centre = (side * (body_level.canal_half_width + body_level.pedicle_half_width + 0.5),
                  -bd - 0.5 * body_level.canal_half_depth, 0.1 * height)
        low, high, test = pv.ellipsoid(centre, (radius, radius * 1.3, radius * 1.2))
        paint(frame, low, high, test, tumour)
    if fracture.band is not None:
        thickness, extra = fracture.band
        base, wedge, central = fracture.top_loss

        def band(u, v, w):
            front = np.clip((v / bd + 1) / 2, 0, 1)
            middle = np.clip(1 - (u / bw) ** 2 - (v / bd) ** 2, 0, None)
            top = height / 2 - 0.8 * middle - (base + wedge * front + central * middle) - 1.3
            return inner(u, v, w) & (w <= top) & (w >= top - thickness)

        paint(frame, box_low, box_high, band, trabecular + _bone_hu(patient, 40.0 + extra) - 40.0)
        if fracture.vacuum is not None:
            offset, cleft = fracture.vacuum

            def vacuum(u, v, w):
                middle = np.clip(1 - (u / bw) ** 2 - (v / bd) ** 2, 0, None)
                top = height / 2 - 0.8 * middle - (base + wedge * np.clip((v / bd + 1) / 2, 0, 1)
                                                   + central * middle) - 1.3 - thickness - offset
                return inner(u, v, w) & (np.abs(w - top) <= cleft / 2) & (middle > 0.25)

            paint(frame, box_low, box_high, vacuum, _HU["gas"])
    gap = fragment = None
    if fracture.fragment is not None:
        gap, fragment = _fragment_tests(body_level, fracture)
        paint(frame, box_low, box_high, lambda u, v, w: gap(u, v, w) & outer(u, v, w), _HU["fracture_gap"])
        paint(frame, box_low, box_high, fragment, _bone_hu(patient, patient.cortex_hu * 0.5))
    for level_index, centre, radius, hu in patient.other_foci:
        level = levels[level_index]
        low, high, test = pv.ellipsoid(centre, (radius, radius, radius))
        body = _body_test(level, None, 1.3)
        value = _bone_hu(patient, hu) if hu > 200 else hu
        paint(level.frame, low, high, lambda u, v, w, test=test, body=body: test(u, v, w) & body(u, v, w), value, 3)

    # The mask: the fractured body as it now is, its fracture gap and retropulsed fragment
    # included (one piece, as a reader outlines it).
    def fractured_body(u, v, w):
        inside = outer(u, v, w)
        if fragment is not None:
            inside = inside | fragment(u, v, w)
        return inside

    low, high = frame.box(box_low, box_high)
    window, fraction = pv.coverage(grid, low, high, _in_frame(frame, fractured_body), oversample=2)
    mask[window] = fraction >= 0.5
    return mask


def _paint_posterior_elements(paint, level: _Level, cortex, marrow) -> None:
    """Pedicles, laminae, spinous and transverse processes and articular processes."""
    bd, height = level.half_depth, level.height
    ca, cb, pw = level.canal_half_depth, level.canal_half_width, level.pedicle_half_width
    v_canal = -bd - ca - 0.5
    ph = 0.3 * height
    for shrink, value in ((0.0, cortex), (1.2, marrow)):
        for side in (1, -1):
            pu = side * (cb + pw + 0.5)

            def pedicle(u, v, w, pu=pu, shrink=shrink):
                return ((((u - pu) / (pw - shrink)) ** 2 + ((w - 0.12 * height) / (ph - shrink)) ** 2 <= 1)
                        & (v <= -bd + 3) & (v >= v_canal - 0.5 * ca))

            paint(level.frame, (pu - pw, v_canal - ca, -height / 2), (pu + pw, -bd + 3, height / 2), pedicle, value)
            # Transverse process from the pedicle-lamina junction, laterally.
            tip = side * (cb + 2 * pw + level.transverse_length)

            def transverse(u, v, w, side=side, tip=tip, shrink=shrink):
                return ((side * u >= cb + pw) & (side * u <= side * tip)
                        & ((v - v_canal) ** 2 / (3.2 - shrink) ** 2 + (w - 0.05 * height) ** 2 / (4.5 - shrink) ** 2
                           <= 1))

            lo, hi = sorted((side * (cb + pw), tip))
            paint(level.frame, (lo, v_canal - 5, -height / 2), (hi, v_canal + 5, height / 2), transverse, value)
            # Superior and inferior articular processes (facet joints at the disc levels).
            for w0, u0 in ((height / 2 + 2.0, cb + 2.5), (-height / 2 - 2.0, cb + 4.5)):
                def articular(u, v, w, u0=side * u0, w0=w0, shrink=shrink):
                    return (((u - u0) / (4.0 - shrink)) ** 2 + ((v - v_canal + 0.8 * ca) / (5.0 - shrink)) ** 2
                            + ((w - w0) / (7.0 - shrink)) ** 2) <= 1

                u_low = side * u0 - 4
                paint(level.frame, (u_low, v_canal - ca - 6, w0 - 7), (u_low + 8, v_canal, w0 + 7), articular, value)

        def lamina(u, v, w, shrink=shrink):
            outer = (u / (cb + 6.0 - shrink)) ** 2 + ((v - v_canal) / (ca + 5.5 - shrink)) ** 2 <= 1
            hole = (u / (cb + 0.5 + shrink)) ** 2 + ((v - v_canal) / (ca + 0.5 + shrink)) ** 2 <= 1
            return outer & ~hole & (v <= v_canal - 0.2 * ca) & (w <= 0.25 * height) & (w >= -0.5 * height - 3)

        paint(level.frame, (-cb - 7, v_canal - ca - 7, -height / 2 - 4), (cb + 7, v_canal, height / 2), lamina, value)
        length = level.spinous_length
        start = v_canal - ca - 3.0

        def spinous(u, v, w, shrink=shrink):
            behind = start - v  # mm behind the lamina
            centre_w = -0.2 * height - 0.3 * behind
            return ((np.abs(u) <= 3.0 - shrink) & (behind >= -2) & (behind <= length - shrink)
                    & (np.abs(w - centre_w) <= 7.0 - shrink))

        paint(level.frame, (-4, start - length, -height - 12), (4, start + 3, 0), spinous, value)


def _acquire(ct: np.ndarray, patient: _Patient, rng, ndimage) -> np.ndarray:
    """Scanner effects: point spread, kernel, beam hardening, offset, noise; int16 HU."""
    from spinedx.demo import phantom_volume as pv

    scanner, grid = patient.scanner, patient.grid
    sigma = (scanner.blur_mm / grid.spacing[0], scanner.blur_mm / grid.spacing[1], 0.3)
    image = ndimage.gaussian_filter(ct, sigma, mode="nearest")
    if scanner.kernel == "bone":  # edge-enhancing reconstruction: overshoot at bone edges
        image = image + 0.6 * (image - ndimage.gaussian_filter(image, 1.2 / np.asarray(grid.spacing), mode="nearest"))
    # Beam hardening: cupping across the trunk and dark streaks between dense pedicles.
    x, y = grid.centres(0)[:, None, None], grid.centres(1)[None, :, None]
    trunk_y, trunk_a, trunk_b = patient.trunk
    radial = (x / trunk_a) ** 2 + ((y - trunk_y) / trunk_b) ** 2
    bias = -scanner.cupping_hu * np.clip(1 - radial, 0, 1) * (image > -500)
    for level in patient.levels:
        v_ped = -level.half_depth - 0.5 * level.canal_half_depth
        reach = level.canal_half_width + 2 * level.pedicle_half_width

        def streak(X, Y, Z, level=level, v_ped=v_ped, reach=reach):
            u, v, w = level.frame.local(X, Y, Z)
            return (np.exp(-((v - v_ped) / 2.5) ** 2) * np.clip(1 - (u / reach) ** 2, 0, 1)
                    * (np.abs(w - 0.12 * level.height) <= 0.3 * level.height))

        low, high = level.frame.box((-reach, v_ped - 8, -level.height / 2), (reach, v_ped + 8, level.height / 2))
        window = grid.window(low, high)
        if window is not None:
            X, Y, Z = grid.points(window, 1)
            bias[window] -= scanner.streak_hu * streak(X, Y, Z)
    noise = pv.smooth_noise(rng, grid.shape, 0.6, ndimage)
    size = patient.trunk[1] * patient.trunk[2] / (155.0 * 110.0)  # larger patients: noisier
    image = image + bias + scanner.offset_hu + rng.normal(0, 2) + scanner.noise_hu * size * noise
    return np.clip(np.round(image), -1024, 3071).astype(np.int16)
