"""The two study shapes of issue 13 end to end on their tiny configs, in scratch folders:
the ISMF-shaped study (.test/ismf.yaml: five classes labelled by the cases table,
hold-out 7:1:2-like with two repeats, two external centres, clinical fusion; its issue-15
analyses) and the canine-shaped study (.test/canine.yaml: six classes labelled per image by
the labelme shape, four sequences in two planes, hold-out train/validation with the
external cohort as the test set), then an audit of the ISMF bundle on its external centres
and one of the canine bundle on its external dogs (each with the issue-15 analyses that
need no training data)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, SNAKEMAKE, assert_reader_model_row, same_printed, spinedx_audit

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group(name="study_shapes")]

ISMF_CLASSES = ["schwannoma", "meningioma", "astrocytoma", "ependymoma", "metastasis"]
CANINE_CLASSES = ["unremarkable", "IVDE", "IVDP", "FCE_ANNPE", "syringomyelia", "neoplasia"]


def run_study(workdir, config: str, *args: str) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args,
               "--configfile", str(REPO / config)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def ismf(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ismf")
    run_study(workdir, ".test/ismf.yaml")
    return workdir, workdir / ".test/results/ismf"


@pytest.fixture(scope="module")
def canine(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("canine")
    run_study(workdir, ".test/canine.yaml")
    return workdir, workdir / ".test/results/canine"


def assert_figures(results, names):
    for name in names:
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        png = results / f"figures/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and min(Image.open(png).size) > 300, name


def test_ismf_holdout_splits_models_and_predictions(ismf):
    _, results = ismf
    holdout = pd.read_csv(results / "splits/holdout.tsv", sep="\t")
    assert list(holdout.columns) == ["patient_id", "diagnosis", "label", "repeat", "seed", "partition"]
    assert sorted(holdout.repeat.unique()) == [0, 1] and holdout.groupby("repeat").patient_id.nunique().eq(25).all()
    # 5 patients per class, 3:1:1: exactly 3 / 1 / 1 of each class in every repeat.
    counts = holdout.groupby(["repeat", "partition", "diagnosis"]).size().unstack("partition")
    assert (counts[["train", "validation", "internal_test"]] == [3, 1, 1]).all(axis=None)
    assert not (results / "splits/folds.tsv").exists()
    for sequence in ("T1W", "T2W", "T2FS", "AX-T2W"):
        assert {p.name for p in (results / f"models/resnet10t/{sequence}").iterdir()} == {"holdout0", "holdout1"}
    ensembled = pd.read_parquet(results / "ensembling/resnet10t/T1W.parquet")
    assert set(ensembled.model) == {"holdout0", "holdout1", "ensemble"}
    assert set(ensembled.prediction_set) == {"validation", "internal_test", "external_centre2", "external_centre3"}
    probs = ensembled[[f"prob_{c}" for c in ISMF_CLASSES]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    # The internal test patients of a repeat were neither trained nor validated on by it.
    for repeat in (0, 1):
        test_patients = set(holdout[(holdout.repeat == repeat) & (holdout.partition == "internal_test")].patient_id)
        scored = ensembled[(ensembled.model == f"holdout{repeat}") & (ensembled.prediction_set == "internal_test")]
        assert set(scored.patient_id) == test_patients


def test_ismf_n_class_tables_per_cohort_with_a_pooled_row_and_fusion(ismf):
    _, results = ismf
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    sets = set(zip(overall.prediction_set, overall.model))
    assert sets == {("validation", "holdout0"), ("validation", "holdout1"), ("internal_test", "holdout0"),
                    ("internal_test", "holdout1"), ("external_centre2", "ensemble"),
                    ("external_centre3", "ensemble"), ("external_pooled", "ensemble")}
    assert set(overall[overall.level == "image"].input) == {"T1W", "T2W", "T2FS", "AX-T2W", "sagittal", "axial", "ALL"}
    assert set(overall[overall.level == "case"].input) == {
        "T1W", "T2W", "T2FS", "AX-T2W", "sagittal", "axial", "ALL",
        "fusion_image", "fusion_clinical", "fusion_image+clinical"}
    case_all = overall[(overall.level == "case") & (overall.input == "ALL")].set_index("prediction_set")
    assert case_all.loc["external_pooled", "n"] == case_all.loc["external_centre2", "n"] + \
        case_all.loc["external_centre3", "n"] == 10
    for metric in ("accuracy", "macro_f1", "macro_auc", "kappa"):
        values = overall[metric].dropna()
        assert values.between(-1, 1).all() and (overall[f"{metric}_lo"].dropna() <= values[
            overall[f"{metric}_lo"].notna()] + 1e-12).all()
    per_class = pd.read_csv(results / "tables/multiclass_per_class.csv")
    assert set(per_class["class"]) == set(ISMF_CLASSES)
    confusion = pd.read_csv(results / "tables/multiclass_confusion.csv")
    pooled = confusion[(confusion.level == "case") & (confusion.input == "ALL")
                       & (confusion.prediction_set == "external_pooled")]
    assert len(pooled) == 25 and pooled["count"].sum() == 10
    repeats = pd.read_csv(results / "tables/multiclass_holdout_repeats.csv")
    assert (repeats.n_repeats == 2).all() and (repeats["min"] <= repeats["mean"] + 1e-12).all()
    comparison = pd.read_csv(results / "tables/fusion_comparison.csv")
    external = comparison[comparison.prediction_set == "external_pooled"]
    assert external.input.tolist() == ["ALL", "fusion_image", "fusion_clinical", "fusion_image+clinical"]
    coefficients = pd.read_csv(results / "tables/fusion_coefficients.csv")
    assert set(coefficients.fitted_on) == {"holdout0:validation", "holdout1:validation"}
    # Binary by nature: no binary tables, no meta-analysis for five classes.
    for name in ("table2_image_level", "table3_case_level", "fold_2x2", "meta_analysis"):
        assert not (results / f"tables/{name}.csv").exists()
    table1 = pd.read_csv(results / "tables/table1_cohort.csv").set_index(["cohort", "diagnosis"])
    assert table1.loc[("external_centre2", "all"), "patients"] == 5
    assert table1.loc[("external_centre3", "all"), "patients"] == 5


def test_ismf_figures_gradcam_and_bundle(ismf):
    _, results = ismf
    assert_figures(results, ["fig_multiclass_roc", "fig_multiclass_confusion", "fig_multiclass_f1",
                             "fig_fusion_comparison",
                             *(f"fig7_gradcam_resnet10t_{s}" for s in ("T1W", "T2W", "T2FS", "AX-T2W"))])
    images = pd.read_parquet(results / "annotations/images.parquet")
    summary = pd.read_csv(results / "gradcam/resnet10t/T2FS.csv")
    external = images[(images.cohort != "internal") & (images.sequence == "T2FS")]
    assert sorted(summary.image_id) == sorted(external.image_id)
    assert set(summary.target_class) <= set(ISMF_CLASSES) and summary.case_prob.between(0.2, 1).all()
    from spinedx.readers import bundle

    card = bundle.verify(results / "bundle")
    assert card["split_scheme"] == "holdout" and card["n_folds"] == 2 and card["positive_class"] is None
    assert {m["file"] for m in card["models"]} == {f"models/resnet10t/{s}/holdout{r}.pt"
                                                  for s in ("T1W", "T2W", "T2FS", "AX-T2W") for r in (0, 1)}
    assert {row["prediction_set"] for row in card["metrics"]["external"]} == {
        "external_centre2", "external_centre3", "external_pooled"}
    assert "5-class classification" in card["task"]
    sums = (results / "bundle/SHA256SUMS").read_text()  # the distribution-shift reference, hashed with the models
    assert all(f"shift_reference/resnet10t/{s}.npz" in sums for s in ("T1W", "T2W", "T2FS", "AX-T2W"))
    assert "Classes: schwannoma, meningioma" in (results / "bundle/model_card.md").read_text()


def test_ismf_reader_study_flow_subgroups_and_checklist(ismf):
    """Issue 15 for the N-class hold-out shape: the simulated observer study (readers of
    three experience levels, unaided and aided), its tables, MRMC on accuracy and figure;
    the participant flow per cohort and hold-out partition; N-class subgroups; checklist."""
    _, results = ismf
    readers = pd.read_csv(results / "demo_reader_study/readers.csv")
    assert set(readers.experience) == {"senior", "intermediate", "junior"}
    assert len(readers) == 6 * 10 * 2 and set(readers.decision) <= set(ISMF_CLASSES)
    metrics = pd.read_csv(results / "tables/reader_study_metrics.csv")
    assert (metrics.row_type == "reader").sum() == 12
    assert set(zip(metrics[metrics.row_type == "experience"].experience,
                   metrics[metrics.row_type == "experience"].condition)) == {
        (e, c) for e in ("senior", "intermediate", "junior") for c in ("unaided", "aided")}
    # The model's row equals the study's own N-class table on the same (pooled external) cases.
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    own = overall[(overall.level == "case") & (overall.input == "ALL")
                  & (overall.prediction_set == "external_pooled")].iloc[0]
    model = metrics[metrics.row_type == "model"].iloc[0]
    assert model.n_cases == own.n == 10
    for metric in ("accuracy", "macro_sensitivity", "macro_specificity", "macro_f1", "kappa", "macro_auc"):
        for column in (metric, f"{metric}_lo", f"{metric}_hi"):
            assert f"{model[column]:.3f}" == f"{own[column]:.3f}", column
    for metric in ("accuracy", "macro_sensitivity", "kappa"):
        shown = metrics[[metric, f"{metric}_lo", f"{metric}_hi"]].dropna()
        assert (shown[f"{metric}_lo"] <= shown[metric] + 1e-12).all() and (shown[metric] <= shown[f"{metric}_hi"] + 1e-12).all()
    per_class = pd.read_csv(results / "tables/reader_study_per_class.csv")
    assert set(per_class["class"]) == set(ISMF_CLASSES) and per_class.sensitivity.between(0, 1).all()
    gain = pd.read_csv(results / "tables/reader_study_gain.csv")
    accuracy_gain = gain[gain.metric == "accuracy"].set_index("experience")
    assert set(accuracy_gain.index) == {"senior", "intermediate", "junior", "all readers"}
    groups = metrics[metrics.row_type == "experience"].set_index(["experience", "condition"])
    for group in ("senior", "junior"):
        assert accuracy_gain.loc[group, "gain"] == pytest.approx(
            groups.loc[(group, "aided"), "accuracy"] - groups.loc[(group, "unaided"), "accuracy"], abs=1e-9)
    mrmc = pd.read_csv(results / "tables/reader_study_mrmc.csv")
    assert set(mrmc.figure_of_merit) == {"accuracy"} and set(mrmc.covariance) == {"jackknife"}
    assert set(mrmc.contrast) == {"conditions", "model vs unaided", "model vs aided"}
    assert set(mrmc.analysis) == {"RRRC", "FRRC", "RRFC"}
    unaided = mrmc[(mrmc.contrast == "conditions") & (mrmc.analysis == "RRRC") & (mrmc.row_type == "modality")
                   & (mrmc.modality == "unaided")]
    readers_unaided = metrics[(metrics.row_type == "reader") & (metrics.condition == "unaided")]
    assert unaided.estimate.iloc[0] == pytest.approx(readers_unaided.accuracy.mean(), abs=1e-9)
    assert_figures(results, ["reader_study_accuracy", "participant_flow", "subgroups_forest"])
    flow = pd.read_csv(results / "tables/participant_flow.csv")
    assert set(flow.cohort) == {"internal", "external_centre2", "external_centre3"}
    split = flow[(flow.step == "split") & (flow.cohort == "internal")].set_index("group").patients
    assert split["repeat 0: train"] == 15 and split["repeat 1: internal_test"] == 5
    analysed = flow[(flow.step == "analysed") & (flow.group == "ALL")].set_index("cohort").patients
    assert analysed["external_centre2"] == analysed["external_centre3"] == 5
    assert 5 <= analysed["internal"] <= 10  # the internal-test patients of either repeat
    subgroups = pd.read_csv(results / "tables/subgroups.csv")
    everyone = subgroups[subgroups.variable == "all cases"].iloc[0]
    for column in ("accuracy", "accuracy_lo", "macro_f1", "macro_f1_hi", "kappa", "macro_auc"):
        assert f"{everyone[column]:.3f}" == f"{own[column]:.3f}", column
    assert set(subgroups[subgroups.variable == "cohort"].level) == {"external_centre2", "external_centre3"}
    checklist = pd.read_csv(results / "tables/reporting_checklist.csv").fillna("")
    assert checklist.files.str.contains("reader_study_gain.csv").any()
    assert checklist.files.str.contains("splits/holdout.tsv").any()
    assert checklist.files.str.contains("multiclass_overall.csv").any()
    # Calibration: one-vs-rest per class and the multi-class Brier score (their sum) per test set.
    calibration = pd.read_csv(results / "tables/calibration.csv")
    pooled = calibration[calibration.test_set == "external_pooled"].set_index("class")
    assert set(pooled.index) == {"all", *ISMF_CLASSES}
    assert pooled.loc["all", "brier"] == pytest.approx(pooled.loc[ISMF_CLASSES, "brier"].sum(), abs=1e-9)
    assert set(calibration.test_set) == {"internal_test", "external_centre2", "external_centre3", "external_pooled"}
    assert set(pd.read_csv(results / "tables/calibration_curve.csv")["class"]) == set(ISMF_CLASSES)
    assert_figures(results, ["calibration_curve"])
    # Two-class analyses that are not done for N classes are absent, not half-made.
    for name in ("reader_study_roc",):
        assert not (results / f"tables/{name}.csv").exists() and not (results / f"figures/{name}.pdf").exists()


def test_ismf_paired_comparisons_per_test_set(ismf):
    """N-class paired comparisons: every pair of inputs and fusion vs image only on each test
    set; the ALL input's accuracy and per-class AUCs are the N-class tables' own numbers."""
    _, results = ismf
    table = pd.read_csv(results / "tables/paired_comparisons.csv")
    assert set(table.test_set) == {"internal_test", "external_centre2", "external_centre3", "external_pooled"}
    assert set(table.kind) == {"inputs", "fusion"} and set(table.metric) == {"accuracy", "auc", "sensitivity"}
    assert len(table) == 4 * (21 + 1) * (1 + 2 * len(ISMF_CLASSES))  # 7 inputs: 21 pairs, + fusion
    pooled = table[(table.test_set == "external_pooled") & (table.model_b == "resnet10t/ALL")]
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    own = overall[(overall.level == "case") & (overall.input == "ALL") & (overall.prediction_set == "external_pooled")]
    assert f"{pooled[pooled.metric == 'accuracy'].estimate_b.iloc[0]:.3f}" == f"{own.accuracy.iloc[0]:.3f}"
    per_class = pd.read_csv(results / "tables/multiclass_per_class.csv")
    per_class = per_class[(per_class.level == "case") & (per_class.input == "ALL")
                          & (per_class.prediction_set == "external_pooled")].set_index("class")
    for _, row in pooled[pooled.metric == "auc"].iterrows():
        assert f"{row.estimate_b:.3f}" == f"{per_class.loc[row['class'], 'auc']:.3f}", row["class"]
    for _, rows in table.groupby("test_set"):
        assert rows.adjustment.str.startswith("holm (all rows").all()
        tested = rows.dropna(subset=["p"])  # a class absent from a centre: no test
        assert len(tested) and (tested.p_adjusted >= tested.p - 1e-12).all()


def test_ismf_one_vs_rest_decision_curves(ismf):
    """Per class, the net benefit of every input on the pooled external cases; the ALL
    input's at one threshold by the formula from the case-level predictions."""
    _, results = ismf
    curve = pd.read_csv(results / "tables/decision_curve.csv")
    assert list(curve["class"].unique()) == ISMF_CLASSES and set(curve.test_set) == {"external_pooled"}
    assert curve.n.eq(10).all() and len(set(curve.model)) == 7 + 2
    cases = pd.read_parquet(results / "case_level/resnet10t.parquet")
    cases = cases[(cases.cohort != "internal") & (cases.model == "ensemble") & (cases.input == "ALL")]
    threshold = 0.2  # about 1 / 5: the tiny models' probabilities lie near it, so the calls differ by class
    for index, name in enumerate(ISMF_CLASSES):
        called, is_class = cases[f"prob_{name}"] >= threshold, cases.label == index
        expected = (called & is_class).sum() / 10 - (called & ~is_class).sum() / 10 * threshold / (1 - threshold)
        row = curve[(curve["class"] == name) & (curve.model == "resnet10t/ALL")
                    & np.isclose(curve.threshold, threshold)]
        assert row.net_benefit.iloc[0] == pytest.approx(expected, abs=1e-12), name
    assert_figures(results, ["decision_curve"])


