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

from conftest import REPO, assert_reader_model_row, ppca_distances, same_printed, snakemake
from spinedx.config import deep_merge
from volume_factories import IDENTIFYING, write_series

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.xdist_group(name="volume_run")]

CONFIG = REPO / ".test/vertebral_ct.yaml"
MODELS = ["2d_resnet10t", "2.5d_resnet10t", "3d_classifier"]


def study_run(tmp_path_factory, config: Path) -> tuple[Path, Path]:
    """The workflow on the tiny .test config plus ``config`` in a scratch folder: (workdir, results)."""
    workdir = tmp_path_factory.mktemp(config.stem)
    snakemake(workdir, "--cores", "2", extra_configs=[config])
    return workdir, workdir / ".test/results" / config.stem


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return study_run(tmp_path_factory, CONFIG)


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


def test_reader_study_and_the_issue15_analyses_agree_with_the_studys_own_tables(run):
    """Issue 15 for a two-class volume study: the demo reader study (2 senior + 2 junior
    simulated readers, 5-point scale, unaided and aided by the 2.5d model, the config's
    reader_study.aiding_model), MRMC, paired comparisons, calibration and decision curves,
    subgroups, participant flow, checklist; the model's numbers are the study's own (tables
    3 and 4) to the printed digit: the aiding model's in the reader study, the final
    system's in calibration and subgroups."""
    _, results = run
    tables = results / "tables"
    table3 = pd.read_csv(tables / "table3_case_level.csv")
    modes = pd.read_csv(tables / "table4_input_modes.csv")
    all_input = table3[table3.input == "ALL"].set_index("backbone").loc[MODELS]
    final = all_input.auc.idxmax()  # the best external ALL AUC, ties: the first model
    aiding = "2.5d_resnet10t"  # .test/vertebral_ct.yaml reader_study.aiding_model
    readers = pd.read_csv(results / "demo_reader_study/readers.csv")
    assert readers.groupby(["reader", "condition"]).size().eq(6).all() and readers.reader.nunique() == 4
    assert set(readers.rating) <= {1, 2, 3, 4, 5} and readers.rating.dtype.kind == "i"
    assert readers.drop_duplicates("reader").experience.value_counts().to_dict() == {"senior": 2, "junior": 2}

    metrics = pd.read_csv(tables / "reader_study_metrics.csv")
    model = metrics[metrics.reader == "model"].iloc[0]
    mode_row = modes[(modes.cohort == "external") & (modes.model == aiding)].iloc[0]
    for key in ("auc", "auc_lo", "auc_hi", "sensitivity", "specificity", "f1", "f1_lo", "f1_hi"):
        assert f"{model[key]:.3f}" == f"{mode_row[key]:.3f}", key
        assert model[key] == pytest.approx(mode_row[key], abs=1e-12), key
    assert model.auc == pytest.approx(all_input.loc[aiding, "auc"], abs=1e-12)
    singles = metrics[~metrics.reader.isin(["model", "mean"])]
    assert len(singles) == 4 * 2 and (singles.f1_lo <= singles.f1).all() and (singles.f1 <= singles.f1_hi).all()
    groups = metrics[metrics.reader == "mean"].set_index(["experience", "condition"])
    assert sorted(groups.index) == sorted((g, c) for g in ("all", "junior", "senior") for c in ("unaided", "aided"))
    for (group, condition), row in groups.iterrows():
        members = singles[(singles.condition == condition) & ((singles.experience == group) | (group == "all"))]
        assert row.n_readers == len(members) and row.auc == pytest.approx(members.auc.mean(), abs=1e-12)
        assert row.f1 == pytest.approx(members.f1.mean(), abs=1e-12)
    mrmc = pd.read_csv(tables / "reader_study_mrmc.csv")
    assert set(mrmc.contrast) == {"conditions", "conditions, junior readers", "conditions, senior readers",
                                  "model vs unaided", "model vs aided"}
    rrrc = mrmc[(mrmc.analysis == "RRRC") & (mrmc.row_type == "modality")]
    for contrast, group in (("conditions", "all"), ("conditions, senior readers", "senior")):
        for row in rrrc[rrrc.contrast == contrast].itertuples():
            assert row.estimate == pytest.approx(groups.loc[(group, row.modality), "auc"], abs=1e-12)
            assert row.ci_lo == pytest.approx(groups.loc[(group, row.modality), "auc_lo"], abs=1e-12)
    model_vs = mrmc[(mrmc.contrast == "model vs unaided") & (mrmc.row_type == "modality") & (mrmc.modality == "model")]
    assert (model_vs.estimate - model.auc).abs().max() < 1e-12

    comparisons = pd.read_csv(tables / "paired_comparisons.csv")
    assert set(comparisons.kind) == {"backbones"} and len(comparisons) == 2 * 3 * 3
    delong = pd.read_csv(tables / "table4_input_modes_delong.csv")
    for row in comparisons[(comparisons.metric == "auc") & (comparisons.cohort == "external")].itertuples():
        same = delong[(delong.cohort == "external") & (delong.metric == "auc")
                      & (delong.model_a == row.model_a.split("/")[0]) & (delong.model_b == row.model_b.split("/")[0])]
        assert same.p.iloc[0] == pytest.approx(row.p, rel=1e-9), row.comparison  # the same DeLong test
    calibration = pd.read_csv(tables / "calibration.csv")
    assert set(calibration.backbone) == set(MODELS) and calibration.final_system.sum() == 2
    assert set(calibration.input) == {"ALL"} and len(calibration) == 3 * 2  # CT is ALL again: not repeated
    assert set(calibration[calibration.final_system].backbone) == {final}
    assert (calibration.n[calibration.cohort == "external"] == 6).all()
    curve_models = set(pd.read_csv(tables / "decision_curve.csv").model)
    assert {f"{m}/ALL" for m in MODELS} | {"treat all", "treat none"} <= curve_models
    subgroups = pd.read_csv(tables / "subgroups.csv")
    cases = pd.read_csv(results / "demo_cohort/cases.csv")
    assert set(subgroups.variable) == {"all cases", "sex", "vendor"} and set(subgroups.backbone) == {final}
    assert set(subgroups[subgroups.variable == "vendor"].level) == set(cases[cases.cohort == "external"].vendor)
    assert subgroups.auc.iloc[0] == pytest.approx(all_input.loc[final, "auc"], abs=1e-12)

    flow = pd.read_csv(tables / "participant_flow.csv").set_index(["step", "cohort", "group"])
    assert flow.loc[("listed in the cases table", "internal", "all"), "patients"] == 12
    assert flow.loc[("with annotated images", "external", "all")].tolist() == [6, 6]  # one volume per case
    assert flow.loc[("analysed", "internal", "ALL")].tolist() == [12, 12]  # volumes, not crops
    assert flow.loc[("reader study", "external", "read by 4 readers"), "patients"] == 6
    assert len(pd.read_csv(results / "annotations/excluded/CT.csv")) == 0  # nothing left out of the demo
    checklist = pd.read_csv(tables / "reporting_checklist.csv").set_index(["guideline", "item"])
    assert checklist.loc[("STARD 2015", "19"), "status"] == "answered"
    assert "tables/table4_input_modes.csv" in checklist.loc[("STARD 2015", "14"), "files"]
    assert "figures/reader_study_roc.png" in checklist.loc[("STARD 2015", "13a"), "files"]
    for name in ("reader_study_roc", "calibration_curve", "decision_curve", "subgroups_forest", "participant_flow"):
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        assert min(Image.open(results / f"figures/{name}.png").size) > 300, name


