"""How separable are the two volume demo studies? Distinguishable, not trivially.

Renders each demo with its schema defaults (docs/demo_schema_snippets_3d.yaml) into a
temporary folder, reads the files back with nibabel (as a user's reader would: through
the affine, into RAS order), and

- **vertebral CT** (malignant = positive): a logistic regression on simple features of the
  masked vertebral body and its surroundings, and one on a downsampled crop around the
  mask, each scored by patient-grouped 5-fold cross-validation on the internal cohort
  (out-of-fold AUC) and by training on the internal cohort and testing on the external one;
  AUC also on the typical patients only and accuracy on the atypical ones;
- **brain metastases**: a naive detector, connected components of a threshold on the
  normalised bright-blood image alone vs on both images (voxel-wise minimum), inside a
  brain region found by eroding the head; lesion-level sensitivity (overall and per size
  band) and false positives per case over a range of thresholds, and the mean signal along
  the vessels' centrelines on each image.

Usage: ``python benchmarks/demo_separability_3d.py [--ct-only|--brain-only] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from spinedx.demo import brain_mets, vertebral_ct  # noqa: E402

SNIPPETS = REPO / "docs" / "demo_schema_snippets_3d.yaml"
SIZE_BANDS = ((0.0, 5.0, "<5 mm"), (5.0, 10.0, "5-10 mm"), (10.0, np.inf, ">10 mm"))


def schema_defaults(section: str) -> dict:
    properties = yaml.safe_load(SNIPPETS.read_text())[section]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if key != "enabled"}


def read_ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels in RAS order and the matching affine."""
    image = nib.as_closest_canonical(nib.load(path))
    return np.asarray(image.dataobj), image.affine


# --- vertebral CT ------------------------------------------------------------------------------


def ct_features(image: np.ndarray, mask: np.ndarray, spacing) -> dict:
    """Hand-made features of the fractured body (RAS arrays: +y anterior, +z superior)."""
    body = mask > 0
    interior = ndimage.binary_erosion(body)  # without the cortical shell
    values = image[interior] if interior.sum() > 10 else image[body]
    features = {
        "interior_mean": float(values.mean()),
        "interior_p10": float(np.percentile(values, 10)),
        "interior_sd": float(values.std()),
        "lytic_fraction": float(np.mean(values < 60)),
        "sclerotic_fraction": float(np.mean(values > 300)),
    }
    xs, ys, zs = np.nonzero(body)
    cx, cz = xs.mean(), zs.mean()
    # Posterior elements: behind the body (lower y), within 25 mm left-right, body's height.
    reach = [int(round(25 / s)) for s in spacing]
    z0, z1 = zs.min(), zs.max() + 1
    y1 = ys.min()
    y0 = max(y1 - int(round(30 / spacing[1])), 0)
    x0, x1 = max(int(cx) - reach[0], 0), int(cx) + reach[0] + 1
    behind = image[x0:x1, y0:y1, z0:z1]
    features["posterior_bone_fraction"] = float(np.mean(behind > 200)) if behind.size else 0.0
    # Soft tissue around the body: a 2-8 mm ring, and its left-right asymmetry.
    near = ndimage.binary_dilation(body, iterations=max(int(round(8 / spacing[0])), 1)) & ~ndimage.binary_dilation(
        body, iterations=max(int(round(2 / spacing[0])), 1))
    soft = near & (image > 0) & (image < 120)
    features["ring_soft_fraction"] = float(soft.sum() / max(near.sum(), 1))
    left, right = soft[: int(cx)].sum(), soft[int(cx):].sum()
    features["ring_asymmetry"] = float(abs(left - right) / max(left + right, 1))
    # Bone density of the neighbouring bodies: a central box one level up and down.
    height = (zs.max() - zs.min() + 1) * spacing[2]
    densities = []
    for direction in (1, -1):
        zc = int(round(cz + direction * (height + 12) / spacing[2]))
        box = image[int(cx) - 3:int(cx) + 4, int(ys.mean()) - 3:int(ys.mean()) + 4, max(zc - 2, 0):zc + 3]
        if box.size:
            densities.append(np.median(box))
    features["neighbour_density"] = float(np.mean(densities)) if densities else float("nan")
    return features


def ct_crop(image: np.ndarray, affine: np.ndarray, mask: np.ndarray, size_mm=60.0, voxels=16) -> np.ndarray:
    """A ``voxels``^3 cube of ``size_mm`` around the mask centroid, HU clipped to [-200, 1000]."""
    centre = np.argwhere(mask > 0).mean(axis=0)
    world_centre = affine[:3, :3] @ centre + affine[:3, 3]
    offsets = (np.arange(voxels) + 0.5) / voxels * size_mm - size_mm / 2
    grid = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3) + world_centre
    index = np.linalg.solve(affine[:3, :3], (grid - affine[:3, 3]).T)
    values = ndimage.map_coordinates(image.astype(np.float32), index, order=1, mode="nearest")
    return np.clip(values, -200, 1000) / 1000.0