def audit_of_the_external_patients(results, auditor, **settings):
    """``spinedx audit`` of a study's bundle on a copy of its external patients (images and
    labelme files; the cases table without its cohort column), on the CPU with 100 bootstrap
    replicates, no meta-analysis or Grad-CAM, plus ``settings``; the audit's results folder."""
    cases = pd.read_csv(results / "demo_cohort/cases.csv", dtype=str)
    external = cases[cases.cohort != "internal"]
    for patient in external.patient_id:
        shutil.copytree(results / "demo_cohort/images" / patient, auditor / "cohort/images" / patient)
    external.drop(columns="cohort").to_csv(auditor / "cohort/cases.csv", index=False)
    (auditor / "audit.yaml").write_text(yaml.safe_dump({
        "meta_analysis": {"enabled": False}, "evaluation": {"bootstrap_replicates": 100},
        "training": {"device": "cpu", "threads": 1}, "gradcam": {"enabled": False}, **settings}))
    spinedx_audit(results / "bundle", auditor)
    return auditor / "audit"


@pytest.fixture(scope="module")
def ismf_audit(ismf, tmp_path_factory):
    """``spinedx audit`` of the ISMF bundle on a copy of its two external centres."""
    _, results = ismf
    return audit_of_the_external_patients(results, tmp_path_factory.mktemp("ismf_auditor"))