def _features_25d(checkpoint: dict, crops: np.ndarray) -> np.ndarray:
    """Penultimate features of a 2.5d timm model computed apart from spinedx.models.features:
    normalised crops, the backbone's feature map, global average pooling."""
    from spinedx.models.checkpoints import model_from_checkpoint

    model = model_from_checkpoint(checkpoint, torch.device("cpu"))
    with torch.no_grad():
        inputs = (torch.from_numpy(crops) - checkpoint["mean"]) / checkpoint["std"]
        return model.forward_features(inputs).mean(dim=(2, 3)).double().numpy()


def _internal_crops(results: Path, mode: str, cohort: str = "internal") -> tuple[pd.DataFrame, np.ndarray]:
    table = pd.read_parquet(results / f"preprocessing/CT/{mode}.parquet")
    table = table[table.cohort == cohort].reset_index(drop=True)
    with np.load(results / f"preprocessing/CT/{mode}.npz") as cache:
        position = pd.Index(cache["image_id"]).get_indexer(table.image_id)
        return table, cache["images"][position]


def test_the_bundle_carries_every_models_shift_reference(run):
    """Per model (2d, 2.5d, 3d) the training cohort's shift reference, hashed with the models;
    the 2.5d model's held-out distances of fold 0 and one crop statistic recomputed apart
    (features by pooling the timm feature map, scipy's Mahalanobis distance under the PPCA
    covariance from numpy's eigh; numpy statistics of the cached crops)."""
    from spinedx.io import sha256_file
    from spinedx.stats.shift import crop_statistic_names

    _, results = run
    bundle = results / "bundle"
    sums = dict(reversed(line.split("  ")) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["distribution_shift"]["references"] == [f"shift_reference/{m}/CT.npz" for m in MODELS]
    names = crop_statistic_names(["bone", "spine_soft_tissue"])
    for model in MODELS:
        name = f"shift_reference/{model}/CT.npz"
        assert sums[name] == sha256_file(bundle / name) == sha256_file(results / name)
        with np.load(bundle / name, allow_pickle=False) as reference:
            assert list(reference["statistics_names"]) == names and list(reference["folds"]) == [0, 1, 2]
            assert reference["statistics_training"].shape == ((12 if model.startswith("3d") else 36), len(names))
    table, crops = _internal_crops(results, "2.5d")
    folds = pd.read_csv(results / "splits/folds.tsv", sep="\t", dtype={"patient_id": str})
    folds = folds.set_index("patient_id")["fold"]
    held = (table.patient_id.map(folds) == 0).to_numpy()
    checkpoint = torch.load(bundle / "models/2.5d_resnet10t/CT/fold0.pt", weights_only=True)
    features = _features_25d(checkpoint, crops)
    with np.load(bundle / "shift_reference/2.5d_resnet10t/CT.npz", allow_pickle=False) as reference:
        assert reference["fold0_components"].shape == (10, 512)  # config default 10 of 24 training crops
        expected = ppca_distances(features[~held], features[held], 10)
        assert reference["fold0_held_out"] == pytest.approx(expected, rel=1e-6)
        bone_mean = reference["statistics_training"][:, names.index("bone_mean")]
    assert bone_mean == pytest.approx(crops[:, 0:3].astype(np.float64).mean(axis=(1, 2, 3)), rel=1e-12)


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


def test_audit_scores_the_shift_of_every_model_before_the_tables(run, audit_run):
    """The audited cohort (the study's external cohort as DICOM) against the bundle's
    references: a table per crop and model, a summary per model, written before tables 3
    and 4; one crop's 2.5d feature score recomputed apart (median over the fold models of
    distance / the 0.95 quantile of the held-out distances)."""
    _, results = run
    _, audited = audit_run
    summary = pd.read_csv(audited / "tables/distribution_shift_summary.csv")
    assert list(summary.backbone) == MODELS and (summary.patients == 6).all()
    assert list(summary.images) == [18, 18, 6]  # 3 central slices per case; one sub-volume
    scored = pd.read_csv(audited / "tables/distribution_shift.csv")
    assert {"bone_p95", "spacing_z", "lesion_x_mm"} <= set(scored.columns)
    for table in ("table3_case_level", "table4_input_modes"):
        assert (audited / "tables/distribution_shift_summary.csv").stat().st_mtime <= \
            (audited / f"tables/{table}.csv").stat().st_mtime, table
    assert (audited / "figures/distribution_shift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    internal, internal_crops = _internal_crops(results, "2.5d")
    external, external_crops = _internal_crops(audited, "2.5d", cohort="external")
    folds = pd.read_csv(results / "splits/folds.tsv", sep="\t", dtype={"patient_id": str})
    folds = folds.set_index("patient_id")["fold"]
    ratios = []
    for fold in range(3):
        checkpoint = torch.load(results / f"bundle/models/2.5d_resnet10t/CT/fold{fold}.pt", weights_only=True)
        training = _features_25d(checkpoint, internal_crops)
        own = (internal.patient_id.map(folds) == fold).to_numpy()
        held_out = ppca_distances(training[~own], training[own], 10)
        ratios.append(ppca_distances(training[~own], _features_25d(checkpoint, external_crops[:1]), 10)[0]
                      / np.quantile(held_out, 0.95))
    row = scored[(scored.backbone == "2.5d_resnet10t") & (scored.image_id == external.image_id[0])].iloc[0]
    assert row.feature_score == pytest.approx(np.median(ratios), rel=1e-6)
    assert row.feature_flag == (np.median(ratios) > 1)


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


# --- two classes, a volume study NOT of the reference shape (r15volshape) -----------------
# .test/vertebral_ct_holdout.yaml: the vertebral CT generator (it names one external cohort),
# hold-out 3:1:1 with two repeats, input modes 2d and 2.5d. It takes the r15bin route: the
# N-class tables beside the binary ones and every issue-15 analysis with two-class statistics.

HOLDOUT_CONFIG = REPO / ".test/vertebral_ct_holdout.yaml"
HOLDOUT_MODELS = ["2d_resnet10t", "2.5d_resnet10t"]


def test_volume_holdout_plans_every_issue15_analysis(tmp_path):
    """The dry run: the N-class tables and figures beside the binary and input-mode ones,
    every issue-15 rule with the two-class reader study and the N-class calibration and
    comparisons commands (main before r15volshape planned none of these rules)."""
    import re

    done = snakemake(tmp_path, "-n", "-p", "--cores", "2", extra_configs=[HOLDOUT_CONFIG])
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.MULTILINE))
    for rule in ("evaluation", "mode_comparison", "multiclass_evaluation", "multiclass_figures", "shift_reference",
                 "participant_flow", "subgroups", "comparisons", "multiclass_calibration", "demo_reader_study",
                 "reader_study", "reporting_checklist"):
        assert jobs.get(rule) == "1", rule
    assert not {"multiclass_reader_study", "calibration", "meta_analysis", "gradcam"} & set(jobs)
    assert "python -m spinedx multiclass_comparisons" in done.stdout


