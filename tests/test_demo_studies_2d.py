"""Tests of the two 2-D demo studies (ISMF-shaped, canine-shaped): format, determinism,
planned files, counts, cohorts, labelme validity, image-level labels, covariates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from spinedx.demo import anatomy, canine, cohort, ismf

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="demo_studies_2d")

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = yaml.safe_load((REPO / "docs/demo_schema_snippets.yaml").read_text())


def defaults(section: str) -> dict:
    return {name: prop["default"] for name, prop in SNIPPETS[section]["properties"].items()}


ISMF_SMALL = {
    **defaults("ismf_demo"), "seed": 11,
    "n_patients": {"internal": dict.fromkeys(ismf.CLASSES, 1),
                   "external_centre2": {"schwannoma": 1, "metastasis": 1},
                   "external_centre3": {"meningioma": 1, "astrocytoma": 1, "ependymoma": 1}},
    "slices_per_sequence": [1, 2], "sagittal_height": [80, 96], "sagittal_width": [64, 72],
    "transverse_size": [64, 72],
}
CANINE_SMALL = {
    **defaults("canine_demo"), "seed": 12,
    "n_patients": {"internal": dict.fromkeys(canine.CLASSES, 1), "external": {"IVDE": 1, "unremarkable": 1}},
    "slices_per_sequence": [2, 3], "sagittal_height": [64, 72], "sagittal_width": [96, 104],
    "transverse_size": [64, 72],
}
STUDIES = {"ismf": (ismf, ISMF_SMALL), "canine": (canine, CANINE_SMALL)}


def _generate(module, root: Path, settings: dict) -> tuple[Path, pd.DataFrame]:
    cases = module.generate_demo_cohort(root / "images", root / "cases.csv", settings)
    return root / "images", cases


def _file_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _annotations(images: Path) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted(images.glob("*/*/*.json"))]


@pytest.fixture(scope="module", params=sorted(STUDIES))
def study(request, tmp_path_factory):
    module, settings = STUDIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    images, cases = _generate(module, root, settings)
    return module, settings, root, images, cases


def test_same_seed_gives_identical_files_and_another_seed_differs(study, tmp_path):
    module, settings, root, _, _ = study
    reference = _file_digests(root)
    _generate(module, tmp_path / "again", settings)
    assert _file_digests(tmp_path / "again") == reference
    _generate(module, tmp_path / "other", {**settings, "seed": settings["seed"] + 1})
    assert _file_digests(tmp_path / "other") != reference


def test_planned_files_are_exactly_the_files_written(study, monkeypatch):
    module, settings, _, images, _ = study
    written = {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file()}
    monkeypatch.setattr(anatomy, "render", None)  # planning must not render
    planned = module.planned_files(settings)
    assert list(planned) == list(module.SEQUENCES)
    assert written == {f for files in planned.values() for f in files}
    for sequence, files in planned.items():
        assert all(f"/{settings['sequence_folders'][sequence]}/" in f for f in files)


def test_cases_table_counts_and_cohorts(study):
    module, settings, root, images, cases = study
    pd.testing.assert_frame_equal(pd.read_csv(root / "cases.csv"), cases)
    assert list(cases.columns) == module.CASE_COLUMNS
    assert cases["patient_id"].is_unique
    assert {p.name for p in images.iterdir()} == set(cases["patient_id"])
    for cohort_name, prefix in module.LAYOUT.cohorts:
        part = cases[cases["cohort"] == cohort_name]
        expected = {c: n for c, n in settings["n_patients"].get(cohort_name, {}).items() if n}
        assert part["diagnosis"].value_counts().to_dict() == expected
        assert part["patient_id"].str.fullmatch(prefix + r"\d{3}").all()
    assert set(cases["cohort"]) == set(module.COHORTS)


def test_images_and_labelme_files(study):
    module, settings, _, images, cases = study
    diagnosis = dict(zip(cases["patient_id"], cases["diagnosis"]))
    low, high = settings["slices_per_sequence"]
    for patient in cases["patient_id"]:
        assert {p.name for p in (images / patient).iterdir()} == set(settings["sequence_folders"].values())
        for folder in settings["sequence_folders"].values():
            assert low <= len(list((images / patient / folder).glob("*.json"))) <= high
    for path, annotation in _annotations(images):
        patient, folder = path.parts[-3], path.parts[-2]
        assert path.stem.startswith(f"{patient}_{folder}_")
        assert annotation["version"] == "5.4.1" and annotation["flags"] == {} and annotation["imageData"] is None
        assert annotation["imagePath"] == f"{path.stem}.png"
        with Image.open(path.parent / annotation["imagePath"]) as image:
            assert image.mode == "L"
            assert image.size == (annotation["imageWidth"], annotation["imageHeight"])
            pixels = np.asarray(image)
        assert pixels.std() > 10  # an image, not a blank
        for shape in annotation["shapes"]:
            assert shape["shape_type"] == "rectangle" and shape["group_id"] is None and shape["mask"] is None
            (x0, y0), (x1, y1) = np.min(shape["points"], axis=0), np.max(shape["points"], axis=0)
            assert 0 <= x0 < x1 <= annotation["imageWidth"] and 0 <= y0 < y1 <= annotation["imageHeight"]
        if module is ismf:
            (shape,) = annotation["shapes"]  # every image shows the tumour
            assert shape["label"] in {"tumor", "tumour", "lesion", "mass"}  # the label is the cases table's
            assert diagnosis[patient] not in path.read_text()
        else:
            assert len(annotation["shapes"]) <= 1
            if annotation["shapes"]:
                assert annotation["shapes"][0]["label"] == diagnosis[patient]


def test_image_shapes_follow_the_planes(study):
    module, settings, _, images, _ = study
    for path, annotation in _annotations(images):
        height, width = annotation["imageHeight"], annotation["imageWidth"]
        if "T" in path.parts[-2] and ("AX" in path.parts[-2] or "TRA" in path.parts[-2]):
            assert height == width
            assert settings["transverse_size"][0] <= width <= settings["transverse_size"][1]
        else:
            assert settings["sagittal_height"][0] <= height <= settings["sagittal_height"][1]
            assert settings["sagittal_width"][0] <= width <= settings["sagittal_width"][1]


def test_canine_labels_belong_to_images(tmp_path):
    images, cases = _generate(canine, tmp_path, {**CANINE_SMALL, "seed": 5,
                                                 "n_patients": {"internal": dict.fromkeys(canine.CLASSES, 2)}})
    diagnosis = dict(zip(cases["patient_id"], cases["diagnosis"]))
    labels: dict[str, list] = {}
    for path, annotation in _annotations(images):
        labels.setdefault(path.parts[-3], []).append(annotation["shapes"][0]["label"] if annotation["shapes"] else None)
    normal = [p for p, d in diagnosis.items() if d == canine.REFERENCE]
    assert normal and all(label is None for p in normal for label in labels[p])
    sick = [p for p, d in diagnosis.items() if d != canine.REFERENCE]
    # Dogs with a pathology have unremarkable images too, and every pathology is annotated somewhere.
    assert sum(None in labels[p] for p in sick) >= len(sick) // 2
    assert {label for p in sick for label in labels[p]} - {None} == set(canine.PATHOLOGIES)
    assert "label" not in cases.columns and "shape_label" not in cases.columns


def test_ismf_covariates_carry_partial_signal():
    big = {**ISMF_SMALL, "n_patients": {"internal": dict.fromkeys(ismf.CLASSES, 120)}}
    patients = ismf.plan_cohort(big)
    by_class = {c: [p for p in patients if p.diagnosis == c] for c in ismf.CLASSES}
    age = {c: np.mean([p.age for p in by_class[c]]) for c in ismf.CLASSES}
    assert age["astrocytoma"] < age["ependymoma"] < age["schwannoma"] < age["meningioma"] < age["metastasis"]
    ages = {c: np.array([p.age for p in by_class[c]]) for c in ismf.CLASSES}
    assert (ages["astrocytoma"] > np.median(ages["metastasis"])).any()  # overlap
    primary = {c: np.mean([p.known_primary_cancer for p in by_class[c]]) for c in ismf.CLASSES}
    assert 0.45 < primary["metastasis"] < 0.8 and max(v for c, v in primary.items() if c != "metastasis") < 0.12
    women = {c: np.mean([p.sex == "F" for p in by_class[c]]) for c in ismf.CLASSES}
    assert women["meningioma"] > 0.65 and max(v for c, v in women.items() if c != "meningioma") < 0.6
    months = {c: np.median([p.symptom_months for p in by_class[c]]) for c in ismf.CLASSES}
    assert months["metastasis"] < min(v for c, v in months.items() if c != "metastasis")
    assert all(p.sex in {"M", "F"} and 8 <= p.age <= 88 and p.symptom_months > 0 for p in patients)


def test_ismf_tumour_sites_follow_the_classes_with_overlap():
    big = {**ISMF_SMALL, "n_patients": {"internal": dict.fromkeys(ismf.CLASSES, 120)}}
    patients = ismf.plan_cohort(big)

    def site(p):
        (_, u, z), spine = p.blobs[0].centre, p.spine
        if u < -(spine.canal[0] + spine.epidural):
            return "vertebral"
        if p.blobs[0].in_sac:
            return "intradural extramedullary"
        return "intramedullary central" if abs(z) < 0.5 and abs(u - spine.cord_offset) < 0.5 else "intramedullary"

    share = {c: pd.Series([site(p) for p in patients if p.diagnosis == c]).value_counts(normalize=True)
             for c in ismf.CLASSES}
    assert share["metastasis"]["vertebral"] > 0.7
    assert share["schwannoma"]["intradural extramedullary"] > 0.7
    assert share["meningioma"]["intradural extramedullary"] > 0.7
    assert share["ependymoma"]["intramedullary central"] > 0.7
    assert share["astrocytoma"]["intramedullary"] > 0.7
    for c in ismf.CLASSES:  # atypical patients: no class is one site only
        assert 0.03 < 1 - share[c].max() < 0.25
    caps = {c: np.mean([any(b.signal == ismf._HAEMOSIDERIN for b in p.blobs) for p in patients if p.diagnosis == c])
            for c in ismf.CLASSES}
    assert caps["ependymoma"] > 0.4 and max(v for c, v in caps.items() if c != "ependymoma") < 0.2


def test_external_centres_scan_on_other_machines():
    big = {**ISMF_SMALL, "n_patients": {c: dict.fromkeys(ismf.CLASSES, 30) for c in ismf.COHORTS}}
    patients = ismf.plan_cohort(big)
    machines = {c: [p.scanner for p in patients if p.cohort == c] for c in ismf.COHORTS}
    for centre in ("external_centre2", "external_centre3"):
        own = [s for s in machines[centre] if s not in machines["internal"]]
        assert 0.3 < len(own) / len(machines[centre]) < 1.0  # shifted, yet partly shared
    noise = {c: np.mean([s.noise for s in machines[c]]) for c in ismf.COHORTS}
    assert noise["external_centre3"] > noise["internal"]  # older low-field machines


def test_canine_lesions_follow_the_pathologies():
    big = {**CANINE_SMALL, "n_patients": {"internal": dict.fromkeys(canine.CLASSES, 100)}}
    dogs = canine.plan_cohort(big)
    by_class = {c: [d for d in dogs if d.diagnosis == c] for c in canine.CLASSES}
    assert all(not d.blobs for d in by_class[canine.REFERENCE])
    age = {c: np.mean([d.age for d in by_class[c]]) for c in canine.CLASSES}
    assert age["IVDE"] + 2 < age["IVDP"] and age["IVDE"] + 2 < age["neoplasia"]
    weight = {c: np.median([d.weight_kg for d in by_class[c]]) for c in canine.CLASSES}
    assert weight["IVDE"] < 15 < weight["IVDP"]  # chondrodystrophic small breeds vs large breeds

    def t2(d):
        return d.blobs[0].signal[1]

    dark = {c: np.mean([t2(d) < 0.3 for d in by_class[c]]) for c in canine.PATHOLOGIES}
    assert dark["IVDE"] > 0.6 and dark["IVDP"] > 0.6 and dark["syringomyelia"] < 0.3 and dark["FCE_ANNPE"] < 0.3
    length = {c: np.median([d.blobs[0].half[0] / d.scale for d in by_class[c]]) for c in canine.PATHOLOGIES}
    assert length["syringomyelia"] > 2 * max(length["IVDE"], length["IVDP"], length["FCE_ANNPE"])
    lateral = {c: np.median([abs(d.blobs[0].centre[2]) / d.spine.canal[1] for d in by_class[c]])
               for c in canine.PATHOLOGIES}
    assert lateral["IVDE"] > 2 * lateral["IVDP"]
    degenerated = {c: np.mean([sum(d.spine.degenerated) for d in by_class[c]]) for c in canine.CLASSES}
    assert degenerated["IVDP"] > degenerated["unremarkable"]


def test_schema_snippets_match_the_modules():
    for section, module in (("ismf_demo", ismf), ("canine_demo", canine)):
        schema = SNIPPETS[section]
        jsonschema.Draft202012Validator.check_schema(schema)
        settings = defaults(section)
        jsonschema.validate(settings, schema)
        props = schema["properties"]
        assert props["n_patients"]["propertyNames"]["enum"] == [name for name, _ in module.LAYOUT.cohorts]
        assert props["n_patients"]["additionalProperties"]["propertyNames"]["enum"] == list(module.CLASSES)
        assert props["sequence_folders"]["propertyNames"]["enum"] == list(module.SEQUENCES)
        assert set(props) == {"seed", "n_patients", "slices_per_sequence", "sequence_folders", "sagittal_height",
                              "sagittal_width", "transverse_size"}
        assert all(prop.get("description") for prop in props.values())
        planned = module.planned_files(settings)
        patients = sum(sum(c.values()) for c in settings["n_patients"].values())
        assert 60 <= patients <= 120
        assert len({f.split("/")[0] for files in planned.values() for f in files}) == patients


def test_settings_are_checked():
    for module, settings in STUDIES.values():
        with pytest.raises(ValueError, match="seed"):
            module.planned_files({k: v for k, v in settings.items() if k != "seed"})
        with pytest.raises(ValueError, match="n_patients"):
            module.planned_files({**settings, "n_patients": {"internal": {"glioma": 2}}})
        with pytest.raises(ValueError, match="n_patients"):
            module.planned_files({**settings, "n_patients": {"elsewhere": {}}})
        with pytest.raises(ValueError, match="transverse_size"):
            module.planned_files({**settings, "transverse_size": [90, 80]})
        with pytest.raises(ValueError, match="sequence_folders"):
            module.planned_files({**settings, "sequence_folders": dict.fromkeys(module.SEQUENCES, "same")})
        for escape in ("../up", "a/b", ".."):  # a folder name cannot leave the patient's folder
            folders = {**settings["sequence_folders"], module.SEQUENCES[0]: escape}
            with pytest.raises(ValueError, match="plain folder names"):
                module.planned_files({**settings, "sequence_folders": folders})


def test_rerun_replaces_its_own_patients_only(tmp_path):
    images = tmp_path / "images"
    _generate(ismf, tmp_path, ISMF_SMALL)
    (images / "notes.txt").write_text("keep me")
    canine_cases = canine.generate_demo_cohort(images, tmp_path / "dogs.csv", CANINE_SMALL)
    fewer = {**ISMF_SMALL, "n_patients": {"internal": {"schwannoma": 1}}}
    ismf_cases = ismf.generate_demo_cohort(images, tmp_path / "cases.csv", fewer)
    assert {p.name for p in images.iterdir() if p.is_dir()} == {*ismf_cases["patient_id"], *canine_cases["patient_id"]}
    assert (images / "notes.txt").read_text() == "keep me"


def test_planning_order_does_not_reveal_the_class():
    big = {**ISMF_SMALL, "n_patients": {"internal": dict.fromkeys(ismf.CLASSES, 40)}}
    first = [d for _, _, _, d in cohort.patients(big, ismf.LAYOUT)][:40]
    assert max(first.count(c) for c in ismf.CLASSES) < 20