def test_audit_of_the_holdout_bundle_reproduces_the_pooled_external_numbers(ismf, ismf_audit):
    _, results = ismf
    study = pd.read_csv(results / "tables/multiclass_overall.csv")
    audited = pd.read_csv(ismf_audit / "tables/multiclass_overall.csv")
    assert set(audited.prediction_set) == {"external"} and set(audited.model) == {"ensemble"}
    assert not (ismf_audit / "models").exists() and not (ismf_audit / "splits").exists()
    pooled = study[study.prediction_set == "external_pooled"].set_index(["level", "input"])
    audited = audited.set_index(["level", "input"])
    assert set(audited.index) == {key for key in pooled.index if not key[1].startswith("fusion_")}
    for column in ("n", "n_patients", "accuracy", "macro_f1", "macro_auc", "kappa"):
        assert audited[column].to_dict() == pytest.approx(pooled.loc[audited.index, column].to_dict(), abs=1e-12)


def test_audit_of_the_nclass_bundle_runs_the_analyses_that_need_no_training_data(ismf, ismf_audit):
    """Audit mode of an N-class bundle: distribution shift, flow, subgroups, calibration,
    decision curves, paired comparisons and the checklist on the auditor's cohort (one cohort, "external");
    no fusion, no reader study (no readers.csv). The audited cases are the study's pooled
    external cases scored by the same ensemble, so each analysis repeats the study's number."""
    _, results = ismf
    assert_figures(ismf_audit, ["participant_flow", "subgroups_forest", "calibration_curve", "decision_curve"])
    for name in ("reader_study_metrics", "fusion_comparison"):
        assert not (ismf_audit / f"tables/{name}.csv").exists(), name
    # Distribution shift against the bundle's hold-out reference, before the N-class tables.
    assert_figures(ismf_audit, ["distribution_shift"])
    shift = pd.read_csv(ismf_audit / "tables/distribution_shift_summary.csv").set_index("sequence")
    images = pd.read_parquet(ismf_audit / "annotations/images.parquet")
    assert shift.images.to_dict() == images.groupby("sequence").size().to_dict()
    assert shift.patients.eq(10).all() and shift.verdict.notna().all()
    assert (ismf_audit / "tables/distribution_shift_summary.csv").stat().st_mtime <= (
        ismf_audit / "tables/multiclass_overall.csv").stat().st_mtime
    flow = pd.read_csv(ismf_audit / "tables/participant_flow.csv")
    assert set(flow.cohort) == {"external"}
    assert flow[(flow.step == "analysed") & (flow.group == "ALL")].patients.tolist() == [10]
    overall = pd.read_csv(ismf_audit / "tables/multiclass_overall.csv")
    own = overall[(overall.level == "case") & (overall.input == "ALL")].iloc[0]
    everyone = pd.read_csv(ismf_audit / "tables/subgroups.csv").query("variable == 'all cases'").iloc[0]
    assert f"{everyone.accuracy:.3f}" == f"{own.accuracy:.3f}" and everyone.n == 10
    calibration = pd.read_csv(ismf_audit / "tables/calibration.csv")
    study_calibration = pd.read_csv(results / "tables/calibration.csv").query("test_set == 'external_pooled'")
    assert set(calibration.test_set) == {"external"}
    # the audit runs inference again: float32 probabilities agree to ~1e-8, not bit for bit
    assert calibration.set_index("class").brier.to_dict() == pytest.approx(
        study_calibration.set_index("class").brier.to_dict(), abs=1e-6)
    comparisons = pd.read_csv(ismf_audit / "tables/paired_comparisons.csv")
    study_comparisons = pd.read_csv(results / "tables/paired_comparisons.csv").query(
        "test_set == 'external_pooled' and kind == 'inputs'")
    assert set(comparisons.test_set) == {"external"} and set(comparisons.kind) == {"inputs"}
    keys = ["comparison", "metric", "class"]
    joined = comparisons.merge(study_comparisons, on=keys, suffixes=("", "_study"))
    assert len(joined) == len(comparisons) == 21 * (1 + 2 * len(ISMF_CLASSES))
    for column in ("estimate_a", "difference", "p"):
        assert np.allclose(joined[column], joined[f"{column}_study"], atol=1e-9, equal_nan=True), column
    curve = pd.read_csv(ismf_audit / "tables/decision_curve.csv")
    study_curve = pd.read_csv(results / "tables/decision_curve.csv")
    joined = curve.merge(study_curve, on=["class", "model", "threshold"], suffixes=("", "_study"))
    assert len(joined) == len(curve) == len(study_curve) and set(curve.test_set) == {"external"}
    assert np.allclose(joined.net_benefit, joined.net_benefit_study, atol=1e-9)
    checklist = pd.read_csv(ismf_audit / "tables/reporting_checklist.csv").fillna("")
    assert checklist.files.str.contains("paired_comparisons.csv").any()
    assert checklist.files.str.contains("distribution_shift_summary.csv").any()
    assert not checklist.files.str.contains("splits/").any()