def auc_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, model_factory, seed=0) -> tuple[float, np.ndarray]:
    scores = np.zeros(len(y))
    for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, groups):
        model = model_factory().fit(X[train], y[train])
        scores[test] = model.predict_proba(X[test])[:, 1]
    return roc_auc_score(y, scores), scores


def run_ct(root: Path) -> None:
    settings = schema_defaults("demo_vertebral_ct")
    start = time.perf_counter()
    cases = vertebral_ct.generate_demo_cohort(root / "images", root / "cases.csv", settings)
    render_s = time.perf_counter() - start
    atypical = {p.patient_id: bool(p.atypical) for p in vertebral_ct._plan_cohort(settings)}
    rows, crops = [], []
    for case in cases.itertuples():
        folder = root / "images" / case.patient_id / settings["sequence"]
        image, affine = read_ras(folder / "image.nii.gz")
        mask, mask_affine = read_ras(folder / "mask.nii.gz")
        assert np.allclose(affine, mask_affine)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        rows.append(ct_features(image, mask, spacing))
        crops.append(ct_crop(image, affine, mask))
    features = pd.DataFrame(rows)
    y = (cases["diagnosis"] == "malignant").to_numpy(int)
    internal = (cases["cohort"] == "internal").to_numpy()
    groups = cases["patient_id"].to_numpy()
    typical = ~cases["patient_id"].map(atypical).to_numpy(bool)
    X_feat = features.fillna(features.median()).to_numpy()
    X_crop = np.stack(crops)

    def logistic():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))

    def crop_model():
        return make_pipeline(StandardScaler(), PCA(n_components=8, random_state=0),
                             LogisticRegression(C=0.5, max_iter=2000))

    print(f"## vertebral CT: {len(cases)} patients ({int(internal.sum())} internal, {int((~internal).sum())} "
          f"external), {int((~typical).sum())} atypical; rendered and written in {render_s:.1f} s")
    print("\n| model | internal 5-fold CV AUC (patient-grouped) | CV AUC, typical only | CV accuracy, atypical "
          "| internal -> external AUC |\n|---|---|---|---|---|")
    for name, X, factory in (("features (9) + logistic", X_feat, logistic),
                             ("16^3 crop, 60 mm + PCA(8) + logistic", X_crop, crop_model)):
        aucs, typical_aucs, atypical_acc = [], [], []
        for seed in range(5):  # fold assignment repeated: the spread of one small cohort's CV
            auc, scores = auc_cv(X[internal], y[internal], groups[internal], factory, seed)
            aucs.append(auc)
            t = typical[internal]
            typical_aucs.append(roc_auc_score(y[internal][t], scores[t]))
            atypical_acc.append(np.mean((scores[~t] > 0.5) == y[internal][~t]) if (~t).any() else np.nan)
        fitted = factory().fit(X[internal], y[internal])
        external = roc_auc_score(y[~internal], fitted.predict_proba(X[~internal])[:, 1])
        print(f"| {name} | {np.mean(aucs):.3f} (range {min(aucs):.3f}-{max(aucs):.3f}, 5 fold seeds) "
              f"| {np.mean(typical_aucs):.3f} | {np.nanmean(atypical_acc):.3f} | {external:.3f} |")
    print("\nSingle-feature AUCs (all patients, malignant positive; < 0.5 means lower in malignant):")
    for column in features.columns:
        values = features[column].fillna(features[column].median())
        print(f"- {column}: {roc_auc_score(y, values):.3f}")
    by_class = cases.groupby("diagnosis").agg(age=("age", "mean"), women=("sex", lambda s: float(np.mean(s == "F"))))
    print("\nDemographics:", by_class.round(2).to_dict("index"))


# --- brain metastases --------------------------------------------------------------------------


def brain_region(bright: np.ndarray, spacing) -> np.ndarray:
    """Inside of the head minus ~14 mm of scalp and skull (slice by slice: the slab is thin)."""
    head = bright > 0.3 * np.percentile(bright, 99)
    head = np.stack([ndimage.binary_fill_holes(head[:, :, k]) for k in range(head.shape[2])], axis=2)
    iterations = int(np.ceil(14.0 / spacing[0]))
    return ndimage.binary_erosion(head, structure=np.ones((3, 3, 1), bool), iterations=iterations)


def detect(candidate: np.ndarray, labels: np.ndarray) -> tuple[set, int]:
    """Lesions hit by a component of ``candidate``, and components that hit no lesion."""
    components, n = ndimage.label(candidate, structure=np.ones((3, 3, 3), bool))
    found, false_positives = set(), 0
    for index, part in enumerate(ndimage.find_objects(components), start=1):
        inside = components[part] == index
        hit = set(np.unique(labels[part][inside])) - {0}
        if hit:
            found |= hit
        else:
            false_positives += 1
    return found, false_positives


