"""The vertebral CT study end to end on the tiny .test/vertebral_ct.yaml (volumes, input modes
2d, 2.5d and 3d), and its audit on a DICOM-series copy of the external cohort."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, snakemake
from spinedx.config import deep_merge
from volume_factories import IDENTIFYING, write_series

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.xdist_group(name="volume_run")]

CONFIG = REPO / ".test/vertebral_ct.yaml"
MODELS = ["2d_resnet10t", "2.5d_resnet10t", "3d_classifier"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vertebral_ct")
    snakemake(workdir, "--cores", "2", extra_configs=[CONFIG])
    return workdir, workdir / ".test/results/vertebral_ct"


def test_every_mode_is_trained_scored_and_compared_on_the_same_cases(run):
    _, results = run
    table3 = pd.read_csv(results / "tables/table3_case_level.csv")
    assert list(table3.backbone.unique()) == MODELS and set(table3.input) == {"CT", "ALL"}
    assert (table3.n_pos == 3).all() and (table3.n_neg == 3).all()
    modes = pd.read_csv(results / "tables/table4_input_modes.csv")
    assert list(modes.model) == MODELS * 2 and list(modes.cohort) == ["external"] * 3 + ["internal"] * 3
    assert list(modes["mode"]) == ["2d", "2.5d", "3d"] * 2
    assert (modes.n_cases == [6] * 3 + [12] * 3).all()
    external = table3[table3.input == "CT"].set_index("backbone")
    for row in modes[modes.cohort == "external"].itertuples():  # the same cases, the same AUC
        assert row.auc == pytest.approx(external.loc[row.model, "auc"], abs=1e-12)
        assert row.auc_lo <= row.auc <= row.auc_hi and row.f1_lo <= row.f1 <= row.f1_hi
    tests = pd.read_csv(results / "tables/table4_input_modes_delong.csv")
    assert len(tests) == 2 * 3 * 3 and set(tests.metric) == {"auc", "sensitivity", "specificity"}
    assert tests[tests.metric == "auc"].p.between(0, 1).all()
    # Crops: at most 3 central slices per case (2d, 2.5d), one sub-volume per case (3d).
    for mode, channels in (("2d", 2), ("2.5d", 6), ("3d", 2)):
        crops = pd.read_parquet(results / f"preprocessing/CT/{mode}.parquet")
        per_case = crops.groupby("case_id").size()
        assert len(per_case) == 18 and (per_case == (1 if mode == "3d" else 3)).all()
        with np.load(results / f"preprocessing/CT/{mode}.npz") as cache:
            assert cache["images"].shape[1:] == ((channels, 20, 20, 20) if mode == "3d" else (channels, 20, 20))


def test_every_figure_is_drawn(run):
    _, results = run
    names = ["fig3_roc_backbones", "fig6_final_system", "fig8_roc_input_modes",
             *(f"training_curves_{m}_CT" for m in MODELS), *(f"fig7_gradcam_{m}_CT" for m in MODELS)]
    for name in names:
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        assert min(Image.open(results / f"figures/{name}.png").size) > 300, name
    for model in MODELS:
        summary = pd.read_csv(results / f"gradcam/{model}/CT.csv")
        assert summary.box_fraction_of_view.between(0, 1).all() and len(summary) == (6 if model.startswith("3d") else 18)


def test_model_card_and_checkpoints_describe_the_input_mode_and_recipe(run):
    _, results = run
    card = json.loads((results / "bundle/model_card.json").read_text())
    assert card["backbones"] == MODELS and len(card["models"]) == 9
    assert card["input"]["input_modes"] == dict(zip(MODELS, ["2d", "2.5d", "3d"]))
    assert card["input"]["intensity_recipe"] == {"kind": "ct_window", "windows": [
        {"name": "bone", "level": 400.0, "width": 1800.0}, {"name": "spine_soft_tissue", "level": 50.0, "width": 250.0}]}
    assert card["config"]["input_modes"] == ["2d", "2.5d", "3d"] and card["config"]["data_format"] == "volume"
    assert card["config"]["backbones"] == ["resnet10t"] and card["config"]["networks_3d"] == ["classifier"]
    text = (results / "bundle/model_card.md").read_text()
    assert "bone level 400 / width 1800 HU" in text and "2.5d_resnet10t (2.5d)" in text
    checkpoint = torch.load(results / "models/2.5d_resnet10t/CT/fold1/best.pt", weights_only=True)
    assert (checkpoint["mode"], checkpoint["network"], checkpoint["in_chans"]) == ("2.5d", "resnet10t", 6)
    assert checkpoint["intensity_recipe"] == card["input"]["intensity_recipe"]


def test_nothing_to_do_on_a_second_run(run):
    workdir, _ = run
    output = snakemake(workdir, "-n", "--cores", "2", extra_configs=[CONFIG]).stdout
    assert "Nothing to be done" in output or "nothing to be done" in output.lower(), output[-2000:]


def dicom_copy(results: Path, patients, target: Path) -> None:
    """The patients' CT volumes as DICOM series (``image/``, one slice per file, HU stored as
    HU + 1024) beside their mask, identifying header values written into every slice."""
    cases = pd.read_csv(results / "demo_cohort/cases.csv", dtype=str)
    for patient in patients:
        source = results / "demo_cohort/images" / patient / "CT"
        folder = target / "images" / patient / "CT"
        image = nib.load(source / "image.nii.gz")
        data = np.asarray(image.dataobj).astype(np.float32)  # int16 HU, file axes (i, j, k)
        affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
        # Slices along k: native[s, r, c] = data[c, r, s].
        index_map = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
        write_series(folder / "image", data.transpose(2, 1, 0), affine_lps @ index_map, extra=IDENTIFYING)
        shutil.copyfile(source / "mask.nii.gz", folder / "mask.nii.gz")
    chosen = cases[cases.patient_id.isin(patients)]
    chosen.drop(columns="cohort").to_csv(target / "cases.csv", index=False)


@pytest.fixture(scope="module")
def audit_run(run, tmp_path_factory):
    _, results = run
    auditor = tmp_path_factory.mktemp("auditor")
    cases = pd.read_csv(results / "demo_cohort/cases.csv", dtype=str)
    dicom_copy(results, cases.loc[cases.cohort == "external", "patient_id"], auditor / "cohort")
    settings = deep_merge(yaml.safe_load((REPO / ".test/config.yaml").read_text()), yaml.safe_load(CONFIG.read_text()))
    (auditor / "audit.yaml").write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "spinedx", "audit", "--bundle", str(results / "bundle"),
               "--images-dir", "cohort/images", "--cases", "cohort/cases.csv", "--results-dir", "audit",
               "--config", "audit.yaml", "--cores", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=auditor,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return auditor, auditor / "audit"


def test_audit_of_a_dicom_series_cohort_reproduces_the_external_tables(run, audit_run):
    _, results = run
    _, audited = audit_run
    images = pd.read_parquet(audited / "annotations/images.parquet")
    assert (images.image_format == "dicom_series").all() and (images.cohort == "external").all()
    study_images = pd.read_parquet(results / "annotations/images.parquet").set_index("patient_id")
    # Same voxels read from DICOM (HU through the stored rescale) as from the NIfTI files.
    assert (images.set_index("patient_id").voxels_sha256 == study_images.loc[images.patient_id, "voxels_sha256"]).all()
    for table in ("table2_image_level", "table3_case_level", "fold_2x2"):
        assert (audited / f"tables/{table}.csv").read_bytes() == (results / f"tables/{table}.csv").read_bytes(), table
    modes = pd.read_csv(results / "tables/table4_input_modes.csv")
    pd.testing.assert_frame_equal(pd.read_csv(audited / "tables/table4_input_modes.csv"),
                                  modes[modes.cohort == "external"].reset_index(drop=True))
    assert not (audited / "models").exists() and not (audited / "splits").exists()


def test_no_identifying_dicom_header_value_reaches_any_output_or_log(audit_run):
    auditor, audited = audit_run
    files = [p for p in [*audited.rglob("*"), *(auditor / ".snakemake").rglob("*")] if p.is_file()]
    assert len(files) > 50
    for path in files:
        content = path.read_bytes()
        for key, value in IDENTIFYING.items():
            for form in {value, value.replace("^", " ")}:
                assert form.encode() not in content, f"{key} found in {path}"


def test_a_training_volume_stored_as_dicom_is_no_external_validation(run, tmp_path):
    """The bundle knows its training volumes by their voxels: the same CT as a DICOM
    series is refused, although its files differ."""
    from spinedx import config as configuration
    from spinedx.errors import InputError
    from spinedx.stages import audit, volume_annotations

    _, results = run
    cases = pd.read_csv(results / "demo_cohort/cases.csv", dtype=str)
    internal = cases.loc[cases.cohort == "internal", "patient_id"].iloc[:1]
    dicom_copy(results, internal, tmp_path)
    config = configuration.resolve({"data": {"format": "volume"}, "classes": ["osteoporotic", "malignant"],
                                    "sequences": {"CT": ["CT"]}, "audit": {"bundle": str(results / "bundle")}})
    volume_annotations.main_stage(config, tmp_path / "images", tmp_path / "cases.csv", "CT", tmp_path / "images.parquet")
    with pytest.raises(InputError, match="training images of the bundle"):
        audit.check_cohort(results / "bundle", tmp_path / "images.parquet")