def test_canine_labels_from_the_annotation_planes_and_reference_tables(canine):
    _, results = canine
    images = pd.read_parquet(results / "annotations/images.parquet")
    assert set(images.label) == set(range(6))
    # Labels belong to images: dogs have unremarkable and lesion images.
    mixed = images.groupby("patient_id").label.nunique()
    assert (mixed > 1).sum() >= 10
    no_shape = images.shape_label.isna()
    assert (images.loc[no_shape, "label"] == 0).all() and images.loc[no_shape, "x0"].isna().all()
    assert (images.loc[~no_shape, "label"] > 0).all()
    assert (images.loc[~no_shape].shape_label.map(CANINE_CLASSES.index) == images.loc[~no_shape].label).all()
    cache = np.load(results / "preprocessing/T2_SAG.npz")["images"]
    assert cache.shape[1:] == (32, 32)  # whole slices, every image framed alike
    assert not (results / "case_level").exists()  # labels of images: no case level
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    assert set(overall.level) == {"image"} and set(overall.prediction_set) == {"validation", "external"}
    assert set(overall.input) == {"T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA", "sagittal", "transverse", "ALL"}
    row = overall[(overall.input == "ALL") & (overall.prediction_set == "external")].iloc[0]
    assert row.n == (images.cohort == "external").sum()
    reference = pd.read_csv(results / "tables/multiclass_reference_class.csv")
    assert set(reference.pathology) == set(CANINE_CLASSES[1:]) and set(reference.reference) == {"unremarkable"}
    ext = reference[(reference.input == "ALL") & (reference.prediction_set == "external")]
    assert (ext.n_reference == (images[(images.cohort == "external")].label == 0).sum()).all()
    assert_figures(results, ["fig_multiclass_roc", "fig_multiclass_confusion", "fig_multiclass_f1",
                             *(f"fig7_gradcam_resnet10t_{s}" for s in ("T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA"))])
    summary = pd.read_csv(results / "gradcam/resnet10t/T2_SAG.csv")
    shapeless = set(images[no_shape].image_id)
    assert summary[summary.image_id.isin(shapeless)].box_fraction_of_image.isna().all()
    card = json.loads((results / "bundle/model_card.json").read_text())
    assert card["labels"]["source"] == "annotation" and "each image" in card["task"]


