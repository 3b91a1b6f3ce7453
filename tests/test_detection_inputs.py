"""Inputs of a detection study: the task from config, the cases table, each patient's
volume files (NIfTI or DICOM series), the readers' marks in LPS, RAS or voxel coordinates,
the settings of the brain-metastasis demo and its synthetic readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedx import config as configuration
from spinedx.config import ConfigError
from spinedx.demo.brain_mets_readers import read_case, reader_skills
from spinedx.demo.plan import demo_settings, planned_files
from spinedx.detection_task import ALL_SEQUENCES_INPUT, DetectionTask
from spinedx.errors import InputError
from spinedx.readers.detection_cases import input_files, locate_case, read_detection_cases, volume_sha256
from spinedx.readers.lesion_marks import marks_to_voxels, read_marks
from spinedx.readers.volume import Volume
from volume_factories import AFFINE, LESION, LPS_TO_RAS, PHANTOM, write_nifti, write_series

SEQUENCES = {"black_blood": ["BB"], "bright_blood": ["DB", "bright"]}


def detection_config(**detection):
    return configuration.resolve({"task": {"type": "detection"}, "sequences": SEQUENCES, "detection": detection})


# --- the task -----------------------------------------------------------------------------------


def test_task_inputs_models_and_pairs():
    task = DetectionTask.from_config(detection_config())
    assert task.inputs == {ALL_SEQUENCES_INPUT: ("black_blood", "bright_blood")}
    assert task.pairs == [("deepmedic", ALL_SEQUENCES_INPUT)]
    assert task.models["deepmedic"].patch == (9, 9, 9)
    unet = {"network": "unet", "patch": [16, 16, 16], "window": [32, 32, 32], "inputs": ["both"],
            "options": {"channels": [8, 16], "strides": [2]}}
    task = DetectionTask.from_config(detection_config(
        inputs={"both": ["black_blood", "bright_blood"], "db": ["bright_blood"]},
        models={"dm": {"network": "deepmedic", "patch": [9, 9, 9], "window": [27, 27, 27]}, "u": unet}))
    assert task.pairs == [("dm", "both"), ("dm", "db"), ("u", "both")]
    assert task.channels("db") == [1] and task.channels("both") == [0, 1]
    assert task.models["u"].as_dict()["patch"] == [16, 16, 16]


@pytest.mark.parametrize("detection, message", [
    ({"inputs": {"x": ["T1"]}}, "not in config `sequences`"),
    ({"models": {"m": {"network": "deepmedic", "patch": [9, 9, 9], "window": [9, 9, 9], "inputs": ["nope"]}}},
     "not in detection.inputs"),
    ({"inputs": {"m": ["black_blood"]},
      "models": {"m": {"network": "deepmedic", "patch": [9, 9, 9], "window": [9, 9, 9]}}}, "share the name"),
])
def test_bad_detection_settings_are_refused_when_the_config_is_read(detection, message):
    with pytest.raises(ConfigError, match=message):
        detection_config(**detection)


def test_a_sequence_folder_named_lesions_is_refused():
    with pytest.raises(ConfigError, match="lesion labels"):
        configuration.resolve({"sequences": {"a": ["Lesions"], "b": ["b"]}})


# --- cases table and files ------------------------------------------------------------------------


def write_case(root, patient, *, dicom_sequence=None):
    """The factories' phantom as both sequences (one as a DICOM series) and its lesion."""
    for sequence, folder in (("black_blood", "BB"), ("bright_blood", "db")):
        (root / patient / folder).mkdir(parents=True)
        if sequence == dicom_sequence:
            write_series(root / patient / folder, PHANTOM, AFFINE)
        else:
            write_nifti(root / patient / folder / "image.nii.gz", PHANTOM, AFFINE)
    write_nifti(root / patient / "lesions.nii.gz", LESION, AFFINE, dtype=np.uint8)


def test_cases_table_is_checked(tmp_path):
    path = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["A", "B"], "cohort": ["internal", "external"], "n_lesions": [2, 0],
                  "age": [50, 60]}).to_csv(path, index=False)
    cases = read_detection_cases(path)
    assert cases["n_lesions"].tolist() == [2, 0] and cases["age"].tolist() == [50, 60]
    assert set(read_detection_cases(path, all_external=True)["cohort"]) == {"external"}
    for frame, message in [
        ({"patient_id": ["A"]}, "missing column"),
        ({"patient_id": ["A", "A"], "cohort": ["internal", "external"]}, "more than once"),
        ({"patient_id": ["A"], "cohort": ["test"]}, "unknown cohort"),
        ({"patient_id": ["../A"], "cohort": ["internal"]}, "plain folder name"),
        ({"patient_id": ["A"], "cohort": ["internal"], "n_lesions": [1.5]}, "count"),
    ]:
        pd.DataFrame(frame).to_csv(path, index=False)
        with pytest.raises(InputError, match=message):
            read_detection_cases(path)


