"""How separable are the classes of the 2-D demo studies? (ISMF-shaped and canine-shaped)

Renders a cohort with the schema defaults (docs/demo_schema_snippets.yaml; counts times
``--scale``), crops each image to its labelme rectangle (``--framing``: the whole image
when it has no shape, whole images throughout, or a lesion image's rectangle borrowed for
an image without a shape), resizes to 64 px and fits a quick
classifier: multinomial logistic regression on 16 x 16 pooled pixels plus simple
features (intensity statistics, box size, aspect and position), one model per sequence.
Internal patients: 5-fold cross-validation grouped by patient and stratified by class;
external cohorts: a model fitted on all internal patients. Prints per-class accuracy
(recall) and one-vs-rest AUC per sequence and, for the ISMF study, per patient (mean
probability over all of a patient's images) next to clinical covariates alone (logistic
regression on age, sex, log symptom months, known primary cancer) and image x clinical
(the product of the two probability vectors, renormalised).

    python benchmarks/demo_separability.py --study ismf --scale 3
    python benchmarks/demo_separability.py --study canine --scale 3
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from spinedx.demo import canine, ismf  # noqa: E402

STUDIES = {"ismf": (ismf, "ismf_demo"), "canine": (canine, "canine_demo")}
CROP = 64
POOL = 4  # 64 px -> 16 x 16 features


def schema_defaults(section: str) -> dict:
    schema = yaml.safe_load((REPO / "docs/demo_schema_snippets.yaml").read_text())[section]
    return {name: prop["default"] for name, prop in schema["properties"].items()}


def scaled(settings: dict, scale: float) -> dict:
    counts = {cohort: {c: int(round(n * scale)) for c, n in per_class.items()}
              for cohort, per_class in settings["n_patients"].items()}
    return {**settings, "n_patients": counts}


def relative_box(annotation: dict) -> tuple | None:
    """The rectangle as fractions of the image (x0, y0, x1, y1), None without a shape."""
    if not annotation["shapes"]:
        return None
    points = np.array(annotation["shapes"][0]["points"], dtype=float)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    width, height = annotation["imageWidth"], annotation["imageHeight"]
    return x0 / width, y0 / height, x1 / width, y1 / height


def image_features(png: Path, box: tuple | None) -> np.ndarray:
    """Pooled pixels of the 64 px crop of ``box`` (relative; None: the whole image) and
    simple features."""
    image = np.asarray(Image.open(png), dtype=np.float32)
    low, high = np.percentile(image, [1, 99])
    image = (image - low) / max(high - low, 1.0)
    height, width = image.shape
    x0, y0, x1, y1 = np.multiply(box or (0.0, 0.0, 1.0, 1.0), [width, height, width, height])
    crop = image[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))]
    crop = np.asarray(Image.fromarray(crop).resize((CROP, CROP), Image.Resampling.BILINEAR))
    pooled = crop.reshape(CROP // POOL, POOL, CROP // POOL, POOL).mean(axis=(1, 3)).ravel()
    gradient = np.hypot(*np.gradient(crop)).mean()
    simple = [crop.mean(), crop.std(), *np.percentile(crop, [10, 50, 90]), gradient,
              (x1 - x0) / width, (y1 - y0) / height, np.log((x1 - x0) / (y1 - y0)),
              (x0 + x1) / 2 / width, (y0 + y1) / 2 / height]
    return np.concatenate([pooled, simple])


def load(root: Path, framing: str, seed: int) -> pd.DataFrame:
    """One row per image: patient, folder, shape label (None: no shape) and features.

    ``framing``: "box" crops the rectangle and takes the whole image when there is none;
    "whole" takes every image whole; "decoy" gives an image without a shape the
    rectangle of a lesion image of the same sequence (the same dog's when it has one,
    else another dog's), so that every input is framed alike and only the content tells.
    """
    rows = []
    for path in sorted((root / "images").glob("*/*/*.json")):
        annotation = json.loads(path.read_text())
        label = annotation["shapes"][0]["label"] if annotation["shapes"] else None
        rows.append({"patient_id": path.parts[-3], "folder": path.parts[-2], "shape_label": label,
                     "path": path.with_suffix(".png"), "box": relative_box(annotation)})
    table = pd.DataFrame(rows)
    if framing == "decoy":
        rng = np.random.default_rng(seed)
        for index in table.index[table["box"].isna()]:
            folder, patient = table.at[index, "folder"], table.at[index, "patient_id"]
            donors = table[(table["folder"] == folder) & table["box"].notna()]
            own = donors[donors["patient_id"] == patient]
            donors = own if len(own) else donors
            table.at[index, "box"] = donors["box"].iloc[int(rng.integers(len(donors)))]
    table["features"] = [image_features(path, None if framing == "whole" else box)
                         for path, box in zip(table["path"], table["box"])]
    return table


def model():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, class_weight="balanced", max_iter=3000))


def out_of_fold(x, y, folds, classes) -> np.ndarray:
    """Probabilities for each row from a model fitted on the other folds."""
    probabilities = np.zeros((len(y), len(classes)))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        fitted = model().fit(x[train], y[train])
        columns = [classes.index(c) for c in fitted.classes_]
        probabilities[np.ix_(test, columns)] = fitted.predict_proba(x[test])
    return probabilities


def fitted_probabilities(x_train, y_train, x_test, classes) -> np.ndarray:
    fitted = model().fit(x_train, y_train)
    probabilities = np.zeros((len(x_test), len(classes)))
    probabilities[:, [classes.index(c) for c in fitted.classes_]] = fitted.predict_proba(x_test)
    return probabilities


def scores(y, probabilities, classes) -> dict:
    """Accuracy, per-class recall and one-vs-rest AUC (None where a class is absent)."""
    predicted = np.array(classes)[probabilities.argmax(axis=1)]
    y = np.asarray(y)
    out = {"n": len(y), "accuracy": float(np.mean(predicted == y))}
    for index, name in enumerate(classes):
        present = y == name
        out[f"recall {name}"] = float(np.mean(predicted[present] == name)) if present.any() else None
        both = 0 < present.sum() < len(y)
        out[f"AUC {name}"] = float(roc_auc_score(present, probabilities[:, index])) if both else None
    return out


def table(rows: dict, classes) -> str:
    header = ["input", "n", "accuracy", *(f"recall {c}" for c in classes), *(f"AUC {c}" for c in classes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [name, str(row["n"])] + [("-" if row[h] is None else f"{row[h]:.2f}") for h in header[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fuse(image: np.ndarray, clinical: np.ndarray) -> np.ndarray:
    """Product of the two models' class probabilities, renormalised (both were fitted with
    balanced class weights, so neither carries the prevalences twice)."""
    product = image * clinical
    return product / product.sum(axis=1, keepdims=True)


def patient_folds(cases: pd.DataFrame, label_column: str, seed: int) -> dict:
    internal = cases[cases["cohort"] == "internal"].reset_index(drop=True)
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    folds = {}
    for fold, (_, test) in enumerate(splitter.split(internal, internal[label_column], internal["patient_id"])):
        folds.update(dict.fromkeys(internal.loc[test, "patient_id"], fold))
    return folds


def clinical_matrix(cases: pd.DataFrame) -> np.ndarray:
    return np.column_stack([cases["age"], cases["sex"] == "M", np.log(cases["symptom_months"]),
                            cases["known_primary_cancer"]]).astype(float)


def run_ismf(images: pd.DataFrame, cases: pd.DataFrame, seed: int) -> str:
    classes = list(ismf.CLASSES)
    folds = patient_folds(cases, "diagnosis", seed)
    images = images.merge(cases[["patient_id", "diagnosis", "cohort"]], on="patient_id")
    internal = images[images["cohort"] == "internal"].reset_index(drop=True)
    out = []
    rows, patient_probabilities = {}, {}
    for folder, part in internal.groupby("folder"):
        x, y = np.stack(part["features"]), part["diagnosis"].to_numpy()
        probabilities = out_of_fold(x, y, part["patient_id"].map(folds).to_numpy(), classes)
        rows[f"{folder} (images)"] = scores(y, probabilities, classes)
        for patient, p in zip(part["patient_id"], probabilities):
            patient_probabilities.setdefault(patient, []).append(p)
    cases_internal = cases[cases["cohort"] == "internal"].reset_index(drop=True)
    image_patient = np.stack([np.mean(patient_probabilities[p], axis=0) for p in cases_internal["patient_id"]])
    y_patient = cases_internal["diagnosis"].to_numpy()
    patient_fold = cases_internal["patient_id"].map(folds).to_numpy()
    rows["all sequences, per patient"] = scores(y_patient, image_patient, classes)
    clinical = clinical_matrix(cases_internal)
    clinical_patient = out_of_fold(clinical, y_patient, patient_fold, classes)
    rows["clinical only, per patient"] = scores(y_patient, clinical_patient, classes)
    rows["image x clinical, per patient"] = scores(y_patient, fuse(image_patient, clinical_patient), classes)
    out.append("Internal cohort, 5-fold patient-grouped cross-validation:\n\n" + table(rows, classes))

    rows = {}
    for centre in ("external_centre2", "external_centre3"):
        centre_cases = cases[cases["cohort"] == centre].reset_index(drop=True)
        if centre_cases.empty:
            continue
        per_patient = {}
        for folder, part in images[images["cohort"] == centre].groupby("folder"):
            train = internal[internal["folder"] == folder]
            probabilities = fitted_probabilities(np.stack(train["features"]), train["diagnosis"].to_numpy(),
                                                 np.stack(part["features"]), classes)
            rows[f"{centre} {folder} (images)"] = scores(part["diagnosis"].to_numpy(), probabilities, classes)
            for patient, p in zip(part["patient_id"], probabilities):
                per_patient.setdefault(patient, []).append(p)
        image_external = np.stack([np.mean(per_patient[p], axis=0) for p in centre_cases["patient_id"]])
        y_external = centre_cases["diagnosis"].to_numpy()
        rows[f"{centre} all sequences, per patient"] = scores(y_external, image_external, classes)
        clinical_external = fitted_probabilities(clinical, y_patient, clinical_matrix(centre_cases), classes)
        rows[f"{centre} clinical only, per patient"] = scores(y_external, clinical_external, classes)
        rows[f"{centre} image x clinical, per patient"] = scores(y_external, fuse(image_external, clinical_external),
                                                                 classes)
    out.append("External centres, models fitted on all internal patients:\n\n" + table(rows, classes))
    return "\n\n".join(out)


def run_canine(images: pd.DataFrame, cases: pd.DataFrame, seed: int) -> str:
    classes = [canine.REFERENCE, *canine.PATHOLOGIES]
    images = images.merge(cases[["patient_id", "cohort"]], on="patient_id")
    images["label"] = images["shape_label"].fillna(canine.REFERENCE)
    counts = images.groupby(["cohort", "label"]).size().unstack(fill_value=0)
    folds = patient_folds(cases, "diagnosis", seed)
    internal = images[images["cohort"] == "internal"].reset_index(drop=True)
    external = images[images["cohort"] == "external"].reset_index(drop=True)
    cv_rows, external_rows = {}, {}
    groups = [(folder, internal["folder"] == folder, external["folder"] == folder)
              for folder in sorted(internal["folder"].unique())]
    groups.append(("all sequences", np.ones(len(internal), bool), np.ones(len(external), bool)))
    for name, in_mask, ex_mask in groups:
        part = internal[in_mask]
        x, y = np.stack(part["features"]), part["label"].to_numpy()
        cv_rows[name] = scores(y, out_of_fold(x, y, part["patient_id"].map(folds).to_numpy(), classes), classes)
        if ex_mask.any():
            test = external[ex_mask]
            external_rows[name] = scores(test["label"].to_numpy(),
                                         fitted_probabilities(x, y, np.stack(test["features"]), classes), classes)
    return (f"Images per cohort and label:\n\n{counts.to_markdown()}\n\n"
            "Internal cohort, 5-fold dog-grouped cross-validation (images):\n\n" + table(cv_rows, classes)
            + "\n\nExternal cohort, models fitted on all internal dogs (images):\n\n" + table(external_rows, classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default patient counts")
    parser.add_argument("--seed", type=int, help="cohort seed (default: the schema's)")
    parser.add_argument("--framing", choices=["box", "whole", "decoy"], default="box",
                        help="box: rectangle crops, whole images without a shape; whole: all whole; "
                             "decoy: images without a shape cropped like a lesion image (see load())")
    parser.add_argument("--workdir", type=Path, help="where to render (default: /tmp/...; reused if present)")
    args = parser.parse_args()
    module, section = STUDIES[args.study]
    settings = scaled(schema_defaults(section), args.scale)
    if args.seed is not None:
        settings["seed"] = args.seed
    root = args.workdir or Path(f"/tmp/spinedx-separability-{args.study}-x{args.scale:g}-{settings['seed']}")
    started = time.perf_counter()
    if not (root / "cases.csv").is_file():
        module.generate_demo_cohort(root / "images", root / "cases.csv", settings)
    rendered = time.perf_counter()
    cases = pd.read_csv(root / "cases.csv")
    images = load(root, args.framing, settings["seed"])
    report = (run_ismf if args.study == "ismf" else run_canine)(images, cases, settings["seed"])
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"# {args.study} separability: {len(cases)} patients, {len(images)} images, seed {settings['seed']}, "
          f"scale {args.scale:g}, framing {args.framing}; commit {commit}, "
          f"{platform.machine()}; render {rendered - started:.0f} s, classify {time.perf_counter() - rendered:.0f} s\n")
    print(report)


if __name__ == "__main__":
    main()
