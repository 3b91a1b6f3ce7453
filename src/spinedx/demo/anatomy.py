"""Spine anatomy as solids in millimetres, cut by sagittal and transverse image planes.

Shared by the two-dimensional synthetic studies (:mod:`spinedx.demo.ismf`,
:mod:`spinedx.demo.canine`). A patient is a small 3-D model: vertebral bodies (cortical
shell around marrow) and intervertebral discs (annulus around a nucleus that darkens on T2
when it degenerates), neural arches with spinous and transverse processes, the bony canal
with epidural fat, the CSF-filled dural sac, the spinal cord, and nerve roots leaving
through the foramina between the arches. Lesions are further solids ("blobs") with their
own signal per contrast; they may push or swell the cord. An image is this model sampled
on one plane, so a sagittal and an axial image of the same patient agree with each other,
a lateral lesion leaves the parasagittal slices that miss it, and an axial slice between
two arches shows the open foramen.

Frame: ``a`` runs along the spine (mm, caudal positive), ``u`` across it from ventral to
dorsal (mm, 0 on the canal's centre line) and ``z`` from right to left (mm, 0 in the
midsagittal plane). Images are computed with rows along ``a`` (sagittal) or ``u``
(transverse) and columns along ``u`` or ``z``; each study turns them into its display
convention. Tissue signal is relative (T1, T2) per tissue; T2 fat-suppressed (T2FS) is T2
with the fat share of a tissue removed by the scanner's fat suppression.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Drawing helpers of the reference phantom, imported in ONE place (spinedx.demo.spine after
# the package restructure): its scanner draw, scanner effects with the display window,
# smooth random fields.
from spinedx.demo.spine import acquire_slice, draw_scanner, smooth_field

CONTRASTS = ("T1", "T2", "T2FS")

# Relative signal of each tissue on (T1, T2) before scanner effects; textbook appearance.
TISSUE = {
    "air": (0.0, 0.0),
    "fat": (0.95, 0.80),
    "muscle": (0.35, 0.26),
    "marrow": (0.62, 0.45),  # fatty marrow: bright on T1, suppressed on T2FS
    "cortex": (0.06, 0.05),
    "ligament": (0.08, 0.07),
    "annulus": (0.30, 0.22),
    "nucleus": (0.40, 0.85),  # hydrated nucleus pulposus: bright on T2
    "nucleus_degenerated": (0.33, 0.22),  # desiccated: dark on T2
    "csf": (0.10, 1.00),
    "cord": (0.45, 0.40),
    "root": (0.42, 0.36),
    "vessel": (0.05, 0.05),  # flowing blood: signal void
    "viscera": (0.45, 0.55),
    "lung": (0.02, 0.02),
}
# Share of a tissue's signal that comes from fat protons (what T2FS removes).
_FAT_SHARE = {"fat": 1.0, "marrow": 0.75}


@dataclass(frozen=True)
class Scanner:
    """One MR machine and protocol."""

    acquisition: object  # the reference phantom's scanner: noise, bias, blur, matrix, window, gamma
    fat_suppression: float  # share of fat signal removed on T2FS
    fov_scale: float  # protocol field of view relative to the study's typical one
    gain: dict  # (contrast, tissue) -> multiplicative contrast difference of this machine

    @property
    def noise(self) -> float:
        return self.acquisition.noise


def scanner_park(seed: int, count: int, low_field: set, foreign: set) -> list[Scanner]:
    """A fixed park of machines (its own seed, so every cohort seed meets the same ones).

    The acquisition part is the reference phantom's scanner; low-field machines (0.2-0.4 T,
    common in veterinary MRI and older hospitals) are noisier and acquire coarser matrices;
    ``foreign`` machines (other vendors and protocols than the internal cohort's) differ
    more in tissue contrast and fat suppression.
    """
    rng = np.random.default_rng(seed)
    park = []
    for index in range(count):
        acquisition = draw_scanner(rng, index)
        if index in low_field:
            acquisition = replace(acquisition, noise=rng.uniform(0.04, 0.07), blur_px=rng.uniform(0.4, 1.1),
                                  downsample=float(rng.choice([1.5, 1.8, 2.0])))
        spread, fat_suppression = (0.12, rng.uniform(0.6, 0.85)) if index in foreign else (0.06, rng.uniform(0.8, 0.95))
        park.append(Scanner(acquisition, fat_suppression=fat_suppression, fov_scale=acquisition.fov_mm / 280,
                            gain={(c, t): float(rng.normal(1.0, spread)) for c in CONTRASTS for t in TISSUE}))
    return park


def feature_sources(rng, diagnosis: str, groups: tuple, lookalikes: dict, atypical_share: float) -> dict:
    """Which class each feature group follows: the patient's own, or for an atypical
    patient (``atypical_share``) a look-alike's for a random non-empty set of groups."""
    sources = dict.fromkeys(groups, diagnosis)
    if rng.random() < atypical_share:
        names = list(lookalikes[diagnosis])
        other = names[int(rng.choice(len(names), p=list(lookalikes[diagnosis].values())))]
        swapped = set()
        while not swapped:
            swapped = {group for group in groups if rng.random() < 0.5}
        sources.update(dict.fromkeys(swapped, other))
    return sources


@dataclass(frozen=True)
class Spine:
    """One patient's spinal column (mm). Discs lie caudal of each body."""

    levels: tuple  # body centres along a, cranial first
    body_half_length: float
    disc_half: tuple  # half height of the disc caudal of each body
    body_depth: float  # ventrodorsal extent of a body
    body_half_width: float
    canal: tuple  # dural sac half axes (u, z)
    epidural: float  # epidural fat between sac and bone, ventrally and laterally
    dorsal_fat: float  # extra epidural fat dorsally
    cord: tuple  # cord half axes (u, z)
    cord_offset: float  # u of the cord's centre (ventral negative)
    arch: float  # thickness of pedicles and laminae
    spinous_length: float
    spinous_lean: float  # mm along a per mm of length (caudal positive)
    transverse_length: float
    degenerated: tuple  # per disc: desiccated nucleus
    curvature: float  # centre line at column u + curvature * (a - apex)^2
    apex: float

    @property
    def body_centre_u(self) -> float:
        return -(self.canal[0] + self.epidural + self.body_depth / 2)

    def disc_centre(self, k: int) -> float:
        return self.levels[k] + self.body_half_length + self.disc_half[k]


@dataclass(frozen=True)
class Blob:
    """A lesion part: a superellipsoid with its own signal per contrast (T1, T2, T2FS)."""

    centre: tuple  # (a, u, z)
    half: tuple  # half axes along (a, u, z)
    signal: tuple  # relative signal on T1, T2, T2FS
    exponent: float = 2.0
    edge: float = 1.0  # margin softness (pixels): large for infiltrative tumours
    texture: float = 0.0  # relative heterogeneity
    boxed: bool = True  # part of what the annotator draws a rectangle around
    in_sac: bool = False  # confined to the dural sac (intradural lesions)


@dataclass(frozen=True)
class CordEffect:
    """Mass effect on the cord around one level: displacement and swelling or compression."""

    a: float
    half_length: float
    shift: tuple  # (u, z) displacement (mm) at the centre
    scale: tuple  # (u, z) factor on the cord's half axes at the centre


@dataclass(frozen=True)
class Plane:
    """One image plane and its pixel grid (rows along a or u, columns along u or z)."""

    kind: str  # "sagittal" or "transverse"
    position: float  # z of a sagittal plane, a of a transverse one (mm)
    tilt: float  # obliquity: mm of out-of-plane shift per mm along the rows
    top: float  # row coordinate of the top edge (mm)
    left: float  # column coordinate of the left edge (mm)
    pixel_mm: float
    shape: tuple  # (rows, columns)


@dataclass(frozen=True)
class Grid:
    a: np.ndarray
    u: np.ndarray
    z: np.ndarray
    pixel_mm: float
    row_only: tuple  # per coordinate (a, u, z): constant along each row

    @property
    def shape(self) -> tuple:
        return self.a.shape


def grid(plane: Plane, spine: Spine) -> Grid:
    """Millimetre coordinates of every pixel of ``plane``."""
    height, width = plane.shape
    rows = (plane.top + (np.arange(height, dtype=np.float32) + 0.5) * plane.pixel_mm)[:, None]
    cols = (plane.left + (np.arange(width, dtype=np.float32) + 0.5) * plane.pixel_mm)[None, :]
    out_of_plane = plane.position + plane.tilt * (rows - rows.mean())
    if plane.kind == "sagittal":
        a, u, z = rows, cols - spine.curvature * (rows - spine.apex) ** 2, out_of_plane
    elif plane.kind == "transverse":
        a, u, z = out_of_plane, rows, cols
    else:
        raise ValueError(f"unknown plane kind {plane.kind!r}")
    row_only = tuple(np.shape(c)[1] == 1 for c in (a, u, z))
    full = [np.ascontiguousarray(np.broadcast_to(c, (height, width)), dtype=np.float32) for c in (a, u, z)]
    return Grid(*full, pixel_mm=plane.pixel_mm, row_only=row_only)


def palette(contrast: str, scanner: Scanner):
    """Tissue name -> relative signal on ``contrast`` as this scanner shows it."""
    t2 = contrast != "T1"

    def signal(tissue: str) -> float:
        value = TISSUE[tissue][int(t2)] * scanner.gain[(contrast, tissue)]
        if contrast == "T2FS":
            value *= 1 - _FAT_SHARE.get(tissue, 0.0) * scanner.fat_suppression
        return value

    return signal


def solid(g: Grid, centre, half, exponent: float = 2.0, soft: float = 1.0, shear: float = 0.0):
    """Partial-volume fraction of a superellipsoid, computed only where it can reach.

    Returns ``(window, fraction, radius)`` (``window`` None when the plane misses it);
    ``shear`` leans the solid: its centre moves ``shear`` mm along a per mm of u.
    """
    ca, cu, cz = centre
    margin = 2.0 * g.pixel_mm * soft
    reach = [h + margin for h in half]
    # Rows first, from the coordinates that are constant along a row: cheap, and it leaves
    # out solids the plane does not cut at all.
    rows = np.ones(g.shape[0], bool)
    for coordinate, c, r, row_only in zip((g.a, g.u, g.z), centre, (reach[0] + abs(shear) * reach[1], *reach[1:]),
                                          g.row_only):
        if row_only:
            rows &= np.abs(coordinate[:, 0] - c) < r
    if not rows.any():
        return None, None, None
    first, last = np.flatnonzero(rows)[[0, -1]]
    band = np.s_[first:last + 1]
    da = g.a[band] - ca - shear * (g.u[band] - cu)
    near = (np.abs(da) < reach[0]) & (np.abs(g.u[band] - cu) < reach[1]) & (np.abs(g.z[band] - cz) < reach[2])
    rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    if rows.size == 0:
        return None, None, None
    inner = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    window = np.s_[first + rows[0]:first + rows[-1] + 1, cols[0]:cols[-1] + 1]
    da_window = da[inner]
    parts = (da_window / half[0], (g.u[window] - cu) / half[1], (g.z[window] - cz) / half[2])
    radius = sum(np.abs(p) ** exponent for p in parts) ** (1 / exponent)
    fraction = np.clip(0.5 + (1 - radius) * min(half) / (g.pixel_mm * soft), 0, 1)
    return window, fraction, radius


def paint(image: np.ndarray, window, fraction, value) -> None:
    """Blend ``value`` (number or image-sized array) over ``image`` inside ``window``."""
    if window is None:
        return
    block = image[window]
    value = value[window] if np.ndim(value) == 2 else value
    image[window] = block + fraction * (value - block)


def tube_fraction(g: Grid, centre_u, centre_z, half_u, half_z, soft: float = 1.0) -> np.ndarray:
    """Partial-volume fraction of an elliptic tube along a (centres and radii may vary with a)."""
    radius = np.sqrt(((g.u - centre_u) / half_u) ** 2 + ((g.z - centre_z) / half_z) ** 2)
    return np.clip(0.5 + (1 - radius) * np.minimum(half_u, half_z) / (g.pixel_mm * soft), 0, 1)


def _bone(image, g: Grid, centre, half, exponent, cortex, marrow, shell: float = 1.0, shear: float = 0.0):
    """Cortical shell (about 1 mm, dark) filled with marrow."""
    paint(image, *solid(g, centre, half, exponent, shear=shear)[:2], cortex)
    inner = tuple(max(h - shell, 0.5) for h in half)
    paint(image, *solid(g, centre, inner, exponent, shear=shear)[:2], marrow)


def sac_fraction(g: Grid, spine: Spine) -> np.ndarray:
    return tube_fraction(g, 0.0, 0.0, *spine.canal)


def paint_column(image, g: Grid, spine: Spine, signal, rng, cord_effects=()) -> None:
    """Arches, bodies, discs, foramina, epidural fat, dural sac and cord, in that order."""
    cu, cz = spine.canal
    hl = spine.body_half_length
    cortex = signal("cortex")
    marrow = signal("marrow") * (1 + 0.08 * smooth_field(rng, g.shape, 16))
    bony_canal = (cu + spine.epidural + spine.dorsal_fat / 2, cz + spine.epidural)
    arch_u = spine.dorsal_fat / 2
    arch_half = (0.62 * hl, bony_canal[0] + spine.arch, bony_canal[1] + spine.arch)
    for a_k in spine.levels:
        # Pedicles and laminae: a bony ring around the canal over the cranial part of each
        # level; caudally, between two arches, the foramina open.
        _bone(image, g, (a_k - 0.15 * hl, arch_u, 0.0), arch_half, 4.0, cortex, marrow, shell=1.2)
        back = arch_u + arch_half[1]
        length = spine.spinous_length
        _bone(image, g, (a_k + spine.spinous_lean * length / 2, back + length / 2 - 2.0, 0.0),
              (0.3 * hl, length / 2, 0.15 * cz + 1.5), 3.0, cortex, marrow, shear=spine.spinous_lean)
        for side in (-1, 1):
            reach = arch_half[2] + spine.transverse_length / 2 - 2.0
            _bone(image, g, (a_k - 0.1 * hl, -0.3 * cu, side * reach),
                  (0.28 * hl, 2.8, spine.transverse_length / 2), 3.0, cortex, marrow)
    for k, a_k in enumerate(spine.levels):
        _bone(image, g, (a_k, spine.body_centre_u, 0.0), (hl, spine.body_depth / 2, spine.body_half_width),
              5.0, cortex, marrow)
        disc_a, disc_half = spine.disc_centre(k), spine.disc_half[k]
        disc = (disc_a, spine.body_centre_u, 0.0)
        paint(image, *solid(g, disc, (disc_half + 0.4, spine.body_depth / 2 + 0.4, spine.body_half_width + 0.4),
                            4.0)[:2], signal("annulus"))
        nucleus = "nucleus_degenerated" if spine.degenerated[k] else "nucleus"
        nucleus_half = (0.6 * disc_half, 0.3 * spine.body_depth, 0.5 * spine.body_half_width)
        paint(image, *solid(g, disc, nucleus_half, 2.0, soft=2.0)[:2], signal(nucleus))
        # Ligamentum flavum bridges the laminae dorsally; foraminal fat and the exiting
        # root fill the gap laterally.
        gap = (disc_a - 0.15 * hl, 0.38 * hl + disc_half)  # centre and half length between two arches
        paint(image, *solid(g, (gap[0], arch_u + bony_canal[0] + spine.arch / 2, 0.0),
                            (gap[1], spine.arch / 2 + 0.3, bony_canal[1]), 3.0)[:2], signal("ligament"))
        for side in (-1, 1):
            foramen = (gap[0], -0.25 * cu, side * (bony_canal[1] + spine.arch / 2))
            paint(image, *solid(g, foramen, (gap[1], 0.55 * cu, spine.arch / 2 + 1.5), 3.0)[:2], signal("fat"))
            root = (gap[0] - 0.3 * gap[1], -0.25 * cu, side * (bony_canal[1] + spine.arch / 2))
            paint(image, *solid(g, root, (1.3, 1.3, spine.arch / 2 + 3.0), 2.0)[:2], signal("root"))
    fat = tube_fraction(g, arch_u, 0.0, *bony_canal)
    image += fat * (signal("fat") - image)
    image += sac_fraction(g, spine) * (signal("csf") - image)
    centre_u, centre_z = np.full_like(g.a, spine.cord_offset), np.zeros_like(g.a)
    half_u, half_z = np.full_like(g.a, spine.cord[0]), np.full_like(g.a, spine.cord[1])
    for effect in cord_effects:
        weight = np.exp(-(((g.a - effect.a) / effect.half_length) ** 4))
        centre_u += effect.shift[0] * weight
        centre_z += effect.shift[1] * weight
        half_u *= 1 + (effect.scale[0] - 1) * weight
        half_z *= 1 + (effect.scale[1] - 1) * weight
    cord = tube_fraction(g, centre_u, centre_z, half_u, half_z) * sac_fraction(g, spine)
    image += cord * (signal("cord") - image)


def paint_blobs(image, g: Grid, spine: Spine, blobs, contrast: str, rng) -> np.ndarray:
    """Paint the lesion's blobs in order; return the mask of the boxed ones (bool)."""
    index = CONTRASTS.index(contrast)
    sac = None
    mask = np.zeros(g.shape, bool)
    for blob in blobs:
        window, fraction, radius = solid(g, blob.centre, blob.half, blob.exponent, soft=blob.edge)
        value = blob.signal[index]
        if blob.texture:
            value = value * (1 + blob.texture * smooth_field(rng, g.shape, 10))
        if window is None:
            continue
        if blob.in_sac:
            sac = sac_fraction(g, spine) if sac is None else sac
            fraction = fraction * sac[window]
            radius = np.where(sac[window] > 0.5, radius, np.inf)
        paint(image, window, fraction, value)
        if blob.boxed:
            mask[window] |= radius < 1
    return mask


def render(plane: Plane, spine: Spine, blobs, cord_effects, contrast: str, scanner: Scanner, torso, rng):
    """One image: ``(uint8 image, lesion mask)`` in the computation orientation.

    ``torso(image, grid, signal, rng)`` paints the species' soft tissues first.
    """
    g = grid(plane, spine)
    signal = palette(contrast, scanner)
    image = np.zeros(g.shape, np.float32)
    torso(image, g, signal, rng)
    paint_column(image, g, spine, signal, rng, cord_effects)
    mask = paint_blobs(image, g, spine, blobs, contrast, rng)
    return acquire_slice(image, scanner.acquisition, rng), mask


# --- lesion sites shared by the studies: ``[(centre, half, in_sac, boxed)]`` and cord effects


def intradural_beside_cord(spine: Spine, a: float, side: float, u_share: float, half_length: float, girth: float):
    """An intradural extramedullary mass against the lateral wall of the sac, pushing the
    cord to the other side (nerve sheath tumours, intradural neoplasia)."""
    cu, cz = spine.canal
    hz, hu = girth * (cz - 0.5), min(girth * cu * 1.1, 0.9 * cu)
    centre = (a, u_share * cu, side * (cz - 0.85 * hz))
    effect = CordEffect(a, half_length + 3, (0.0, -side * min(0.8 * hz, cz - 0.8 * spine.cord[1])), (0.95, 0.75))
    return [(centre, (half_length, hu, hz), True, True)], [effect]


def intramedullary(spine: Spine, a: float, shift: tuple, half_length: float, girth: float, swell: float,
                   effect_length: float):
    """A lesion inside the cord, offset by ``shift`` (u, z) from its centre line, with
    the cord swollen by ``swell`` over ``effect_length`` either side."""
    ru, rz = spine.cord
    centre = (a, spine.cord_offset + shift[0], shift[1])
    half = (half_length, girth * ru * swell, girth * rz * swell)
    effect = CordEffect(a, effect_length, (0.8 * shift[0], 0.8 * shift[1]), (swell, swell))
    return [(centre, half, False, True)], [effect]


def vertebral_with_epidural(spine: Spine, a: float, z: float, half_length: float, girth: float, thickness: float):
    """Marrow replacement in a vertebral body with an epidural component growing into the
    ventral canal and compressing the sac and cord (metastasis, vertebral neoplasia)."""
    cu, cz = spine.canal
    hl = spine.body_half_length
    body = ((a, spine.body_centre_u + 0.25 * spine.body_depth / 2, z),
            (min(half_length, 0.95 * hl), girth * spine.body_depth / 2, girth * spine.body_half_width))
    epidural = ((a, -(cu + spine.epidural) + 0.3 * thickness, z),
                (min(1.1 * half_length, hl), thickness, min(0.8 * cz, girth * spine.body_half_width)))
    effect = CordEffect(a, half_length + 4, (0.8 * thickness, 0.0), (0.8, 1.05))
    return [(*body, False, True), (*epidural, False, True)], [effect]
