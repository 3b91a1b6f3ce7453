"""Study shapes beyond the reference study (issue 13), stage by stage on hand-made data:
N-class task and decisions, hold-out splits, named external cohorts, labels from the
annotation, planes, ensembling and case level of hold-out models, the N-class tables
(pinned against scikit-learn), clinical fusion (leak canary at the stage level), bundle
and model card of a hold-out study, configuration checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_recall_fscore_support, roc_auc_score

from conftest import write_labelme
from spinedx import config as configuration
from spinedx import paths
from spinedx.aggregation import aggregate, ensemble
from spinedx.config import ConfigError
from spinedx.errors import InputError
from spinedx.readers.cases import read_cases
from spinedx.splitting import (check_holdout, holdout_shares, make_holdout, model_count, model_partitions,
                               partition_counts, read_splits, split_indices, write_folds)
from spinedx.stages import annotations, fusion, multiclass_evaluation
from spinedx.task import BinaryTask, MulticlassTask, task_from_config

CLASSES = ["schwannoma", "meningioma", "astrocytoma", "ependymoma", "metastasis"]


def resolve(**overrides):
    return configuration.resolve(overrides)


# --- task -----------------------------------------------------------------------------

def test_more_than_two_classes_decide_by_argmax_ties_to_the_earlier_class():
    task = task_from_config(resolve(classes=["a", "b", "c"]))
    assert isinstance(task, MulticlassTask) and task.probability_columns == ["prob_a", "prob_b", "prob_c"]
    frame = pd.DataFrame({"prob_a": [0.2, 0.4, 0.1], "prob_b": [0.5, 0.4, 0.1], "prob_c": [0.3, 0.2, 0.8]})
    assert task.decide(frame).tolist() == [1, 0, 2]  # row 2: a and b tie, a is earlier
    assert task.decision_probability(frame).tolist() == [0.5, 0.4, 0.8]
    # Two classes keep the threshold on the positive (last) class.
    assert isinstance(task_from_config(resolve()), BinaryTask)


# --- hold-out splits -------------------------------------------------------------------

def cohort(per_class=14, classes=CLASSES, external=("external_centre2",), n_external=2):
    rows = [{"patient_id": f"I{c}{i:02d}", "diagnosis": name, "label": c, "cohort": "internal"}
            for c, name in enumerate(classes) for i in range(per_class)]
    rows += [{"patient_id": f"E{c}{i:02d}{k}", "diagnosis": name, "label": c, "cohort": centre}
             for k, centre in enumerate(external) for c, name in enumerate(classes) for i in range(n_external)]
    return pd.DataFrame(rows)


def test_holdout_cuts_each_class_within_one_patient_of_the_ratios():
    assert holdout_shares([7, 1, 2]) == pytest.approx([0.7, 0.1, 0.2])
    assert holdout_shares([4, 1, 0]) == pytest.approx([0.8, 0.2, 0.0])
    rng = np.random.default_rng(0)
    assert partition_counts(10, holdout_shares([7, 1, 2]), rng).tolist() == [7, 1, 2]
    assert partition_counts(5, holdout_shares([4, 1, 0]), rng).tolist() == [4, 1, 0]
    for n in range(1, 40):  # floors of the exact shares, the rest to the largest remainders
        counts = partition_counts(n, holdout_shares([7, 1, 2]), rng)
        assert counts.sum() == n and (np.abs(counts - n * np.array([0.7, 0.1, 0.2])) < 1).all()
    assert partition_counts(14, holdout_shares([7, 1, 2]), rng).tolist() == [10, 1, 3]  # 9.8, 1.4, 2.8
    with pytest.raises(ValueError, match="train and validation"):
        holdout_shares([8, 0, 2])
    with pytest.raises(ValueError, match="three numbers"):
        holdout_shares([8, 2])


def test_holdout_partitions_are_patient_grouped_stratified_persisted_and_seeded(tmp_path):
    cases = cohort()
    holdout = make_holdout(cases, [7, 1, 2], repeats=3, seed=40)
    assert list(holdout.columns) == ["patient_id", "diagnosis", "label", "repeat", "seed", "partition"]
    internal = set(cases.loc[cases.cohort == "internal", "patient_id"])
    for repeat, rows in holdout.groupby("repeat"):
        assert set(rows.patient_id) == internal and not rows.patient_id.duplicated().any()
        assert (rows.seed == 40 + repeat).all()
        # 14 patients per class: 9.8, 1.4, 2.8 -> 10, 1, 3 of every class.
        counts = rows.groupby(["partition", "diagnosis"]).size().unstack()
        assert (counts.loc["train"] == 10).all() and (counts.loc["validation"] == 1).all()
        assert (counts.loc["internal_test"] == 3).all()
    # Repeats differ; the same seed gives the same file.
    first, second = (holdout[holdout.repeat == r].set_index("patient_id").partition for r in (0, 1))
    assert not first.equals(second.reindex(first.index))
    write_folds(holdout, tmp_path / "holdout.tsv")
    pd.testing.assert_frame_equal(read_splits(tmp_path / "holdout.tsv"), make_holdout(cases, [7, 1, 2], 3, 40))


def test_check_holdout_names_repeat_partition_class_and_the_fix():
    cases = cohort()
    holdout = make_holdout(cases, [7, 1, 2], repeats=2, seed=1)
    broken = holdout.copy()
    validation = (broken.repeat == 1) & (broken.partition == "validation") & (broken.diagnosis == "astrocytoma")
    broken.loc[validation, "partition"] = "train"
    with pytest.raises(InputError, match=r"repeat 1, partition validation holds no patient of class\(es\) "
                                         r"\['astrocytoma'\]; add internal patients"):
        check_holdout(broken, cases, [7, 1, 2], 2)
    leaked = pd.concat([holdout, holdout.iloc[:1].assign(patient_id="E0000")])
    with pytest.raises(InputError, match="external patients in the hold-out"):
        check_holdout(leaked, cases, [7, 1, 2], 2)
    with pytest.raises(InputError, match="more than one partition"):
        check_holdout(pd.concat([holdout, holdout.iloc[:1].assign(partition="validation")]), cases, [7, 1, 2], 2)
    shifted = holdout.copy()
    moved = (shifted.repeat == 0) & (shifted.partition == "internal_test") & (shifted.diagnosis == "metastasis")
    shifted.loc[moved[moved].index[:2], "partition"] = "train"
    with pytest.raises(InputError, match="repeat 0: 12 metastasis patient.s. in train, more than one patient off"):
        check_holdout(shifted, cases, [7, 1, 2], 2)
    # A class too small for the partitions: the error comes with the fix.
    with pytest.raises(InputError, match="holds no patient of class"):
        make_holdout(cohort(per_class=3), [7, 1, 2], 1, 0)


def test_model_partitions_and_training_indices_of_a_holdout_repeat():
    cases = cohort()
    holdout = make_holdout(cases, [7, 1, 2], repeats=2, seed=3)
    images = pd.concat([cases.assign(image_id=cases.patient_id + f"/{k}") for k in range(2)], ignore_index=True)
    for repeat in (0, 1):
        part = model_partitions(images, holdout, repeat, "holdout.tsv")
        expected = images.patient_id.map(holdout[holdout.repeat == repeat].set_index("patient_id").partition)
        assert (part[images.cohort == "internal"] == expected[images.cohort == "internal"]).all()
        assert (part[images.cohort != "internal"] == "external").all()
        train, validation = split_indices(images, holdout, repeat, "holdout.tsv")
        assert set(part[train]) == {"train"} and set(part[validation]) == {"validation"}
    assert model_count({"scheme": "holdout", "repeats": 3, "n_folds": 5}) == 3
    assert model_count({"scheme": "kfold", "repeats": 3, "n_folds": 5}) == 5


# --- cohorts, labels from the annotation -------------------------------------------------

def test_named_external_cohorts_and_a_typo_named_in_the_error(tmp_path):
    path = tmp_path / "cases.csv"
    path.write_text("patient_id,diagnosis,cohort\nP1,a,internal\nP2,b,external_centre2\nP3,a,external_centre3\n")
    cases = read_cases(path, ["a", "b"], external_cohorts=["external_centre2", "external_centre3"])
    assert cases.cohort.tolist() == ["internal", "external_centre2", "external_centre3"]
    with pytest.raises(InputError, match=r"unknown cohort \['external_centre3'\].*data.external_cohorts"):
        read_cases(path, ["a", "b"], external_cohorts=["external_centre2"])


@pytest.fixture
def image_labelled(tmp_path):
    """Two dogs: lesion images labelled by their shape, one image without a shape."""
    images = tmp_path / "images"
    write_labelme(images / "D1" / "T2" / "a.json", "a.png", [[5, 4], [20, 18]],
                  shapes=[{"label": " disc extrusion ", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}])
    write_labelme(images / "D1" / "T2" / "b.json", "b.png", None, shapes=[])
    write_labelme(images / "D2" / "T2" / "c.json", "c.png", [[2, 2], [9, 9]],
                  shapes=[{"label": "IVDP", "points": [[2, 2], [9, 9]], "shape_type": "rectangle"}])
    cases = tmp_path / "cases.csv"
    cases.write_text("patient_id,diagnosis,cohort\nD1,IVDE,internal\nD2,IVDP,external\n")
    config = resolve(classes=["unremarkable", "IVDE", "IVDP"], sequences={"T2": ["T2"]},
                     labels={"source": "annotation", "reference_class": "unremarkable",
                             "shape_labels": {"IVDE": ["IVDE", "Disc extrusion"]}},
                     preprocessing={"crop": "image"})
    return images, cases, config


def test_labels_from_the_annotation_map_shape_labels_and_shapeless_images(image_labelled):
    images, cases, config = image_labelled
    table = annotations.tabulate(images, cases, config, "T2").set_index("image_id")
    assert table.label.to_dict() == {"D1/T2/a": 1, "D1/T2/b": 0, "D2/T2/c": 2}
    assert table.loc["D1/T2/b", ["x0", "y0", "x1", "y1"]].isna().all()  # no lesion, no box
    assert table.shape_label.fillna("-").to_dict() == {"D1/T2/a": "disc extrusion", "D1/T2/b": "-",
                                                       "D2/T2/c": "IVDP"}
    assert set(table.diagnosis) == {"IVDE", "IVDP"}  # the patient's, for the splits


def test_an_unknown_shape_label_names_the_file_the_label_and_the_config_key(image_labelled):
    images, cases, config = image_labelled
    write_labelme(images / "D2" / "T2" / "d.json", "d.png", None,
                  shapes=[{"label": "fracture", "points": [[1, 1], [8, 8]], "shape_type": "rectangle"}])
    with pytest.raises(InputError, match=r"d.json: shape label 'fracture' maps to no class .*labels.shape_labels"):
        annotations.tabulate(images, cases, config, "T2")


def test_labels_from_cases_still_require_a_rectangle(image_labelled):
    images, cases, config = image_labelled
    config = {**config, "labels": {**config["labels"], "source": "cases"}}
    with pytest.raises(InputError, match="b.json: expected exactly one rectangle"):
        annotations.tabulate(images, cases, {**config, "classes": ["IVDE", "IVDP"]}, "T2")


@pytest.mark.parametrize("overrides, message", [
    ({"labels": {"source": "annotation", "reference_class": "a"}, "preprocessing": {"crop": "box"}},
     "needs preprocessing.crop: image"),
    ({"labels": {"source": "annotation"}, "preprocessing": {"crop": "image"}}, "needs labels.reference_class"),
    ({"labels": {"reference_class": "z"}}, "reference_class 'z' is not one of classes"),
    ({"labels": {"shape_labels": {"a": ["x"], "b": ["X "]}}}, "shape label 'X ' maps to both 'a' and 'b'"),
    ({"planes": {"T1": ["T2"]}}, "plane 'T1' has the name of a sequence"),
    ({"planes": {"sagittal": ["T9"]}}, r"plane 'sagittal' names \['T9'\]"),
    ({"fusion": {"enabled": True}}, "fusion.enabled needs covariates"),
    ({"fusion": {"enabled": True, "numeric": ["age"], "categorical": ["age"]}}, "both fusion.numeric"),
    ({"splits": {"scheme": "holdout", "ratios": [7, 0, 3]}}, "train and validation need a share"),
    ({"data": {"external_cohorts": ["internal"]}}, "invalid configuration"),
])
def test_study_shape_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(classes=["a", "b", "c"], **overrides)


# --- ensembling and case level of hold-out models ----------------------------------------

def repeat_table(repeat, external, internal):
    """Inference rows of one hold-out repeat: external (patient, p) and internal (patient, role, p)."""
    rows = [dict(image_id=f"{p}/0", patient_id=p, sequence="T1", cohort=cohort, label=0, fold=repeat,
                 role="external", prob_a=q, prob_b=1 - q) for p, cohort, q in external]
    rows += [dict(image_id=f"{p}/0", patient_id=p, sequence="T1", cohort="internal", label=1, fold=repeat,
                  role=role, prob_a=q, prob_b=1 - q) for p, role, q in internal]
    return pd.DataFrame(rows)


def test_holdout_ensemble_keeps_each_repeat_and_averages_the_external_cohorts():
    predictions = pd.concat([
        repeat_table(0, [("E1", "c2", 0.2), ("E2", "c3", 0.6)], [("I1", "validation", 0.3), ("I2", "internal_test", 0.9)]),
        repeat_table(1, [("E1", "c2", 0.4), ("E2", "c3", 0.8)], [("I2", "validation", 0.5), ("I1", "internal_test", 0.1)]),
    ])
    out = ensemble(predictions, "net", 2, prob_columns=["prob_a", "prob_b"], split_scheme="holdout")
    mean = out[out.model == "ensemble"].set_index("patient_id")
    assert mean.prob_a.to_dict() == pytest.approx({"E1": 0.3, "E2": 0.7})
    assert mean.prediction_set.to_dict() == {"E1": "c2", "E2": "c3"}
    internal = out[out.cohort == "internal"].set_index(["model", "patient_id"])
    assert internal.prediction_set.to_dict() == {("holdout0", "I1"): "validation", ("holdout0", "I2"): "internal_test",
                                                 ("holdout1", "I2"): "validation", ("holdout1", "I1"): "internal_test"}
    assert set(out.model) == {"holdout0", "holdout1", "ensemble"}
    with pytest.raises(InputError, match=r"expected predictions of hold-out repeats 0..2"):
        ensemble(predictions, "net", 3, prob_columns=["prob_a", "prob_b"], split_scheme="holdout")
    cases = aggregate(out, ["prob_a", "prob_b"], planes={"sagittal": ["T1"]})
    assert set(cases.input) == {"T1", "sagittal", "ALL"} and "prediction_set" in cases.columns
    assert cases[cases.input == "sagittal"].drop(columns="input").reset_index(drop=True).equals(
        cases[cases.input == "ALL"].drop(columns="input").reset_index(drop=True))


# --- the N-class tables, pinned against scikit-learn --------------------------------------

def synthetic_predictions(seed=0, n_per_class=12, classes=("a", "b", "c"), cohorts=("c2", "c3")):
    """Ensembled image rows (two images per patient) of an out-of-fold set and two external
    cohorts, with probabilities that carry the label."""
    rng = np.random.default_rng(seed)
    rows = []
    for set_name, model, cohort in [("oof", "oof", "internal"), *((c, "ensemble", c) for c in cohorts)]:
        for label in range(len(classes)):
            for i in range(n_per_class):
                patient = f"{cohort}-{label}-{i}"
                for image in range(2):
                    logits = rng.normal(0, 1, len(classes))
                    logits[label] += 1.2
                    probs = np.exp(logits) / np.exp(logits).sum()
                    rows.append({"backbone": "net", "sequence": ["T1", "T2"][image], "image_id": f"{patient}/{image}",
                                 "patient_id": patient, "cohort": cohort, "label": label, "model": model,
                                 "prediction_set": set_name, **{f"prob_{c}": p for c, p in zip(classes, probs)}})
    return pd.DataFrame(rows)


def evaluation_config(classes=("a", "b", "c"), **overrides):
    base = {"classes": list(classes), "sequences": {"T1": ["T1"], "T2": ["T2"]},
            "data": {"external_cohorts": ["c2", "c3"]}, "evaluation": {"bootstrap_replicates": 200},
            "planes": {"sag": ["T1", "T2"]}, "labels": {"reference_class": "a"}}
    return resolve(**{**base, **overrides})


def test_multiclass_tables_agree_with_scikit_learn_and_keep_cohorts_apart():
    images = synthetic_predictions()
    config = evaluation_config()
    cases = aggregate(images, ["prob_a", "prob_b", "prob_c"], config["planes"])
    tables = multiclass_evaluation.build_tables(images, cases, None, config)
    overall = tables[paths.MULTICLASS_OVERALL]
    # Every level x input x prediction set, the pooled row because there are two cohorts.
    keys = set(zip(overall.level, overall.input, overall.prediction_set))
    for level in ("image", "case"):
        for input_ in ("T1", "T2", "sag", "ALL"):
            assert {(level, input_, s) for s in ("oof", "c2", "c3", "external_pooled")} <= keys
    per_class = tables[paths.MULTICLASS_PER_CLASS]
    for level, frame in (("image", images), ("case", cases[cases.input == "ALL"])):
        for prediction_set in ("c2", "external_pooled"):
            rows = (frame[frame.cohort != "internal"] if prediction_set == "external_pooled"
                    else frame[frame.prediction_set == prediction_set])
            probs = rows[["prob_a", "prob_b", "prob_c"]].to_numpy()
            truth, decided = rows.label.to_numpy(), probs.argmax(1)
            row = overall[(overall.level == level) & (overall.input == "ALL")
                          & (overall.prediction_set == prediction_set)].iloc[0]
            assert row.n == len(rows) and row.model == "ensemble"
            assert row.accuracy == pytest.approx(accuracy_score(truth, decided), abs=1e-12)
            assert row.macro_f1 == pytest.approx(f1_score(truth, decided, average="macro"), abs=1e-12)
            assert row.kappa == pytest.approx(cohen_kappa_score(truth, decided), abs=1e-12)
            assert row.macro_auc == pytest.approx(roc_auc_score(truth, probs, multi_class="ovr"), abs=1e-12)
            classes = per_class[(per_class.level == level) & (per_class.input == "ALL")
                                & (per_class.prediction_set == prediction_set)].set_index("class")
            precision, recall, f1, _ = precision_recall_fscore_support(truth, decided, labels=[0, 1, 2])
            assert classes.loc[["a", "b", "c"], "sensitivity"].to_numpy() == pytest.approx(recall, abs=1e-12)
            assert classes.loc[["a", "b", "c"], "ppv"].to_numpy() == pytest.approx(precision, abs=1e-12)
            assert classes.loc[["a", "b", "c"], "f1"].to_numpy() == pytest.approx(f1, abs=1e-12)
            assert (classes.f1_lo <= classes.f1).all() and (classes.f1 <= classes.f1_hi).all()
    # Image level: intervals from the patient bootstrap; case level: Wilson for proportions.
    assert set(overall[overall.level == "image"].proportion_intervals) == {"bootstrap"}
    assert set(overall[overall.level == "case"].proportion_intervals) == {"wilson"}
    assert set(overall.stratification) == {"none"}
    reference = tables[paths.MULTICLASS_REFERENCE]
    assert set(reference.pathology) == {"b", "c"} and set(reference.reference) == {"a"}
    confusion = tables[paths.MULTICLASS_CONFUSION]
    pooled = confusion[(confusion.level == "case") & (confusion.input == "ALL")
                       & (confusion.prediction_set == "external_pooled")]
    assert pooled["count"].sum() == 2 * 3 * 12 and len(pooled) == 9


def test_two_classes_keep_the_threshold_in_the_n_class_tables():
    images = synthetic_predictions(classes=("neg", "pos"), cohorts=("external",))
    config = evaluation_config(classes=("neg", "pos"), data={"external_cohorts": ["external"]},
                               decision={"threshold": 0.8}, labels={})
    overall = multiclass_evaluation.build_tables(images, None, None, config)[paths.MULTICLASS_OVERALL]
    rows = images[images.prediction_set == "external"]
    decided = (rows.prob_pos > 0.8).astype(int)
    row = overall[(overall.input == "ALL") & (overall.prediction_set == "external")].iloc[0]
    assert row.accuracy == pytest.approx(accuracy_score(rows.label, decided))
    assert "external_pooled" not in set(overall.prediction_set)  # one cohort: no pooled row


def test_holdout_repeats_are_summarised_by_mean_and_range():
    overall = pd.DataFrame({"level": "case", "backbone": "net", "input": "ALL", "prediction_set": "internal_test",
                            "model": ["holdout0", "holdout1", "holdout2"], "accuracy": [0.5, 0.7, 0.9],
                            "macro_f1": [0.4, np.nan, 0.6], "macro_auc": 0.8, "kappa": 0.1})
    summary = multiclass_evaluation.repeat_summary(overall).set_index("metric")
    assert summary.loc["accuracy", ["n_repeats", "mean", "min", "max"]].tolist() == pytest.approx([3, 0.7, 0.5, 0.9])
    assert summary.loc["macro_f1", ["mean", "min", "max"]].tolist() == pytest.approx([0.5, 0.4, 0.6])


# --- clinical fusion at the stage level -----------------------------------------------------

def fusion_case_level(seed=0, n_internal=60, n_external=40, classes=("a", "b", "c"), scheme="kfold"):
    """Case-level ALL rows (weakly informative image probabilities) and a cases table with
    an informative covariate (age) and a noise covariate (site)."""
    rng = np.random.default_rng(seed)
    rows, cases = [], []
    def add(patient, cohort, label, model, prediction_set):
        logits = rng.normal(0, 1, len(classes))
        logits[label] += 0.8
        probs = np.exp(logits) / np.exp(logits).sum()
        rows.append({"backbone": "net", "input": "ALL", "model": model, "prediction_set": prediction_set,
                     "patient_id": patient, "cohort": cohort, "label": label, "n_images": 2,
                     **{f"prob_{c}": p for c, p in zip(classes, probs)}})
    for i in range(n_internal + n_external):
        label = i % len(classes)
        internal = i < n_internal
        patient = f"{'I' if internal else 'E'}{i:03d}"
        cases.append({"patient_id": patient, "diagnosis": classes[label], "cohort": "internal" if internal else "ext",
                      "age": 40 + 12 * label + rng.normal(0, 6), "site": rng.choice(["x", "y"]),
                      "canary": label if not internal else int(rng.integers(len(classes)))})
        if internal and scheme == "kfold":
            add(patient, "internal", label, "oof", "oof")
        elif internal:
            add(patient, "internal", label, "holdout0", ["validation", "internal_test"][i % 2])
        else:
            for model in (["ensemble"] if scheme == "kfold" else ["holdout0"]):
                add(patient, "ext", label, model, "ext")
    return pd.DataFrame(rows), pd.DataFrame(cases)


def fusion_config(covariates=("age",), categorical=("site",), scheme="kfold"):
    return resolve(classes=["a", "b", "c"], fusion={"enabled": True, "numeric": list(covariates),
                                                    "categorical": list(categorical)},
                   splits={"scheme": scheme, "ratios": [4, 1, 0] if scheme == "holdout" else [7, 1, 2]})


def _accuracy(table, fusion_input, prediction_set="ext"):
    rows = table[(table.fusion_input == fusion_input) & (table.prediction_set == prediction_set)
                 & (table.model == "ensemble")]
    return float((rows[["prob_a", "prob_b", "prob_c"]].to_numpy().argmax(1) == rows.label).mean())


def test_fusion_fits_on_out_of_fold_rows_and_predicts_the_external_cohort():
    case_level, cases = fusion_case_level()
    table, coefficients = fusion.fuse(case_level, cases, fusion_config())
    assert set(table.fusion_input) == {"image", "clinical", "image+clinical"}
    assert set(table.prediction_set) == {"ext"} and set(table.model) == {"ensemble"}
    assert not set(table.patient_id) & set(case_level.loc[case_level.model == "oof", "patient_id"])
    assert set(coefficients.fitted_on) == {"ensemble:oof"}
    # The informative covariate helps: image + clinical beats image alone.
    assert _accuracy(table, "image+clinical") > _accuracy(table, "image")


def test_fusion_leak_canary_a_covariate_equal_to_the_test_labels_does_not_help():
    """``canary`` is the label on the external (test) patients and noise on the internal
    ones: a stacker that never sees test data cannot use it; one fitted on test rows
    would reach ~1.0. Positive control: the same canary on the fitting rows too is learnt."""
    case_level, cases = fusion_case_level(seed=3)
    clean, _ = fusion.fuse(case_level, cases, fusion_config(covariates=("age",), categorical=()))
    canary, _ = fusion.fuse(case_level, cases, fusion_config(covariates=("age",), categorical=("canary",)))
    for fused_input in ("clinical", "image+clinical"):
        assert abs(_accuracy(canary, fused_input) - _accuracy(clean, fused_input)) <= 0.1
        assert _accuracy(canary, fused_input) < 0.95
    leaked = cases.assign(canary=cases.diagnosis.map({"a": 0, "b": 1, "c": 2}))  # known to the fit too
    positive, _ = fusion.fuse(case_level, leaked, fusion_config(covariates=("age",), categorical=("canary",)))
    assert _accuracy(positive, "clinical") == 1.0


def test_holdout_fusion_fits_each_repeat_on_its_validation_patients_only():
    case_level, cases = fusion_case_level(scheme="holdout", n_internal=90)
    table, coefficients = fusion.fuse(case_level, cases, fusion_config(scheme="holdout"))
    assert set(coefficients.fitted_on) == {"holdout0:validation"}
    validation = set(case_level.loc[case_level.prediction_set == "validation", "patient_id"])
    assert not validation & set(table.patient_id)
    assert set(table.prediction_set) == {"internal_test", "ext"}
    # One repeat: the external ensemble is that repeat's fused prediction.
    ensemble_rows = table[table.model == "ensemble"].drop(columns="model").reset_index(drop=True)
    repeat_rows = table[(table.model == "holdout0") & (table.cohort == "ext")].drop(columns="model").reset_index(drop=True)
    pd.testing.assert_frame_equal(ensemble_rows, repeat_rows[ensemble_rows.columns])


def test_fusion_comparison_sets_the_fused_inputs_side_by_side():
    case_level, cases = fusion_case_level()
    fused, _ = fusion.fuse(case_level, cases, fusion_config())
    config = resolve(classes=["a", "b", "c"], sequences={"T1": ["T1"]}, data={"external_cohorts": ["ext"]},
                     evaluation={"bootstrap_replicates": 50}, fusion={"enabled": True, "numeric": ["age"]})
    images = case_level.assign(sequence="T1", image_id=case_level.patient_id).drop(columns=["input", "n_images"])
    tables = multiclass_evaluation.build_tables(images, case_level, fused, config)
    comparison = tables[paths.FUSION_COMPARISON]
    assert comparison.input.tolist() == ["ALL", "fusion_image", "fusion_clinical", "fusion_image+clinical"]
    assert set(comparison.prediction_set) == {"ext"}


# --- bundle of a hold-out study ----------------------------------------------------------

def test_holdout_models_are_named_and_bundled_by_their_scheme():
    study = paths.StudyPaths("r", "holdout")
    assert study.checkpoint("b", "T1", 1) == "r/models/b/T1/holdout1/best.pt"
    assert study.splits == "r/splits/holdout.tsv" and paths.StudyPaths("r").splits == "r/splits/folds.tsv"
    assert study.bundle.model("b", "T1", 0) == "r/bundle/models/b/T1/holdout0.pt"
    assert paths.bundle_model("b", "T1", 2) == "models/b/T1/fold2.pt"  # k-fold unchanged


def test_apply_bundle_takes_labels_planes_and_the_split_scheme(tmp_path):
    from spinedx.readers.bundle import apply_bundle

    released = resolve(classes=["u", "p", "q"], labels={"source": "annotation", "reference_class": "u"},
                       planes={"sag": ["T1"]}, preprocessing={"crop": "image"},
                       splits={"scheme": "holdout", "repeats": 3}, sequences={"T1": ["t1"]})
    card = {"config": {key: released[key] for key in ("classes", "sequences", "backbones", "preprocessing", "splits",
                                                      "training", "decision", "labels", "planes")}}
    (tmp_path / paths.BUNDLE_CARD_JSON).write_text(json.dumps(card))
    auditor = resolve(audit={"bundle": str(tmp_path)})
    apply_bundle(auditor)
    assert auditor["labels"] == released["labels"] and auditor["planes"] == {"sag": ["T1"]}
    assert (auditor["splits"]["scheme"], auditor["splits"]["repeats"]) == ("holdout", 3)


# --- Grad-CAM, figures, demo wiring, configs ------------------------------------------------

def test_gradcam_of_an_image_without_a_box_and_n_class_decisions():
    from spinedx.stages import gradcam

    row = pd.Series({"x0": np.nan, "y0": np.nan, "x1": np.nan, "y1": np.nan, "width": 6, "height": 4})
    cam = np.zeros((4, 6))
    cam[1, 4] = 1.0
    stats = gradcam.peak_statistics(cam, row, {"crop": "image"})
    assert (stats["peak_x"], stats["peak_y"]) == (4, 1) and pd.isna(stats["peak_in_box"])
    assert np.isnan(stats["box_fraction_of_image"]) and np.isnan(stats["cam_mass_in_box"])
    task = MulticlassTask(("u", "p", "q"))
    predictions = pd.DataFrame({"image_id": ["a", "b", "c"], "label": [0, 2, 1], "model": "ensemble",
                                "cohort": ["external", "external", "internal"],
                                "prob_u": [0.6, 0.1, 0.2], "prob_p": [0.3, 0.7, 0.5], "prob_q": [0.1, 0.2, 0.3]})
    decided = gradcam.image_decisions(predictions, task).set_index("image_id")
    assert decided.predicted.to_dict() == {"a": 0, "b": 1} and decided.correct.to_dict() == {"a": True, "b": False}
    assert decided.case_prob.to_dict() == pytest.approx({"a": 0.6, "b": 0.7})
    summary = decided.reset_index().assign(patient_id=["P1", "P2"], label=[0, 0], correct=True)
    assert gradcam.select_cases(summary, 2, task, "image_id").image_id.tolist() == ["b", "a"]  # most sure first


def test_n_class_figures_are_drawn_from_the_tables(tmp_path):
    from PIL import Image

    from spinedx.stages import multiclass_figures

    images = synthetic_predictions()
    config = evaluation_config(figures={"final_backbone": None}, backbones=["net"])
    cases = aggregate(images, ["prob_a", "prob_b", "prob_c"], config["planes"])
    tables = multiclass_evaluation.build_tables(images, cases, None, config)
    for name, table in tables.items():
        table.to_csv(tmp_path / paths.table_file(name), index=False)
    images.to_parquet(tmp_path / "images.parquet")
    cases.to_parquet(tmp_path / "cases.parquet")
    overall = tables[paths.MULTICLASS_OVERALL]
    assert multiclass_figures.test_sets(overall, "net", "case") == [
        ("oof", "oof"), ("c2", "ensemble"), ("c3", "ensemble"), ("external_pooled", "ensemble")]
    written = multiclass_figures.main_stage(config, tmp_path, [tmp_path / "images.parquet"],
                                            [tmp_path / "cases.parquet"], tmp_path / "figures")
    assert {p.name for p in written} == {f"{stem}{suffix}" for stem in (
        paths.MULTICLASS_ROC_FIGURE, paths.MULTICLASS_CONFUSION_FIGURE, paths.MULTICLASS_F1_FIGURE)
        for suffix in (".pdf", ".png")}
    for path in written:
        if path.suffix == ".png":
            assert min(Image.open(path).size) > 300


def test_n_class_figures_of_a_volume_study_show_its_best_model():
    """Volume studies name their models <mode>_<network> (2.5d_resnet10t): the figures'
    final system is chosen among those (a backbone name matched no row: an empty legend)."""
    from spinedx.stages import multiclass_figures

    config = resolve(data={"format": "volume"}, input_modes=["2d", "2.5d"], backbones=["resnet10t"],
                     classes=["osteoporotic", "malignant"])
    overall = pd.DataFrame({"level": "case", "input": "ALL", "model": "ensemble", "prediction_set": "external",
                            "backbone": ["2d_resnet10t", "2.5d_resnet10t"], "macro_auc": [0.7, 0.9]})
    assert multiclass_figures.choose_backbone(overall, config, "case") == "2.5d_resnet10t"
    assert multiclass_figures.choose_backbone(overall.assign(macro_auc=np.nan), config, "case") == "2d_resnet10t"


def test_the_demo_studies_are_chosen_by_config_and_the_spine_keeps_its_settings():
    from spinedx.demo import plan

    spine = plan.demo_settings(resolve())
    assert set(spine) == {"seed", "n_internal", "n_external", "slices_per_sequence", "image_height", "image_width",
                          "sequence_folders"}
    ismf = plan.demo_settings(configuration.load("config/ismf.yaml"))
    assert ismf["study"] == "ismf" and ismf["sequence_folders"] == {
        "T1W": "SAG_T1W", "T2W": "SAG_T2W", "T2FS": "SAG_T2FS", "AX-T2W": "AX_T2W"}
    files = plan.planned_files(ismf)
    assert set(files) == {"T1W", "T2W", "T2FS", "AX-T2W"} and files["AX-T2W"][0].startswith("ISMF-C1-001/AX_T2W/")
    canine = plan.demo_settings(configuration.load("config/canine.yaml"))
    assert canine["n_patients"]["internal"]["syringomyelia"] == 5 and plan.planned_files(canine)["T2_TRA"]
    with pytest.raises(ConfigError, match="config `sequences` lacks"):
        plan.demo_settings(resolve(demo_cohort={"study": "canine"}))


def test_the_schema_holds_the_demo_studies_snippet_defaults():
    import yaml

    from conftest import REPO

    snippets = yaml.safe_load((REPO / "docs/demo_schema_snippets.yaml").read_text())
    resolved = resolve()["demo_cohort"]
    for study, section in (("ismf", "ismf_demo"), ("canine", "canine_demo")):
        expected = {name: prop["default"] for name, prop in snippets[section]["properties"].items()
                    if name != "sequence_folders"}  # from config `sequences` instead
        assert resolved[study] == expected


@pytest.mark.parametrize("path", ["config/ismf.yaml", "config/canine.yaml", ".test/ismf.yaml", ".test/canine.yaml"])
def test_study_configs_resolve(path):
    config = configuration.load(path)
    assert len(config["classes"]) > 2 and config["splits"]["scheme"] == "holdout"


def test_validation_auc_is_binary_or_macro_one_vs_rest():
    from spinedx.stages.training import validation_auc

    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .3, .6], [.3, .4, .3], [.6, .3, .1], [.2, .2, .6]])
    assert validation_auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    binary = np.array([[.8, .2], [.3, .7], [.6, .4], [.1, .9]])
    assert validation_auc(np.array([0, 1, 1, 1]), binary) == pytest.approx(
        roc_auc_score([0, 1, 1, 1], binary[:, 1]))


def test_balanced_class_weights_weigh_each_training_class_alike():
    import torch

    from spinedx.stages.training import class_weights

    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])  # class 3 absent from training
    assert class_weights(labels, 4, "none", "cpu") is None
    weights = class_weights(labels, 4, "balanced", "cpu")
    assert weights.tolist() == pytest.approx([10 / 24, 10 / 8, 10 / 8, 0.0])
    # each present class contributes the same total weight to the loss
    totals = torch.bincount(labels, minlength=4).float() * weights
    assert totals[:3].tolist() == pytest.approx([totals[0].item()] * 3)


def test_the_schema_defaults_to_the_unweighted_loss_of_the_reference_study():
    assert configuration.load("config/config.yaml")["training"]["class_weights"] == "none"