def test_canine_flow_calibration_subgroups_and_checklist_on_images(canine):
    """Issue 15 for labels of images (read-only checks of the tiny canine run): the flow
    counts images per class, input and partition; calibration, decision curves and subgroups
    score every external image by the ensemble, intervals from the dog bootstrap; no reader
    study."""
    _, results = canine
    images = pd.read_parquet(results / "annotations/images.parquet")
    external = images[images.cohort == "external"]
    flow = pd.read_csv(results / "tables/participant_flow.csv").set_index(["step", "cohort", "group"])
    for k, name in enumerate(CANINE_CLASSES):
        assert flow.loc[("analysed", "external", f"ALL: {name}"), "images"] == (external.label == k).sum()
    planes = {"sagittal": ["T1_SAG", "T2_SAG"], "transverse": ["T1_TRA", "T2_TRA"]}
    for input_, members in [*((s, [s]) for s in ("T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA")), *planes.items(),
                            ("ALL", [*planes["sagittal"], *planes["transverse"]])]:
        assert flow.loc[("analysed", "external", input_), "images"] == external.sequence.isin(members).sum()
    holdout = pd.read_csv(results / "splits/holdout.tsv", sep="\t")
    for partition in ("train", "validation"):
        ids = set(holdout[holdout.partition == partition].patient_id)
        assert flow.loc[("split", "internal", f"repeat 0: {partition}"), "images"] == images.patient_id.isin(ids).sum()
    assert ("analysed", "internal", "none (no internal test partition)") in flow.index
    # Calibration: explicit Brier scores of the external images' ensemble predictions.
    predictions = pd.concat([pd.read_parquet(results / f"ensembling/resnet10t/{s}.parquet")
                             for s in ("T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA")])
    scored = predictions[(predictions.cohort == "external") & (predictions.model == "ensemble")]
    probs = scored[[f"prob_{c}" for c in CANINE_CLASSES]].to_numpy()
    truth = np.eye(len(CANINE_CLASSES))[scored.label.to_numpy()]
    calibration = pd.read_csv(results / "tables/calibration.csv").set_index("class")
    assert calibration.loc["all", "n"] == len(external) == len(scored)
    assert f"{calibration.loc['all', 'brier']:.4f}" == f"{((probs - truth) ** 2).sum(axis=1).mean():.4f}"
    for k, name in enumerate(CANINE_CLASSES):
        if name in calibration.index:
            assert f"{calibration.loc[name, 'brier']:.4f}" == f"{((probs[:, k] - truth[:, k]) ** 2).mean():.4f}"
    assert calibration.interval.str.contains("a patient's images drawn together").all()
    # Subgroups: the all-images row equals the N-class table's image-level ALL row on the
    # external cohort (the same images, the same dog bootstrap); plane and sequence levels.
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    own = overall[(overall.level == "image") & (overall.input == "ALL") & (overall.prediction_set == "external")].iloc[0]
    subgroups = pd.read_csv(results / "tables/subgroups.csv")
    everyone = subgroups[subgroups.variable == "all cases"].iloc[0]
    for column in ("n", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "macro_f1_lo", "kappa", "macro_auc"):
        assert f"{everyone[column]:.3f}" == f"{own[column]:.3f}", column
    levels = subgroups.groupby("variable")["level"].apply(set)
    assert levels["plane"] == {"sagittal", "transverse"} and levels["sequence"] == {"T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA"}
    by_plane = subgroups[subgroups.variable == "plane"].set_index("level").n
    assert by_plane["sagittal"] == external.sequence.isin(planes["sagittal"]).sum()
    checklist = pd.read_csv(results / "tables/reporting_checklist.csv").fillna("").set_index(["guideline", "item"])
    assert checklist.loc[("STARD 2015", "13a"), "status"].startswith("not applicable: no reader study")
    for name in ("participant_flow.csv", "subgroups.csv", "calibration.csv"):
        assert checklist.files.str.contains(name).any(), name
    assert_figures(results, ["participant_flow", "subgroups_forest", "calibration_curve", "decision_curve"])
    assert not (results / "demo_reader_study").exists() and not (results / "tables/reader_study_metrics.csv").exists()
    # Decision curves on images: per class, the ALL input's net benefit over the external
    # images at one threshold by the formula from the ensembled predictions.
    curve = pd.read_csv(results / "tables/decision_curve.csv")
    assert list(curve["class"].unique()) == CANINE_CLASSES and set(curve.test_set) == {"external"}
    assert set(curve.model) == {"resnet10t/ALL", "treat all", "treat none"} and curve.n.eq(len(scored)).all()
    threshold, n = 0.2, len(scored)
    for k, name in enumerate(CANINE_CLASSES):
        called, is_class = probs[:, k] >= threshold, truth[:, k] == 1
        expected = (called & is_class).sum() / n - (called & ~is_class).sum() / n * threshold / (1 - threshold)
        row = curve[(curve["class"] == name) & (curve.model == "resnet10t/ALL") & np.isclose(curve.threshold, threshold)]
        assert f"{row.net_benefit.iloc[0]:.6f}" == f"{expected:.6f}", name
    assert checklist.files.str.contains("decision_curve.csv").any()
    # Paired comparisons on images (one backbone: the 21 pairs of the 7 inputs), differences
    # bootstrapped over dogs; T1_SAG vs ALL: each input's accuracy over its images of the
    # dogs both scored, by hand.
    comparisons = pd.read_csv(results / "tables/paired_comparisons.csv")
    assert set(comparisons.kind) == {"inputs"} and len(comparisons) == 21 * (1 + 2 * len(CANINE_CLASSES))
    assert comparisons.test.eq("patient bootstrap (percentile, 100 replicates)").all()
    row = comparisons[(comparisons.model_a == "resnet10t/T1_SAG") & (comparisons.model_b == "resnet10t/ALL")
                      & (comparisons.metric == "accuracy")].iloc[0]
    correct = scored[[f"prob_{c}" for c in CANINE_CLASSES]].to_numpy().argmax(axis=1) == scored.label.to_numpy()
    t1 = (scored.sequence == "T1_SAG").to_numpy()
    dogs = scored.patient_id.isin(set(scored.patient_id[t1])).to_numpy()
    assert (f"{row.estimate_a:.6f}", f"{row.estimate_b:.6f}") == (f"{correct[t1].mean():.6f}",
                                                                  f"{correct[dogs].mean():.6f}")
    assert row.n == t1.sum() and row.ci_lo <= row.ci_hi