@pytest.fixture(scope="module")
def holdout_run(tmp_path_factory):
    return study_run(tmp_path_factory, HOLDOUT_CONFIG)


def test_volume_holdout_gets_every_issue15_analysis(holdout_run):
    """Every analysis of a two-class study of another shape, for volumes: flow, subgroups,
    comparisons, positive-class calibration and decision curves, the two-class reader study
    (AUC of the ratings), each model's shift reference in the bundle, the checklist."""
    _, results = holdout_run
    for name in ("multiclass_overall", "multiclass_per_class", "multiclass_holdout_repeats", "table3_case_level",
                 "table4_input_modes", "participant_flow", "subgroups", "paired_comparisons", "calibration",
                 "calibration_curve", "decision_curve", "reader_study_metrics", "reader_study_mrmc",
                 "reader_study_decisions", "reporting_checklist"):
        assert len(pd.read_csv(results / f"tables/{name}.csv")), name
    for name in ("participant_flow", "subgroups_forest", "calibration_curve", "decision_curve", "reader_study_roc",
                 "fig_multiclass_roc", "fig_multiclass_confusion", "fig_multiclass_f1"):
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        assert min(Image.open(results / f"figures/{name}.png").size) > 300, name
    for name in ("reader_study_gain", "reader_study_per_class"):  # the N-class reader study's
        assert not (results / f"tables/{name}.csv").exists()
    sums = (results / "bundle/SHA256SUMS").read_text()
    for model in HOLDOUT_MODELS:  # from the crops each model reads; hold-out repeats' held-out crops
        assert f"shift_reference/{model}/CT.npz" in sums, model
        with np.load(results / f"bundle/shift_reference/{model}/CT.npz", allow_pickle=False) as reference:
            assert reference["folds"].tolist() == [0, 1] and str(reference["backbone"]) == model
    checklist = pd.read_csv(results / "tables/reporting_checklist.csv").set_index(["guideline", "item"])
    assert "tables/reader_study_mrmc.csv" in checklist.loc[("STARD 2015", "13a"), "files"]
    assert "tables/paired_comparisons.csv" in checklist.loc[("STARD 2015", "14"), "files"]
    assert checklist.loc[("STARD 2015", "19"), "status"] == "answered"
    flow = pd.read_csv(results / "tables/participant_flow.csv")
    analysed = flow[(flow.step == "analysed") & (flow.group == "ALL")].set_index("cohort").patients
    assert analysed.to_dict() == {"internal": 4, "external": 6}  # internal: the two repeats' internal tests
    readers = pd.read_csv(results / "demo_reader_study/readers.csv")  # every external case
    cases = pd.read_csv(results / "demo_cohort/cases.csv")
    assert set(readers.patient_id) == set(cases[cases.cohort == "external"].patient_id)


