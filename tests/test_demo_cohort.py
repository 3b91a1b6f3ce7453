"""Tests of the built-in demo cohort: format, determinism, demographics, lesion boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import tree_hash
from spinedx.demo import spine as demo_cohort
from spinedx.demo.plan import default_settings
from spinedx.demo.spine import generate_demo_cohort

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="demo_cohort")

DEFAULT_SETTINGS = default_settings()  # the schema's defaults (config demo_cohort, sequences)

SMALL = {
    **DEFAULT_SETTINGS,
    "seed": 7,
    "n_internal": {"ependymoma": 3, "schwannoma": 3},
    "n_external": {"ependymoma": 2, "schwannoma": 2},
}
FOLDERS = set(SMALL["sequence_folders"].values())


def _generate(root: Path, settings: dict) -> tuple[Path, Path, pd.DataFrame]:
    images, cases = root / "images", root / "cases.csv"
    return images, cases, generate_demo_cohort(images, cases, settings)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("demo"), SMALL)


def test_same_seed_gives_identical_files_and_another_seed_differs(cohort, tmp_path):
    images, cases, _ = cohort
    reference = tree_hash(images.parent)
    assert tree_hash(_generate(tmp_path / "again", SMALL)[0].parent) == reference
    assert tree_hash(_generate(tmp_path / "other", {**SMALL, "seed": 8})[0].parent) != reference


def test_cases_table(cohort):
    _, cases_csv, returned = cohort
    cases = pd.read_csv(cases_csv)
    assert list(cases.columns) == ["patient_id", "diagnosis", "cohort", "age", "sex"]
    pd.testing.assert_frame_equal(cases, returned)
    assert cases["patient_id"].is_unique
    assert set(cases["diagnosis"]) == {"ependymoma", "schwannoma"}
    assert set(cases["sex"]) <= {"M", "F"}
    assert cases["age"].dtype.kind == "i" and cases["age"].between(12, 90).all()
    for cohort_name, key, prefix in (("internal", "n_internal", "DEMO-I"), ("external", "n_external", "DEMO-E")):
        part = cases[cases["cohort"] == cohort_name]
        assert part["diagnosis"].value_counts().to_dict() == SMALL[key]
        assert part["patient_id"].str.fullmatch(prefix + r"\d{3}").all()
    assert set(cases["cohort"]) == {"internal", "external"}


def test_images_and_labelme_annotations(cohort):
    images, cases_csv, _ = cohort
    cases = pd.read_csv(cases_csv)
    assert {p.name for p in images.iterdir()} == set(cases["patient_id"])
    low, high = SMALL["slices_per_sequence"]
    sizes, corner_orders = {}, set()
    for patient in cases["patient_id"]:
        assert {p.name for p in (images / patient).iterdir()} == FOLDERS
        for folder in FOLDERS:
            jsons = sorted((images / patient / folder).glob("*.json"))
            assert low <= len(jsons) <= high
            assert len(list((images / patient / folder).glob("*.png"))) == len(jsons)
            for k, path in enumerate(jsons, start=1):
                assert path.stem == f"{patient}_{folder}_{k}"
                text = path.read_text()
                assert "ependymoma" not in text.lower() and "schwannoma" not in text.lower()
                annotation = json.loads(text)
                assert annotation["version"] == "5.4.1"
                assert annotation["flags"] == {} and annotation["imageData"] is None
                assert annotation["imagePath"] == f"{path.stem}.png"
                png = path.parent / annotation["imagePath"]
                assert png.is_file()
                with Image.open(png) as image:
                    assert image.mode == "L"
                    assert image.size == (annotation["imageWidth"], annotation["imageHeight"])
                    assert np.asarray(image).dtype == np.uint8
                sizes.setdefault(patient, set()).add(image.size)
                (shape,) = annotation["shapes"]
                assert shape["shape_type"] == "rectangle"
                assert shape["label"] in {"tumor", "lesion", "Tumour"}
                assert shape["group_id"] is None and shape["mask"] is None
                assert shape["description"] == "" and shape["flags"] == {}
                points = np.array(shape["points"], dtype=float)
                assert points.shape == (2, 2)
                (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
                assert 0 <= x0 < x1 <= annotation["imageWidth"]
                assert 0 <= y0 < y1 <= annotation["imageHeight"]
                corner_orders.add((points[0, 0] < points[1, 0], points[0, 1] < points[1, 1]))
    # One size per patient, and patients differ.
    assert all(len(s) == 1 for s in sizes.values())
    assert len({next(iter(s)) for s in sizes.values()}) > 1
    for width, height in (next(iter(s)) for s in sizes.values()):
        assert SMALL["image_width"][0] <= width <= SMALL["image_width"][1]
        assert SMALL["image_height"][0] <= height <= SMALL["image_height"][1]
    assert len(corner_orders) > 1  # annotators drag the rectangle in different directions


def test_lesion_lies_inside_its_box():
    patients = demo_cohort._plan_cohort(SMALL)
    for patient in patients:
        for sequence in demo_cohort.SEQUENCES:
            rng = np.random.default_rng(patient.index)
            for image, mask, box in demo_cohort._render_sequence(patient, sequence, 3, rng):
                assert image.shape == mask.shape == (patient.height, patient.width)
                rows, cols = np.nonzero(mask)
                assert rows.size > 0
                x0, y0, x1, y1 = box
                # Every lesion pixel, and so its centre, lies inside the rectangle ...
                assert x0 <= cols.min() and cols.max() + 1 <= x1
                assert y0 <= rows.min() and rows.max() + 1 <= y1
                # ... which keeps only a margin of a few pixels around it.
                assert x1 - x0 <= cols.max() + 1 - cols.min() + 12
                assert y1 - y0 <= rows.max() + 1 - rows.min() + 12


def test_demographics_and_lesion_features_follow_the_classes():
    big = {**SMALL, "n_internal": {"ependymoma": 150, "schwannoma": 150}, "n_external": {"ependymoma": 0, "schwannoma": 0}}
    patients = demo_cohort._plan_cohort(big)
    by_class = {d: [p for p in patients if p.diagnosis == d] for d in demo_cohort.DIAGNOSES}
    ependymoma, schwannoma = by_class["ependymoma"], by_class["schwannoma"]
    assert np.mean([p.age for p in schwannoma]) - np.mean([p.age for p in ependymoma]) > 10
    assert np.mean([p.sex == "M" for p in schwannoma]) > np.mean([p.sex == "M" for p in ependymoma]) + 0.2

    def elongation(p):
        return p.lesion.half_length / p.lesion.half_width

    epe, sch = np.array([elongation(p) for p in ependymoma]), np.array([elongation(p) for p in schwannoma])
    assert np.median(epe) > 2.5 and np.median(sch) < 2.0
    # Deliberate overlap: some schwannomas are elongated and some ependymomas are not.
    assert (sch > np.quantile(epe, 0.1)).any() and (epe < np.quantile(sch, 0.9)).any()
    assert np.mean([p.lesion.t1_ratio for p in ependymoma]) > np.mean([p.lesion.t1_ratio for p in schwannoma])
    assert np.mean([bool(p.lesion.cysts) for p in schwannoma]) > np.mean([bool(p.lesion.cysts) for p in ependymoma])
    # Identifier order does not give the diagnosis away.
    first_half = [p.diagnosis for p in patients[:150]]
    assert 0.3 < first_half.count("ependymoma") / 150 < 0.7


def test_settings_default_and_validation(tmp_path):
    partial = {k: v for k, v in SMALL.items() if k != "sequence_folders"}
    images, _, cases = _generate(tmp_path / "partial", {**partial, "n_internal": {"ependymoma": 1, "schwannoma": 1},
                                                        "n_external": {"ependymoma": 0, "schwannoma": 0}})
    assert len(cases) == 2
    assert {p.name for p in (images / cases["patient_id"][0]).iterdir()} == set(DEFAULT_SETTINGS["sequence_folders"].values())
    with pytest.raises(ValueError, match="n_internal"):
        generate_demo_cohort(tmp_path / "x", tmp_path / "x.csv", {**SMALL, "n_internal": {"meningioma": 2}})
    with pytest.raises(ValueError, match="image_height"):
        generate_demo_cohort(tmp_path / "x", tmp_path / "x.csv", {**SMALL, "image_height": [300, 200]})


def test_rerun_replaces_an_earlier_demo_but_nothing_else(tmp_path):
    images, cases_csv, _ = _generate(tmp_path, SMALL)
    (images / "my_notes.txt").write_text("keep me")
    fewer = {**SMALL, "n_internal": {"ependymoma": 1, "schwannoma": 1}, "n_external": {"ependymoma": 1, "schwannoma": 0}}
    cases = generate_demo_cohort(images, cases_csv, fewer)
    assert {p.name for p in images.iterdir() if p.is_dir()} == set(cases["patient_id"])
    assert (images / "my_notes.txt").read_text() == "keep me"


def test_planned_files_are_exactly_the_files_written(tmp_path):
    from spinedx import config as configuration
    from spinedx.demo.plan import demo_settings, planned_files

    config = configuration.resolve({"demo_cohort": {"n_internal": {"ependymoma": 2, "schwannoma": 1},
                                                    "n_external": {"ependymoma": 1, "schwannoma": 1},
                                                    "slices_per_sequence": [1, 3]}})
    settings = demo_settings(config)
    generate_demo_cohort(tmp_path / "images", tmp_path / "cases.csv", settings)
    written = {p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*") if p.is_file()}
    planned = planned_files(settings)
    assert written == {f for files in planned.values() for f in files}
    assert all("/T2WI/" in f for f in planned["T2"]) and all("/T1C/" in f for f in planned["CE-T1"])


def test_patient_naming_and_earlier_run_removal_of_every_2d_layout(tmp_path):
    """The N-class demos (ISMF: centres C1-C3, canine: DOG-I/E) replace only their own patient
    folders; a folder a user named like an identifier but longer or shorter is kept."""
    from spinedx.demo import canine, ismf
    from spinedx.demo import patients as demo_patients

    for module, kept in ((ismf, ["ISMF-C1-01", "ISMF-C1-001x", "notes"]), (canine, ["DOG-I01", "DOG-X001", "notes"])):
        images = tmp_path / module.__name__.rsplit(".", 1)[-1]
        earlier = [f"{prefix}007" for _, prefix in module.LAYOUT.cohorts]
        for name in [*earlier, *kept]:
            (images / name).mkdir(parents=True)
        demo_patients.remove_earlier_patients(images, module.LAYOUT.id_pattern())
        assert sorted(p.name for p in images.iterdir()) == sorted(kept)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    shuffled = demo_patients.shuffled_classes({"a": 2, "b": 1, "c": 0}, ["a", "b", "c"], rng_a)
    assert sorted(shuffled) == ["a", "a", "b"]
    assert shuffled == [["a", "a", "b"][i] for i in rng_b.permutation(3)]  # one draw: demo files depend on it
    assert demo_patients.two_cohort_ids({"n_internal": {"x": 2, "y": 0}, "n_external": 1}) == [
        "DEMO-I001", "DEMO-I002", "DEMO-E001"]