def centreline_signal(image: np.ndarray, affine_ras: np.ndarray, patient, vessel) -> float:
    """Mean image value along a vessel's centreline (points every 0.5 mm), in scanner space."""
    points = []
    for start, end, _ in vessel.segments:
        start, end = np.asarray(start), np.asarray(end)
        n = max(int(np.linalg.norm(end - start) / 0.5), 1)
        points += [start + (end - start) * t for t in np.linspace(0, 1, n, endpoint=False)]
    world = np.asarray(points) + np.asarray(patient.translation)
    index = np.linalg.solve(affine_ras[:3, :3], (world - affine_ras[:3, 3]).T)
    inside = np.all((index >= 0) & (index <= np.array(image.shape)[:, None] - 1), axis=0)
    if not inside.any():
        return float("nan")
    return float(ndimage.map_coordinates(image.astype(np.float32), index[:, inside], order=1).mean())


def run_brain(root: Path) -> None:
    settings = schema_defaults("demo_brain_mets")
    start = time.perf_counter()
    cases = brain_mets.generate_demo_cohort(root / "images", root / "cases.csv", settings)
    render_s = time.perf_counter() - start
    patients = {p.patient_id: p for p in brain_mets._plan_cohort(settings)}
    thresholds = (1.3, 1.4, 1.5, 1.6, 1.8, 2.0)
    found = {(mode, t): 0 for mode in ("bright", "both") for t in thresholds}
    found_band = {(mode, t, band): 0 for mode in ("bright", "both") for t in thresholds for *_, band in SIZE_BANDS}
    false_positives = {key: 0 for key in found}
    n_band = {band: 0 for *_, band in SIZE_BANDS}
    vessel_ratio = {"bright_blood": [], "black_blood": []}
    n_lesions = 0
    for case in cases.itertuples():
        patient = patients[case.patient_id]
        folder = root / "images" / case.patient_id
        bright, affine = read_ras(folder / settings["sequences"]["bright_blood"] / "image.nii.gz")
        black, _ = read_ras(folder / settings["sequences"]["black_blood"] / "image.nii.gz")
        labels, _ = read_ras(folder / "lesions.nii.gz")
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        region = brain_region(bright, spacing)
        normalised = {"bright_blood": bright / np.median(bright[region]),
                      "black_blood": black / np.median(black[region])}
        for role, image in normalised.items():
            for vessel in patient.vessels:
                if vessel.kind != "sinus" and min(r for *_, r in vessel.segments) >= 0.8:
                    vessel_ratio[role].append(centreline_signal(image, affine, patient, vessel))
        diameters = {k: lesion.diameter for k, lesion in enumerate(patient.lesions, start=1)}
        n_lesions += len(diameters)
        for low, high, band in SIZE_BANDS:
            n_band[band] += sum(low <= d < high for d in diameters.values())
        both = np.minimum(normalised["bright_blood"], normalised["black_blood"])
        for t in thresholds:
            for mode, image in (("bright", normalised["bright_blood"]), ("both", both)):
                hits, fps = detect((image > t) & region, labels)
                found[mode, t] += len(hits)
                false_positives[mode, t] += fps
                for low, high, band in SIZE_BANDS:
                    found_band[mode, t, band] += sum(low <= diameters[k] < high for k in hits)
    n_cases = len(cases)
    print(f"\n## brain metastases: {n_cases} patients, {n_lesions} lesions "
          f"({', '.join(f'{band}: {n}' for band, n in n_band.items())}); rendered and written in {render_s:.1f} s")
    print("\nMean signal on the centrelines of the vessels of radius >= 0.8 mm (sinus excluded), "
          "relative to the brain median: "
          + ", ".join(f"{role} {np.nanmean(v):.2f} (sd {np.nanstd(v):.2f}, n={np.sum(np.isfinite(v))})"
                      for role, v in vessel_ratio.items()))
    print("\nNaive detector: connected components of (normalised image > t) inside the eroded head.\n")
    print("| t | input | sensitivity | " + " | ".join(f"sens {band}" for *_, band in SIZE_BANDS)
          + " | FP per case |\n|---|---|---|---|---|---|---|")
    for t in thresholds:
        for mode, name in (("bright", "bright blood alone"), ("both", "both (min)")):
            bands = " | ".join(f"{found_band[mode, t, band] / max(n_band[band], 1):.2f}" for *_, band in SIZE_BANDS)
            print(f"| {t} | {name} | {found[mode, t] / n_lesions:.2f} | {bands} "
                  f"| {false_positives[mode, t] / n_cases:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--ct-only", action="store_true")
    part.add_argument("--brain-only", action="store_true")
    parser.add_argument("--keep", type=Path, help="render into this folder and keep it")
    args = parser.parse_args()
    print(f"# demo separability, {platform.node()} {platform.machine()}, python {platform.python_version()}\n")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        if not args.brain_only:
            run_ct(root / "vertebral_ct")
        if not args.ct_only:
            run_brain(root / "brain_mets")


if __name__ == "__main__":
    main()