def _features_2d(checkpoint: dict, crops: np.ndarray) -> np.ndarray:
    """Penultimate features of a labelme timm model computed apart from spinedx.models.features:
    uint8 crops / 255 normalised by the checkpoint's mean and SD, the backbone's feature map,
    global average pooling."""
    import torch

    from spinedx.models.checkpoints import model_from_checkpoint

    model = model_from_checkpoint(checkpoint, torch.device("cpu")).eval()
    with torch.no_grad():
        inputs = ((torch.from_numpy(crops).float() / 255 - checkpoint["mean"]) / checkpoint["std"]).unsqueeze(1)
        return model.forward_features(inputs).mean(dim=(2, 3)).double().numpy()


def _cached(results, sequence: str, cohort: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A sequence's images of one cohort (the image table's order) and their cached crops."""
    images = pd.read_parquet(results / "annotations/images.parquet")
    table = images[(images.sequence == sequence) & (images.cohort == cohort)].reset_index(drop=True)
    with np.load(results / f"preprocessing/{sequence}.npz") as cache:
        return table, cache["images"][pd.Index(cache["image_id"]).get_indexer(table.image_id)]


def test_canine_bundle_carries_the_shift_reference_of_what_each_model_did_not_train_on(canine):
    """Image labels: the bundle holds each backbone x sequence's distribution-shift reference,
    hashed in SHA256SUMS and listed with its sha256 in both model cards; without the box
    fractions (only lesion images have a rectangle); repeat 0's held-out (validation) images'
    distances recomputed apart (features by pooling the timm feature map, scipy's Mahalanobis
    under the PPCA covariance of its training images) and one image statistic by numpy."""
    import torch
    from conftest import ppca_distances

    from spinedx.io import sha256_file

    _, results = canine
    bundle = results / "bundle"
    sums = dict(reversed(line.split("  ")) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    card = json.loads((bundle / "model_card.json").read_text())
    sequences = ["T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA"]
    names = [f"shift_reference/resnet10t/{s}.npz" for s in sequences]
    assert card["distribution_shift"]["references"] == names
    card_md = (bundle / "model_card.md").read_text()
    for name in names:
        assert sums[name] == sha256_file(bundle / name) == sha256_file(results / name) \
            == card["distribution_shift"]["sha256"][name]
        assert f"- `{name}` (sha256 {sums[name]})" in card_md
        with np.load(bundle / name, allow_pickle=False) as reference:
            assert list(reference["statistics_names"]) == ["intensity_mean", "intensity_sd", "intensity_p05",
                                                           "intensity_p50", "intensity_p95", "width", "height"]
            assert list(reference["folds"]) == [0]
    table, crops = _cached(results, "T2_SAG", "internal")
    holdout = pd.read_csv(results / "splits/holdout.tsv", sep="\t", dtype={"patient_id": str})
    partition = table.patient_id.map(holdout[holdout.repeat == 0].set_index("patient_id").partition)
    held = (partition != "train").to_numpy()
    assert set(partition[held]) == {"validation"} and 0 < held.sum() < len(table)
    checkpoint = torch.load(bundle / "models/resnet10t/T2_SAG/holdout0.pt", weights_only=True)
    features = _features_2d(checkpoint, crops)
    with np.load(bundle / "shift_reference/resnet10t/T2_SAG.npz", allow_pickle=False) as reference:
        assert reference["fold0_components"].shape == (10, features.shape[1])
        assert reference["fold0_held_out"] == pytest.approx(ppca_distances(features[~held], features[held], 10),
                                                            rel=1e-6)
        assert reference["statistics_training"][:, 0] == pytest.approx(
            crops.reshape(len(crops), -1).astype(np.float64).mean(axis=1), rel=1e-12)


@pytest.fixture(scope="module")
def canine_audit(canine, tmp_path_factory):
    """``spinedx audit`` of the canine bundle on a copy of its external dogs (their images
    and labelme files: the auditor's labels) with the demo's subgroup variables."""
    _, results = canine
    return audit_of_the_external_patients(results, tmp_path_factory.mktemp("canine_auditor"),
                                          subgroups={"variables": ["plane", "sequence", "cohort", "sex"]})


def test_audit_of_the_canine_bundle_repeats_the_studys_external_numbers(canine, canine_audit):
    """Audit mode of an image-labelled bundle: distribution shift (before the N-class
    tables), flow, subgroups, calibration, decision curves, image comparisons and the
    checklist on the auditor's images (one cohort, "external"; labels from its labelme
    files). The audited images are the study's external images scored by the same ensemble,
    so every number repeats the study's to the printed digit."""
    _, results = canine
    audited = canine_audit
    assert not (audited / "models").exists() and not (audited / "splits").exists()
    study = pd.read_csv(results / "tables/multiclass_overall.csv").query("prediction_set == 'external'")
    overall = pd.read_csv(audited / "tables/multiclass_overall.csv")
    assert set(overall.prediction_set) == {"external"} and set(overall.model) == {"ensemble"}
    joined = overall.merge(study, on=["level", "input"], suffixes=("", "_study"))
    assert len(joined) == len(overall) == len(study) == 7
    for column in ("n", "n_patients", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "macro_auc", "kappa"):
        assert [f"{v:.3f}" for v in joined[column]] == [f"{v:.3f}" for v in joined[f"{column}_study"]], column
    # Distribution shift against the bundle's reference, per sequence, before the N-class tables.
    images = pd.read_parquet(audited / "annotations/images.parquet")
    shift = pd.read_csv(audited / "tables/distribution_shift_summary.csv").set_index("sequence")
    assert shift.images.to_dict() == images.groupby("sequence").size().to_dict()
    assert shift.patients.eq(6).all() and shift.verdict.notna().all()
    assert "box_width_fraction_median" not in shift.columns
    assert (audited / "tables/distribution_shift_summary.csv").stat().st_mtime <= (
        audited / "tables/multiclass_overall.csv").stat().st_mtime
    assert_figures(audited, ["distribution_shift", "participant_flow", "subgroups_forest", "calibration_curve",
                             "decision_curve"])
    # Flow: the study's analysed external dogs and images, per input and class.
    flow = pd.read_csv(audited / "tables/participant_flow.csv")
    assert set(flow.cohort) == {"external"}
    own_flow = pd.read_csv(results / "tables/participant_flow.csv").query("cohort == 'external' and step == 'analysed'")
    analysed = flow[flow.step == "analysed"]
    assert analysed[["group", "patients", "images"]].values.tolist() == own_flow[["group", "patients", "images"]].values.tolist()
    # Subgroups (plane, sequence, cohort, sex): every row, dog-bootstrap intervals included.
    subgroups = pd.read_csv(audited / "tables/subgroups.csv")
    joined = subgroups.merge(pd.read_csv(results / "tables/subgroups.csv"), on=["variable", "level"],
                             suffixes=("", "_study"))
    assert len(joined) == len(subgroups) == 10
    for column in ("n", "accuracy", "accuracy_lo", "accuracy_hi", "macro_f1", "macro_f1_lo", "kappa", "macro_auc"):
        assert [f"{v:.3f}" for v in joined[column]] == [f"{v:.3f}" for v in joined[f"{column}_study"]], column
    # Calibration: one-vs-rest per class and the multi-class Brier score (inference ran again:
    # float32 probabilities agree to ~1e-8, so to the printed digit, not bit for bit).
    calibration = pd.read_csv(audited / "tables/calibration.csv")
    joined = calibration.merge(pd.read_csv(results / "tables/calibration.csv"), on=["test_set", "class"],
                               suffixes=("", "_study"))
    assert set(calibration.test_set) == {"external"} and len(joined) == len(calibration) == 1 + len(CANINE_CLASSES)
    for column in ("n", "brier", "brier_lo", "brier_hi", "intercept", "slope"):
        assert [f"{v:.4f}" for v in joined[column]] == [f"{v:.4f}" for v in joined[f"{column}_study"]], column
    curve = pd.read_csv(audited / "tables/decision_curve.csv")
    joined = curve.merge(pd.read_csv(results / "tables/decision_curve.csv"), on=["class", "model", "threshold"],
                         suffixes=("", "_study"))
    assert len(joined) == len(curve) and set(curve.test_set) == {"external"}
    assert np.allclose(joined.net_benefit, joined.net_benefit_study, atol=1e-9)
    comparisons = pd.read_csv(audited / "tables/paired_comparisons.csv")
    joined = comparisons.merge(pd.read_csv(results / "tables/paired_comparisons.csv"),
                               on=["test_set", "comparison", "metric", "class"], suffixes=("", "_study"))
    assert len(joined) == len(comparisons) == 21 * (1 + 2 * len(CANINE_CLASSES))
    for column in ("estimate_a", "estimate_b", "difference", "ci_lo", "ci_hi", "p", "p_adjusted"):
        assert np.allclose(joined[column], joined[f"{column}_study"], atol=1e-9, equal_nan=True), column
    checklist = pd.read_csv(audited / "tables/reporting_checklist.csv").fillna("").set_index(["guideline", "item"])
    assert checklist.loc[("STARD 2015", "13a"), "status"].startswith("not applicable: no reader study")
    for name in ("distribution_shift_summary.csv", "paired_comparisons.csv", "calibration.csv", "subgroups.csv"):
        assert checklist.files.str.contains(name).any(), name
    assert not checklist.files.str.contains("splits/").any()