def test_locate_case_finds_nifti_and_dicom_volumes_case_insensitively(tmp_path):
    write_case(tmp_path, "P1", dicom_sequence="bright_blood")
    files = locate_case(tmp_path, "P1", SEQUENCES)
    assert files["black_blood"] == tmp_path / "P1/BB/image.nii.gz"
    assert files["bright_blood"] == tmp_path / "P1/db" and files["bright_blood"].is_dir()
    assert files["lesions"] == tmp_path / "P1/lesions.nii.gz"
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["P1"], "cohort": ["internal"]}).to_csv(cases, index=False)
    listed = input_files(tmp_path, SEQUENCES, cases)
    assert str(files["black_blood"]) in listed and str(files["lesions"]) in listed
    assert sum(p.startswith(str(files["bright_blood"])) for p in listed) == PHANTOM.shape[0]  # every slice
    assert input_files(tmp_path, SEQUENCES, tmp_path / "absent.csv") == []
    # an auditor's cases table needs no cohort column (audit mode: every case external)
    pd.DataFrame({"patient_id": ["P1"]}).to_csv(cases, index=False)
    assert input_files(tmp_path, SEQUENCES, cases, all_external=True) == listed
    with pytest.raises(InputError, match="cohort"):
        input_files(tmp_path, SEQUENCES, cases)
    # a DICOM series hashes by its files' names and contents, wherever it lies
    assert volume_sha256(files["bright_blood"]) == volume_sha256(files["bright_blood"])
    assert len(volume_sha256(files["black_blood"])) == 64


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "P1/lesions.nii.gz").unlink(), "no lesion labels"),
    (lambda root: __import__("shutil").rmtree(root / "P1/BB"), "no folder for sequence black_blood"),
    (lambda root: (root / "P1/BB/other.nii").write_bytes(b""), "exactly one volume"),
    (lambda root: (root / "P1/Bright").mkdir(), "all hold sequence bright_blood"),
    (lambda root: (root / "P1/lesions.nii").write_bytes(b""), "several lesion label files"),
])
def test_locate_case_errors_name_the_folder_and_the_fix(tmp_path, damage, message):
    write_case(tmp_path, "P1")
    damage(tmp_path)
    with pytest.raises(InputError, match=message):
        locate_case(tmp_path, "P1", SEQUENCES)
    with pytest.raises(InputError, match="no folder for patient"):
        locate_case(tmp_path, "P2", SEQUENCES)


# --- readers' marks -----------------------------------------------------------------------------


def test_marks_in_lps_ras_and_voxels_land_on_the_same_voxel(tmp_path):
    volume = Volume(PHANTOM, AFFINE)
    voxels = np.array([[1, 2, 3], [3, 4, 5], [0, 0, 0]], dtype=float)  # (z, y, x)
    lps = volume.voxel_to_world(voxels)
    ras = (np.c_[lps, np.ones(3)] @ LPS_TO_RAS.T)[:, :3]
    for coordinates, points in (("mm_lps", lps), ("mm_ras", ras), ("voxel", voxels[:, ::-1])):
        marks = pd.DataFrame({"reader": "R", "patient_id": "P", "x": points[:, 0], "y": points[:, 1],
                              "z": points[:, 2], "confidence": 3.0})
        np.testing.assert_allclose(marks_to_voxels(marks, volume, coordinates), voxels, atol=1e-9)
    with pytest.raises(InputError, match="coordinates"):
        marks_to_voxels(marks, volume, "mm")


def test_marks_table_is_checked(tmp_path):
    path = tmp_path / "marks.csv"
    pd.DataFrame({"reader": ["R1"], "patient_id": ["P"], "x": [1], "y": [2], "z": [3],
                  "confidence": [4]}).to_csv(path, index=False)
    assert read_marks(path).iloc[0].to_dict() == {"reader": "R1", "patient_id": "P", "x": 1.0, "y": 2.0,
                                                  "z": 3.0, "confidence": 4.0}
    pd.DataFrame({"reader": ["R1"], "patient_id": ["P"], "x": [1], "y": [2], "z": ["a"],
                  "confidence": [4]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="z on line"):
        read_marks(path)
    pd.DataFrame({"reader": ["R1"], "patient_id": ["P"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="missing column"):
        read_marks(path)


# --- the demo study -------------------------------------------------------------------------------


def test_demo_plan_dispatches_on_the_study():
    config = configuration.resolve({"demo_cohort": {"study": "brain_mets", "brain_mets": {"n_internal": 2,
                                                                                          "n_external": 1}},
                                    "sequences": {"black_blood": ["BB"], "bright_blood": ["DB"]}})
    files = planned_files(demo_settings(config))
    assert set(files) == {"BB", "DB", "lesions"}
    assert files["lesions"] == ["DEMO-I001/lesions.nii.gz", "DEMO-I002/lesions.nii.gz", "DEMO-E001/lesions.nii.gz"]
    config["sequences"] = {"black_blood": ["BB"], "bright_blood": ["other"]}
    with pytest.raises(ConfigError, match="does not map"):
        demo_settings(config)
    spine = planned_files(demo_settings(configuration.resolve({})))
    assert set(spine) == {"T1", "T2", "CE-T1"}


def test_synthetic_readers_find_large_lesions_and_mark_few_vessels():
    settings = configuration.resolve({})["demo_cohort"]["brain_mets_readers"]
    skills = reader_skills(settings)
    assert len(skills) == settings["n_readers"] and skills["fp_per_case"].between(0, 1).all()
    # a 30 x 30 x 30 head of 1 mm voxels: lesion 1 is large (found by everyone), lesion 2 one voxel
    affine = np.eye(4)
    labels = np.zeros((30, 30, 30), np.uint16)
    labels[5:15, 5:15, 5:15] = 1
    labels[25, 25, 25] = 2
    image = np.full(labels.shape, 100.0, np.float32)
    image[20, 5:25, 15] = 400.0  # a vessel
    marks = read_case("P", 0, Volume(labels, affine), Volume(image, affine), settings, skills)
    big = marks[(marks[["z", "y", "x"]].to_numpy() >= 4).all(axis=1) & (marks[["z", "y", "x"]].to_numpy() <= 15).all(axis=1)]
    assert sorted(big["reader"]) == sorted(skills["reader"])  # d = 12.4 mm: always found
    assert big["confidence"].between(1, 5).all()
    again = read_case("P", 0, Volume(labels, affine), Volume(image, affine), settings, skills)
    pd.testing.assert_frame_equal(marks, again)