def test_volume_holdout_tables_repeat_the_studys_own_multiclass_tables(holdout_run):
    """Every number the N-class evaluation also reports equals it to the printed digit:
    comparisons (each model's AUC, sensitivity, specificity of the positive class on the
    external cohort; DeLong p = table 4's), the reader study's model row (the aiding 2.5d
    model), the subgroups' all-cases row; calibration's Brier by scikit-learn."""
    from sklearn.metrics import brier_score_loss

    _, results = holdout_run
    tables = results / "tables"
    per_class = pd.read_csv(tables / "multiclass_per_class.csv")
    own = per_class[(per_class.level == "case") & (per_class["class"] == "malignant") & (per_class.model == "ensemble")
                    & (per_class.input == "ALL")].set_index(["backbone", "prediction_set"])
    overall = pd.read_csv(tables / "multiclass_overall.csv")
    own_overall = overall[(overall.level == "case") & (overall.model == "ensemble")
                          & (overall.input == "ALL")].set_index(["backbone", "prediction_set"])

    same = same_printed
    comparisons = pd.read_csv(tables / "paired_comparisons.csv")
    assert set(comparisons.metric) == {"auc", "sensitivity", "specificity"} and set(comparisons["class"]) == {"malignant"}
    assert list(comparisons.test_set.unique()) == ["internal_test", "external"]
    external = comparisons[comparisons.test_set == "external"]
    assert len(external) == 3 and set(external.comparison) == {"2d_resnet10t/ALL vs 2.5d_resnet10t/ALL"}
    for row in external.itertuples():
        for name, estimate in ((row.model_a, row.estimate_a), (row.model_b, row.estimate_b)):
            same(estimate, own.loc[(name.split("/")[0], "external"), row.metric], (name, row.metric))
    delong = pd.read_csv(tables / "table4_input_modes_delong.csv")
    delong = delong[(delong.metric == "auc") & (delong.model_a == "2d_resnet10t") & (delong.model_b == "2.5d_resnet10t")]
    assert external[external.metric == "auc"].p.iloc[0] == pytest.approx(delong.p.iloc[0], rel=1e-9)
    # the reader study's model row: the aiding model (reader_study.aiding_model) on every external case
    assert_reader_model_row(results, own.loc[("2.5d_resnet10t", "external")],
                            own_overall.loc[("2.5d_resnet10t", "external")], 6)
    # subgroups and calibration: the final system (table 3's best external ALL AUC, ties: the first model)
    table3 = pd.read_csv(tables / "table3_case_level.csv")
    final = table3[table3.input == "ALL"].set_index("backbone").loc[HOLDOUT_MODELS].auc.idxmax()
    subgroups = pd.read_csv(tables / "subgroups.csv")
    assert set(subgroups.cohort) == {"external (ensemble)"} and set(subgroups.backbone) == {final}
    assert set(subgroups.variable) == {"all cases", "sex", "vendor"}
    row, mine = subgroups.set_index(["variable", "level"]).loc[("all cases", "all cases")], own.loc[(final, "external")]
    assert row.n_patients == own_overall.loc[(final, "external"), "n"] == 6
    for column in ("sensitivity", "sensitivity_lo", "sensitivity_hi", "specificity", "specificity_lo",
                   "specificity_hi", "auc"):
        same(row[column], mine[column], column)
    same(row.accuracy, own_overall.loc[(final, "external"), "accuracy"], "accuracy")
    calibration = pd.read_csv(tables / "calibration.csv").set_index("test_set")
    assert list(calibration.index) == ["internal_test", "external"] and set(calibration["class"]) == {"malignant"}
    case_level = pd.read_parquet(results / f"case_level/{calibration.backbone.iloc[0]}.parquet")
    rows = case_level[(case_level.input == "ALL") & (case_level.model == "ensemble")]
    assert calibration.loc["external", "n"] == len(rows) == 6
    same(calibration.loc["external", "brier"], brier_score_loss(rows.label, rows.prob_malignant), "Brier")
    curve = pd.read_csv(tables / "decision_curve.csv")
    assert set(curve["class"]) == {"malignant"} and set(curve.test_set) == {"external"}
    assert {f"{m}/ALL" for m in HOLDOUT_MODELS} <= set(curve.model)