def test_a_darker_canine_cohort_is_flagged_and_the_studys_own_mostly_not(canine):
    """The canine bundle's references against the external images' model inputs as they are
    and at half their intensity (a darker scanner): every darker image is flagged, by its
    statistics at least; the study's own images mostly not by their statistics (the features'
    own rate is noise of the tiny study's 16 held-out validation images per sequence)."""
    import torch

    from spinedx import config as configuration
    from spinedx.models.device import set_up
    from spinedx.stages import distribution_shift

    _, results = canine
    config = configuration.load(REPO / ".test/canine.yaml")
    device, acceleration = set_up(config["training"], compile=False)
    for sequence in ("T1_SAG", "T2_SAG", "T1_TRA", "T2_TRA"):
        reference = distribution_shift.read_reference(results / f"bundle/shift_reference/resnet10t/{sequence}.npz")
        folds = {0: results / f"bundle/models/resnet10t/{sequence}/holdout0.pt"}
        chosen, crops = _cached(results, sequence, "external")
        scores = {name: distribution_shift.score_cohort(reference, folds, chosen, pixels, torch.from_numpy(pixels),
                                                        device, acceleration, 0.95, 64)
                  for name, pixels in (("own", crops), ("darker", crops // 2))}
        assert scores["own"].statistics_flag.mean() < 0.5, sequence
        assert scores["darker"].statistics_flag.all() and scores["darker"].flagged.all(), sequence
        assert scores["darker"].feature_score.median() > scores["own"].feature_score.median(), sequence


def test_canine_rerun_has_nothing_to_do(canine):
    workdir, _ = canine
    done = run_study(workdir, ".test/canine.yaml", "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


# --- two classes labelled per case, not of the reference shape (r15bin) -------------------

BINARY_CLASSES = ["schwannoma", "ependymoma"]  # ependymoma is the positive class
BINARY_EXTERNAL_SETS = ["external_centre2", "external_centre3", "external_pooled"]


def test_binary_holdout_plans_every_issue15_analysis(tmp_path):
    """The dry run of a two-class study of another shape (hold-out, two external centres,
    fusion): the N-class tables beside the binary ones, and every issue-15 rule, with the
    two-class reader study and the N-class calibration and comparisons commands."""
    import re

    done = run_study(tmp_path, ".test/binary_holdout.yaml", "-n", "-p")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout, flags=re.MULTILINE))
    for rule in ("evaluation", "multiclass_evaluation", "fusion", "shift_reference", "participant_flow", "subgroups",
                 "comparisons", "multiclass_calibration", "demo_reader_study", "reader_study", "reporting_checklist"):
        assert jobs.get(rule) == "1", rule
    assert "multiclass_reader_study" not in jobs and "calibration" not in jobs and "meta_analysis" not in jobs
    assert "python -m spinedx multiclass_comparisons" in done.stdout


@pytest.fixture(scope="module")
def binary_holdout(tmp_path_factory):
    """.test/binary_holdout.yaml: schwannoma vs ependymoma (the ISMF generator with two of
    its classes), hold-out 3:1:1 with two repeats, two external centres, clinical fusion."""
    workdir = tmp_path_factory.mktemp("binary_holdout")
    run_study(workdir, ".test/binary_holdout.yaml")
    return workdir, workdir / ".test/results/binary_holdout"


def test_binary_holdout_gets_every_issue15_analysis(binary_holdout):
    """A two-class study of another shape than the reference gets the N-class tables and
    every issue-15 analysis, with the two-class reader study (AUC of the ratings)."""
    _, results = binary_holdout
    for name in ("multiclass_overall", "multiclass_per_class", "table3_case_level", "participant_flow", "subgroups",
                 "paired_comparisons", "calibration", "calibration_curve", "decision_curve", "reader_study_metrics",
                 "reader_study_mrmc", "reader_study_decisions", "reporting_checklist"):
        assert len(pd.read_csv(results / f"tables/{name}.csv")), name
    assert_figures(results, ["participant_flow", "subgroups_forest", "calibration_curve", "decision_curve",
                             "reader_study_roc"])
    for name in ("reader_study_gain", "reader_study_per_class"):  # the N-class reader study's
        assert not (results / f"tables/{name}.csv").exists()
    sums = (results / "bundle/SHA256SUMS").read_text()  # the distribution-shift reference
    assert all(f"shift_reference/resnet10t/{s}.npz" in sums for s in ("T1W", "T2W", "T2FS", "AX-T2W"))
    checklist = pd.read_csv(results / "tables/reporting_checklist.csv").set_index(["guideline", "item"])
    assert "tables/reader_study_mrmc.csv" in checklist.loc[("STARD 2015", "13a"), "files"]
    assert "tables/paired_comparisons.csv" in checklist.loc[("STARD 2015", "14"), "files"]
    flow = pd.read_csv(results / "tables/participant_flow.csv")
    analysed = flow[(flow.step == "analysed") & (flow.group == "ALL")].set_index("cohort").patients
    assert analysed.to_dict() == {"internal": 4, "external_centre2": 4, "external_centre3": 4}
    readers = pd.read_csv(results / "demo_reader_study/readers.csv")  # every external case, both centres
    cases = pd.read_csv(results / "demo_cohort/cases.csv")
    assert set(readers.patient_id) == set(cases[cases.cohort != "internal"].patient_id)


def test_binary_holdout_tables_repeat_the_studys_own_multiclass_tables(binary_holdout):
    """Every number that the N-class evaluation also reports equals it to the printed digit:
    comparisons (each model's AUC, sensitivity and specificity of the positive class on each
    external test set, fusion included), the reader study's model row, the subgroups'
    rows; calibration's Brier against scikit-learn on the case-level predictions."""
    from sklearn.metrics import brier_score_loss

    _, results = binary_holdout
    per_class = pd.read_csv(results / "tables/multiclass_per_class.csv")
    own = per_class[(per_class.level == "case") & (per_class["class"] == "ependymoma")
                    & (per_class.model == "ensemble")].set_index(["input", "prediction_set"])
    overall = pd.read_csv(results / "tables/multiclass_overall.csv")
    own_overall = overall[(overall.level == "case") & (overall.model == "ensemble")].set_index(["input", "prediction_set"])

    same = same_printed
    comparisons = pd.read_csv(results / "tables/paired_comparisons.csv")
    assert set(comparisons.metric) == {"auc", "sensitivity", "specificity"} and set(comparisons["class"]) == {"ependymoma"}
    assert list(comparisons.test_set.unique()) == ["internal_test", *BINARY_EXTERNAL_SETS]
    fusion = comparisons[comparisons.kind == "fusion"]
    assert set(fusion.model_a) == {"resnet10t/image+clinical"} and set(fusion.model_b) == {"resnet10t/image"}
    checked = 0
    for row in comparisons[comparisons.test_set.isin(BINARY_EXTERNAL_SETS)].itertuples():
        for name, estimate in ((row.model_a, row.estimate_a), (row.model_b, row.estimate_b)):
            input_ = name.split("/", 1)[1]
            input_ = f"fusion_{input_}" if row.kind == "fusion" else input_
            mine = own.loc[(input_, row.test_set)]
            if row.metric == "auc":
                assert row.n == own_overall.loc[(input_, row.test_set), "n"]
            same(estimate, mine[row.metric], (row.comparison, row.test_set, row.metric))
            checked += 1
    assert checked == 2 * len(comparisons[comparisons.test_set.isin(BINARY_EXTERNAL_SETS)]) == 2 * 3 * 11 * 3
    # the reader study's model row (the final system on the read cases: every external case)
    pooled = own.loc[("ALL", "external_pooled")]
    assert_reader_model_row(results, pooled, own_overall.loc[("ALL", "external_pooled")], 8)
    mrmc = pd.read_csv(results / "tables/reader_study_mrmc.csv")
    assert {"conditions", "model vs unaided", "model vs aided"} <= set(mrmc.contrast)
    model_modality = mrmc[(mrmc.contrast == "model vs aided") & (mrmc.row_type == "modality") & (mrmc.modality == "model")]
    same(model_modality.estimate.iloc[0], pooled.auc, "MRMC model AUC")
    # subgroups: all cases and each centre
    subgroups = pd.read_csv(results / "tables/subgroups.csv")
    assert set(subgroups.cohort) == {"external_pooled (ensemble)"}
    levels = subgroups.set_index(["variable", "level"])
    for key, test_set in ((("all cases", "all cases"), "external_pooled"), (("cohort", "external_centre2"),
                          "external_centre2"), (("cohort", "external_centre3"), "external_centre3")):
        row, mine = levels.loc[key], own.loc[("ALL", test_set)]
        assert row.n_patients == own_overall.loc[("ALL", test_set), "n"]
        for column in ("sensitivity", "sensitivity_lo", "sensitivity_hi", "specificity", "specificity_lo",
                       "specificity_hi", "auc"):
            same(row[column], mine[column], (key, column))
        same(row.accuracy, own_overall.loc[("ALL", test_set), "accuracy"], (key, "accuracy"))
    # calibration of the positive class on every test set; Brier by scikit-learn
    calibration = pd.read_csv(results / "tables/calibration.csv").set_index("test_set")
    assert list(calibration.index) == ["internal_test", *BINARY_EXTERNAL_SETS]
    assert set(calibration["class"]) == {"ependymoma"}
    case_level = pd.read_parquet(results / "case_level/resnet10t.parquet")
    external = case_level[(case_level.input == "ALL") & (case_level.model == "ensemble")]
    for test_set in BINARY_EXTERNAL_SETS:
        rows = external if test_set == "external_pooled" else external[external.cohort == test_set]
        assert calibration.loc[test_set, "n"] == len(rows) == own_overall.loc[("ALL", test_set), "n"]
        same(calibration.loc[test_set, "brier"], brier_score_loss(rows.label, rows.prob_ependymoma), test_set)
    curve = pd.read_csv(results / "tables/decision_curve.csv")
    assert set(curve["class"]) == {"ependymoma"} and set(curve.test_set) == {"external_pooled"}
