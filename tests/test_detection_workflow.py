"""The detection study (issue 16) end to end on the tiny .test/brain_mets.yaml config:
built-in brain-metastasis phantoms, two synthetic readers, a tiny DeepMedic on both
sequences and on bright blood alone, a tiny MONAI U-Net on both, 2 folds, 2 epochs.
One run (module fixture) serves every read-only check below."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, snakemake, spinedx_audit
from spinedx import paths
from spinedx.imaging.detection_cache import read_maps
from spinedx.readers.bundle import verify

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.xdist_group(name="detection_run")]

PAIRS = [("deepmedic", "both"), ("deepmedic", "bright_blood"), ("unet", "both")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(workdir, results dir) of one local run of the tiny detection config."""
    workdir = tmp_path_factory.mktemp("detection_workflow")
    snakemake(workdir, "--cores", "2", extra_configs=[REPO / ".test/brain_mets.yaml"])
    return workdir, workdir / ".test/results/brain_mets"


def test_tables_cover_every_model_and_input_with_plausible_numbers(run):
    _, results = run
    summary = pd.read_csv(results / f"tables/{paths.DETECTION_SUMMARY}.csv")
    assert [tuple(pair) for pair in summary[["model", "input"]].drop_duplicates().to_numpy()] == PAIRS
    cases = pd.read_parquet(results / "detection/cases.parquet")
    assert set(cases.cohort) == {"internal", "external"} and len(cases) == 9
    for name in paths.DETECTION_TABLES:
        table = pd.read_csv(results / f"tables/{name}.csv")
        assert len(table) > 0, name
    froc = pd.read_csv(results / f"tables/{paths.DETECTION_FROC}.csv")
    assert froc.filter(like="sensitivity").stack().between(0, 1).all()
    readers = pd.read_csv(results / f"tables/{paths.DETECTION_READERS}.csv")
    assert readers.reader.nunique() == 2 and (readers.n_cases == 3).all()  # every external case read
    assert readers.reader_sensitivity.between(0, 1).all()
    cohort = pd.read_csv(results / f"tables/{paths.DETECTION_COHORT}.csv").set_index("cohort")
    lesions = summary.groupby("cohort").n_lesions.unique()
    assert all(list(lesions[c]) == [cohort.lesions[c]] for c in ("internal", "external"))


def test_flow_subgroups_and_checklist_follow_the_detection_records(run):
    """Issue 15 for detection (read-only): the flow counts patients, volumes and lesions of
    the detection records; the subgroups' all-cases and size-band rows are the detection
    evaluation's rows of the chosen system; the checklist maps the detection tables."""
    _, results = run
    cases = pd.read_parquet(results / "detection/cases.parquet")
    lesions = pd.read_parquet(results / "detection/lesions.parquet")
    flow = pd.read_csv(results / "tables/participant_flow.csv").set_index(["step", "cohort", "group"])
    folds = pd.read_csv(results / "splits/folds.tsv", sep="\t")
    for cohort, rows in cases.groupby("cohort"):
        assert tuple(flow.loc[("with annotated images", cohort, "all"), ["patients", "images", "lesions"]]) == (
            len(rows), 2 * len(rows), (lesions.cohort == cohort).sum())
        assert flow.loc[("analysed", cohort, "bright_blood"), "images"] == len(rows)
    for fold, members in folds.groupby("fold"):
        assert flow.loc[("split", "internal", f"fold {fold}"), "lesions"] == lesions.patient_id.isin(
            members.patient_id).sum()
    assert flow.loc[("reader study", "external", "read by 2 readers"), "patients"] == (cases.cohort == "external").sum()
    table = pd.read_csv(results / "tables/subgroups.csv")
    summary = pd.read_csv(results / f"tables/{paths.DETECTION_SUMMARY}.csv")
    internal = summary[summary.cohort == "internal"]
    best = internal.iloc[int(np.argmax(internal.cpm.to_numpy()))]  # first of the best, in the study's order
    assert (table.model.iloc[0], table.input.iloc[0]) == (best.model, best.input)
    own = summary[(summary.model == best.model) & (summary.input == best.input) & (summary.cohort == "external")].iloc[0]
    everyone = table[table.variable == "all cases"].iloc[0]
    for column in ("n_lesions", "n_detected", "lesion_sensitivity", "lesion_sensitivity_lo", "lesion_sensitivity_hi",
                   "fp_per_case", "fp_per_case_lo", "fp_per_case_hi"):
        assert f"{everyone[column]:.4f}" == f"{own[column]:.4f}", column
    bands = pd.read_csv(results / f"tables/{paths.DETECTION_SIZE_BANDS}.csv")
    bands = bands[(bands.model == best.model) & (bands.input == best.input) & (bands.cohort == "external")]
    by_size = table[table.variable == "lesion size"]
    assert list(by_size.level) == list(bands.band) and list(by_size.n_lesions) == list(bands.n_lesions)
    assert set(table.variable) == {"all cases", "lesion size", "sex", "age_band", "vendor"}
    checklist = pd.read_csv(results / "tables/reporting_checklist.csv").fillna("").set_index(["guideline", "item"])
    assert "tables/participant_flow.csv" in checklist.loc[("STARD 2015", "19"), "files"]
    assert "tables/detection_readers.csv" in checklist.loc[("STARD 2015", "13a"), "files"]
    assert "tables/subgroups.csv" in checklist.loc[("STARD 2015", "17"), "files"]
    for name in ("participant_flow", "subgroups_forest"):
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (results / f"figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundle_records_what_audit_mode_reapplies(run):
    _, results = run
    card = verify(results / "bundle")  # every file against SHA256SUMS
    assert len(card["models"]) == len(PAIRS) * 2
    recipe = card["detection"]["intensity_recipe"]
    assert (recipe["kind"], recipe["low"], recipe["high"]) == ("percentile", 0.5, 99.9)
    assert {(p["model"], p["input"]) for p in card["detection"]["operating_points"]} == set(PAIRS)


def test_every_figure_is_a_pdf_and_png(run):
    _, results = run
    names = [paths.DETECTION_FROC_FIGURE,
             *(paths.detection_examples_figure(m, i) for m, i in PAIRS),
             *(paths.detection_curves_figure(m, i) for m, i in PAIRS)]
    for name in names:
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        assert (results / f"figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_maps_are_probabilities_on_each_case_grid_and_checkpoints_load_safely(run):
    _, results = run
    for model, detection_input in PAIRS:
        for fold in (0, 1):
            checkpoint = results / f"detection/models/{model}/{detection_input}/fold{fold}/{paths.CHECKPOINT_FILE}"
            state = torch.load(checkpoint, weights_only=True, map_location="cpu")
            assert state, checkpoint
    meta, maps = read_maps(results / "detection/maps/deepmedic/both.npz")
    cases = pd.read_parquet(results / "detection/cases.parquet")
    assert sorted(name for name in maps.files if name != "meta") == sorted(cases.patient_id)
    for patient in cases.patient_id:
        assert maps[patient].ndim == 3 and 0 <= maps[patient].min() and maps[patient].max() <= 1


def test_a_second_run_has_nothing_to_do(run):
    workdir, _ = run
    done = snakemake(workdir, "-n", "--cores", "2", extra_configs=[REPO / ".test/brain_mets.yaml"])
    assert "Nothing to be done" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def audit_run(run, tmp_path_factory):
    """``spinedx audit`` of the study's bundle on a copy of its external cohort (cases.csv
    without a cohort column) and the readers' marks: no training, the bundle's thresholds."""
    _, results = run
    auditor = tmp_path_factory.mktemp("detection_auditor")
    cases = pd.read_csv(results / "demo_cohort/cases.csv", dtype=str)
    external = cases[cases.cohort == "external"]
    for patient in external.patient_id:
        shutil.copytree(results / "demo_cohort/images" / patient, auditor / "cohort/images" / patient)
    external.drop(columns="cohort").to_csv(auditor / "cohort/cases.csv", index=False)
    shutil.copy(results / "demo_cohort/reader_marks.csv", auditor / "cohort/reader_marks.csv")
    settings = yaml.safe_load((REPO / ".test/brain_mets.yaml").read_text())
    settings["detection_evaluation"]["readers"]["marks"] = "cohort/reader_marks.csv"
    (auditor / "audit.yaml").write_text(yaml.safe_dump(settings))
    spinedx_audit(results / "bundle", auditor)
    return auditor / "audit"


def test_audit_of_the_external_cohort_reproduces_the_external_results(run, audit_run):
    _, results = run
    audited = audit_run
    assert not (audited / "detection/models").exists() and not (audited / "splits").exists()
    key = ["model", "input", "cohort"]
    study = pd.read_csv(results / f"tables/{paths.DETECTION_SUMMARY}.csv")
    audit = pd.read_csv(audited / f"tables/{paths.DETECTION_SUMMARY}.csv")
    assert set(audit.cohort) == {"external"}
    study = study[study.cohort == "external"].set_index(key).sort_index()
    audit = audit.set_index(key).sort_index()
    # Same models, same volumes, the bundle's thresholds: the same external results.
    pd.testing.assert_frame_equal(audit[study.columns], study, check_exact=False, rtol=1e-9)
