"""Paired-comparisons stage: which pairs, on which cases, and each row against an
independent computation (scikit-learn AUCs, a direct DeLong variance, scipy's exact
binomial test, statsmodels' Holm adjustment)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spinedx.stages import comparisons as stage

BACKBONES, INPUTS = ["netA", "netB"], ["T1", "T2", "ALL"]


def case_predictions(seed=0, n_internal=30, n_external=24, drop_t2=("E001",)) -> pd.DataFrame:
    """Case-level rows of two backbones x three inputs, both cohorts; one external patient
    lacks T2 (no T2 prediction)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, model, n, prefix in (("internal", "oof", n_internal, "I"), ("external", "ensemble", n_external, "E")):
        labels = np.arange(n) % 2
        for backbone_index, backbone in enumerate(BACKBONES):
            for input_index, input_ in enumerate(INPUTS):
                skill = 1.0 + 0.5 * input_index + 0.3 * backbone_index
                prob = 1 / (1 + np.exp(-(skill * (2 * labels - 1) + rng.normal(0, 1.2, n))))
                for k in range(n):
                    patient = f"{prefix}{k:03d}"
                    if input_ == "T2" and patient in drop_t2:
                        continue
                    rows.append({"backbone": backbone, "input": input_, "model": model, "patient_id": patient,
                                 "cohort": cohort, "label": int(labels[k]), "prob_ependymoma": 1 - prob[k],
                                 "prob_schwannoma": prob[k], "n_images": 2})
        # Fold models' rows must be ignored.
        rows.append({"backbone": "netA", "input": "ALL", "model": "fold0", "patient_id": f"{prefix}000",
                     "cohort": cohort, "label": 0, "prob_ependymoma": 0.0, "prob_schwannoma": 1.0, "n_images": 2})
    return pd.DataFrame(rows)


def direct_delong(labels, a, b):
    def components(score):
        positive, negative = score[labels == 1], score[labels == 0]
        psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    (a10, a01), (b10, b01) = components(a), components(b)
    m, n = a10.size, a01.size
    variance = (np.var(a10 - b10, ddof=1) / m) + (np.var(a01 - b01, ddof=1) / n)
    return a10.mean() - b10.mean(), math.sqrt(variance)


def test_pairs_cases_and_every_row_against_independent_computations():
    from scipy.stats import binomtest, norm
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.multitest import multipletests

    predictions = case_predictions()
    table = stage.comparisons_table(predictions, BACKBONES, INPUTS, "prob_schwannoma", 0.5, 0.95, "holm", "all")
    # 3 inputs x 1 backbone pair + 2 backbones x 3 input pairs = 9 comparisons x 3 metrics, per cohort.
    assert len(table) == 2 * 9 * 3 and list(table["cohort"].unique()) == ["external", "internal"]
    assert set(table["kind"]) == {"backbones", "inputs"}
    for row in table.itertuples():
        cohort_rows = predictions[(predictions["cohort"] == row.cohort)
                                  & (predictions["model"] == ("ensemble" if row.cohort == "external" else "oof"))]
        (backbone_a, input_a), (backbone_b, input_b) = (name.split("/") for name in (row.model_a, row.model_b))
        a = cohort_rows[(cohort_rows["backbone"] == backbone_a) & (cohort_rows["input"] == input_a)]
        b = cohort_rows[(cohort_rows["backbone"] == backbone_b) & (cohort_rows["input"] == input_b)]
        both = a.merge(b, on=["patient_id", "label"], suffixes=("_a", "_b"))
        assert row.n == (len(both) if row.metric == "auc" else
                         int((both["label"] == (1 if row.metric == "sensitivity" else 0)).sum()))
        labels = both["label"].to_numpy()
        score_a, score_b = both["prob_schwannoma_a"].to_numpy(), both["prob_schwannoma_b"].to_numpy()
        if row.metric == "auc":
            difference, se = direct_delong(labels, score_a, score_b)
            assert row.estimate_a == pytest.approx(roc_auc_score(labels, score_a), abs=1e-12)
            assert row.difference == pytest.approx(difference, abs=1e-12)
            assert row.p == pytest.approx(2 * norm.sf(abs(difference / se)), rel=1e-9)
        else:
            keep = labels == (1 if row.metric == "sensitivity" else 0)
            correct_a = (score_a[keep] > 0.5) == (row.metric == "sensitivity")
            correct_b = (score_b[keep] > 0.5) == (row.metric == "sensitivity")
            only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
            assert (row.only_a_correct, row.only_b_correct) == (only_a, only_b)
            expected = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
            assert row.p == pytest.approx(expected, rel=1e-9)
    # The patient without T2 is left out of T2's comparisons only.
    external = table[table["cohort"] == "external"]
    assert (external[external["comparison"].str.contains("T2") & (external["metric"] == "auc")]["n"] == 23).all()
    assert (external[~external["comparison"].str.contains("T2") & (external["metric"] == "auc")]["n"] == 24).all()
    for cohort, rows in table.groupby("cohort"):
        assert rows["p_adjusted"].to_numpy() == pytest.approx(multipletests(rows["p"], method="holm")[1], rel=1e-12)


def test_family_per_metric_and_bonferroni():
    from statsmodels.stats.multitest import multipletests

    table = stage.comparisons_table(case_predictions(seed=2), BACKBONES, INPUTS, "prob_schwannoma", 0.5, 0.95,
                                    "bonferroni", "metric")
    for (_, _), rows in table.groupby(["cohort", "metric"]):
        assert rows["p_adjusted"].to_numpy() == pytest.approx(multipletests(rows["p"], method="bonferroni")[1])
    assert table["adjustment"].str.startswith("bonferroni (within metric").all()


def test_the_reference_shape_takes_no_fusion_predictions(tmp_path):
    """A fused study is not of the reference shape: its comparisons (fusion vs image only,
    by the fusion stage's fusion_input) are the command multiclass_comparisons'."""
    from spinedx import config as configuration

    with pytest.raises(stage.InputError, match="multiclass_comparisons"):
        stage.main_stage(configuration.resolve({}), [], tmp_path / "out.csv", [str(tmp_path / "fusion.parquet")])


def test_one_sequence_compares_the_models_on_all_only():
    """A study of one sequence (e.g. a volume study's CT): ALL is that sequence's
    predictions again, so only ALL is compared and no pair is tested twice; a volume
    study's models take the backbones' place."""
    from spinedx.aggregation import distinct_inputs

    assert distinct_inputs(["CT", "ALL", "CT"]) == ["ALL"] and distinct_inputs(["CT"]) == ["CT"]
    assert distinct_inputs(INPUTS) == INPUTS
    predictions = case_predictions()
    predictions = predictions[predictions["input"].isin(["T1", "ALL"])].assign(
        input=lambda f: f["input"].replace("T1", "CT"),
        backbone=lambda f: f["backbone"].map({"netA": "2d_resnet10t", "netB": "2.5d_resnet10t"}))
    table = stage.comparisons_table(predictions, ["2d_resnet10t", "2.5d_resnet10t"],
                                    distinct_inputs(predictions["input"]), "prob_schwannoma", 0.5, 0.95,
                                    "holm", "all")
    assert set(table["kind"]) == {"backbones"} and len(table) == 2 * 3  # 2 cohorts x (AUC, Se, Sp)
    assert set(table["model_a"]) == {"2d_resnet10t/ALL"} and set(table["model_b"]) == {"2.5d_resnet10t/ALL"}


# --- N classes ---------------------------------------------------------------------------

NCLASSES = ["schwannoma", "meningioma", "astrocytoma"]
PROB_COLUMNS = [f"prob_{c}" for c in NCLASSES]


def nclass_case_predictions(seed=3) -> pd.DataFrame:
    """Hold-out shape: internal patients tested by repeat 0 or 1 (I000 by both: the first
    repeat scores it), validation rows of each repeat (never scored), two external cohorts
    scored by the ensemble (repeat models' own rows ignored); two backbones x two inputs."""
    rng = np.random.default_rng(seed)
    rows = []
    sets = [("internal", f"holdout{r}", "internal_test", [f"I{k:03d}" for k in range(30) if k % 2 == r or k == 0])
            for r in (0, 1)]
    sets += [("internal", "holdout0", "validation", [f"V{k:03d}" for k in range(9)])]
    sets += [(cohort, model, cohort, [f"{cohort[-1]}{k:03d}" for k in range(15)])
             for cohort in ("external_c2", "external_c3") for model in ("ensemble", "holdout1")]
    for cohort, model, prediction_set, patients in sets:
        labels = np.array([int(p[1:]) % 3 for p in patients])
        for backbone_index, backbone in enumerate(BACKBONES):
            for input_index, input_ in enumerate(["T1", "ALL"]):
                logits = rng.normal(size=(len(patients), 3))
                logits[np.arange(len(patients)), labels] += 1.0 + input_index + 0.5 * backbone_index
                probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
                for k, patient in enumerate(patients):
                    rows.append({"backbone": backbone, "input": input_, "model": model,
                                 "prediction_set": prediction_set, "patient_id": patient, "cohort": cohort,
                                 "label": int(labels[k]), **dict(zip(PROB_COLUMNS, probs[k]))})
    return pd.DataFrame(rows)


def test_nclass_pairs_on_every_test_set_scored_as_the_final_system_is():
    from sklearn.metrics import accuracy_score, roc_auc_score
    from statsmodels.stats.multitest import multipletests

    from spinedx.final_system import evaluated_sets, scoring_predictions
    from spinedx.task import MulticlassTask

    predictions = nclass_case_predictions()
    task = MulticlassTask(tuple(NCLASSES))
    table = stage.multiclass_comparisons_table(predictions, BACKBONES, ["T1", "ALL"], task, 0.95, "holm", "all")
    assert list(table.columns) == stage.MULTICLASS_TABLE_COLUMNS
    assert list(table["test_set"].unique()) == ["internal_test", "external_c2", "external_c3", "external_pooled"]
    # 2 inputs x 1 backbone pair + 2 backbones x 1 input pair = 4 pairs x (accuracy + 3 AUC + 3 sensitivity)
    assert len(table) == 4 * 4 * 7 and set(table["kind"]) == {"backbones", "inputs"}
    n = table[table.metric == "accuracy"].groupby("test_set")["n"].first()
    assert n.to_dict() == {"internal_test": 30, "external_c2": 15, "external_c3": 15, "external_pooled": 30}
    for row in table[table.metric.isin(["accuracy", "auc"])].itertuples():
        (backbone_a, input_a), (backbone_b, input_b) = (name.split("/") for name in (row.model_a, row.model_b))
        a = dict(evaluated_sets(scoring_predictions(predictions, backbone_a, input_a)))[row.test_set]
        b = dict(evaluated_sets(scoring_predictions(predictions, backbone_b, input_b)))[row.test_set]
        assert set(a["model"]) <= {"ensemble", "holdout0", "holdout1"} and "validation" not in set(a.prediction_set)
        both = a.merge(b, on=["patient_id", "label"], suffixes=("_a", "_b"))
        probs_a = both[[f"{c}_a" for c in PROB_COLUMNS]].to_numpy()
        if row.metric == "accuracy":
            assert row.estimate_a == pytest.approx(accuracy_score(both.label, probs_a.argmax(axis=1)), abs=1e-15)
        else:
            index = NCLASSES.index(getattr(row, "_7"))
            assert row.estimate_a == pytest.approx(roc_auc_score(both.label == index, probs_a[:, index]), abs=1e-12)
    for _, rows in table.groupby("test_set"):
        np.testing.assert_allclose(rows["p_adjusted"], multipletests(rows["p"], method="holm")[1], rtol=1e-12)
    assert table["adjustment"].str.contains("of test set").all()


def test_nclass_fusion_against_image_only_on_test_rows():
    predictions = nclass_case_predictions()
    fused_rows = predictions[predictions["input"] == "ALL"].rename(columns={"input": "fusion_input"})
    fused_rows = fused_rows[fused_rows["prediction_set"] != "validation"]  # the fusion stage writes test rows only
    fusion = pd.concat([fused_rows.assign(fusion_input=name) for name in ("image", "clinical", "image+clinical")],
                       ignore_index=True)
    shifted = fusion["fusion_input"] == "image+clinical"
    fusion.loc[shifted, PROB_COLUMNS] = fusion.loc[shifted, PROB_COLUMNS[::-1]].to_numpy()
    from spinedx.task import MulticlassTask

    table = stage.multiclass_comparisons_table(predictions, BACKBONES, ["T1", "ALL"], MulticlassTask(tuple(NCLASSES)),
                                               0.95, "holm", "all", fusion)
    fused = table[table["kind"] == "fusion"]
    assert set(fused["model_a"]) == {"netA/image+clinical", "netB/image+clinical"}
    assert set(fused["model_b"]) == {"netA/image", "netB/image"}
    assert set(fused["test_set"]) == {"internal_test", "external_c2", "external_c3", "external_pooled"}
    # image-only equals the ALL input's case-level predictions: the same estimate_b as ALL's rows
    plain = table[(table.kind == "inputs") & (table.model_a == "netA/T1") & (table.model_b == "netA/ALL")]
    joined = fused[fused.model_b == "netA/image"].merge(plain, on=["test_set", "metric", "class"])
    assert len(joined) == 4 * 7 and np.allclose(joined["estimate_b_x"], joined["estimate_b_y"], equal_nan=True)
    with pytest.raises(stage.InputError, match="fusion predictions lack"):
        stage.multiclass_comparisons_table(predictions, BACKBONES, ["ALL"], MulticlassTask(tuple(NCLASSES)), 0.95,
                                           "holm", "all", fusion.drop(columns="fusion_input"))


# --- two classes of another shape (hold-out, several external cohorts, fusion) ---------

BINARY = ["schwannoma", "ependymoma"]  # the last class is the positive one


def binary_holdout_case_predictions(seed=5) -> pd.DataFrame:
    """Two classes in the hold-out shape of :func:`nclass_case_predictions`: internal test
    patients of repeat 0 or 1, validation rows (never scored), two external cohorts."""
    frame = nclass_case_predictions(seed)
    rng = np.random.default_rng(seed)
    frame["label"] = frame["patient_id"].str[1:].astype(int) % 2
    skill = np.where(frame["input"] == "ALL", 0.9, 0.4) + np.where(frame["backbone"] == "netB", 0.3, 0.0)
    positive = 1 / (1 + np.exp(-(skill * (2 * frame["label"] - 1) + rng.normal(0, 1.2, len(frame)))))
    return frame.drop(columns=PROB_COLUMNS).assign(prob_schwannoma=1 - positive, prob_ependymoma=positive)


def test_two_classes_of_another_shape_get_delong_and_mcnemar_rows_on_every_test_set():
    """The N-class path with two classes: per test set (internal test, each external
    cohort, pooled) the two-class rows a reader expects, AUC by DeLong and sensitivity /
    specificity by exact McNemar at decision.threshold (0.4 here, not the argmax's 0.5),
    against scikit-learn, a direct DeLong variance and scipy's exact binomial test."""
    from scipy.stats import binomtest, norm
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.multitest import multipletests

    from spinedx.final_system import evaluated_sets, scoring_predictions
    from spinedx.task import BinaryTask

    predictions = binary_holdout_case_predictions()
    task = BinaryTask(tuple(BINARY), 0.4)
    table = stage.multiclass_comparisons_table(predictions, BACKBONES, ["T1", "ALL"], task, 0.95, "holm", "all")
    assert list(table.columns) == stage.MULTICLASS_TABLE_COLUMNS
    assert list(table["test_set"].unique()) == ["internal_test", "external_c2", "external_c3", "external_pooled"]
    assert len(table) == 4 * 4 * 3 and set(table["metric"]) == {"auc", "sensitivity", "specificity"}
    assert set(table["class"]) == {"ependymoma"}
    for row in table.itertuples():
        (backbone_a, input_a), (backbone_b, input_b) = (name.split("/") for name in (row.model_a, row.model_b))
        a = dict(evaluated_sets(scoring_predictions(predictions, backbone_a, input_a)))[row.test_set]
        b = dict(evaluated_sets(scoring_predictions(predictions, backbone_b, input_b)))[row.test_set]
        both = a.merge(b, on=["patient_id", "label"], suffixes=("_a", "_b"))
        labels = both["label"].to_numpy()
        score_a, score_b = both["prob_ependymoma_a"].to_numpy(), both["prob_ependymoma_b"].to_numpy()
        if row.metric == "auc":
            difference, se = direct_delong(labels, score_a, score_b)
            assert row.n == len(both)
            assert row.estimate_a == pytest.approx(roc_auc_score(labels, score_a), abs=1e-12)
            # both AUCs 1 on a small test set: no variance, nothing to test (p = 1)
            assert row.p == pytest.approx(2 * norm.sf(abs(difference / se)) if se > 0 else 1.0, rel=1e-9)
        else:
            keep = labels == (1 if row.metric == "sensitivity" else 0)
            correct_a = (score_a[keep] > 0.4) == (row.metric == "sensitivity")
            correct_b = (score_b[keep] > 0.4) == (row.metric == "sensitivity")
            only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
            assert (row.n, row.only_a_correct, row.only_b_correct) == (int(keep.sum()), only_a, only_b)
            assert row.estimate_a == pytest.approx(correct_a.mean(), abs=1e-15)
            assert row.p == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b
                                          else 1.0, rel=1e-9)
    for _, rows in table.groupby("test_set"):
        np.testing.assert_allclose(rows["p_adjusted"], multipletests(rows["p"], method="holm")[1], rtol=1e-12)


def test_two_class_fusion_is_compared_by_the_fusion_stages_fusion_input():
    """The fusion stage writes ``fusion_input`` (image, clinical, image+clinical): the
    two-class fused model against image only on every test set (the stacker's own rows,
    validation, never scored), the names owned by spinedx.stats.fusion."""
    from spinedx.stats.fusion import FUSED, FUSION_INPUTS, IMAGE_ONLY
    from spinedx.task import BinaryTask

    predictions = binary_holdout_case_predictions()
    fused_rows = predictions[predictions["input"] == "ALL"].rename(columns={"input": "fusion_input"})
    fusion = pd.concat([fused_rows.assign(fusion_input=name) for name in FUSION_INPUTS], ignore_index=True)
    better = fusion["fusion_input"] == FUSED
    fusion.loc[better, "prob_ependymoma"] = np.clip(fusion.loc[better, "label"] * 0.5 + 0.25
                                                    + 0.3 * (fusion.loc[better, "prob_ependymoma"] - 0.5), 0, 1)
    fusion.loc[better, "prob_schwannoma"] = 1 - fusion.loc[better, "prob_ependymoma"]
    table = stage.multiclass_comparisons_table(predictions, BACKBONES, ["T1", "ALL"], BinaryTask(tuple(BINARY), 0.5),
                                               0.95, "holm", "all", fusion)
    fused = table[table["kind"] == "fusion"]
    assert set(fused["model_a"]) == {f"netA/{FUSED}", f"netB/{FUSED}"}
    assert set(fused["model_b"]) == {f"netA/{IMAGE_ONLY}", f"netB/{IMAGE_ONLY}"}
    assert set(fused["test_set"]) == {"internal_test", "external_c2", "external_c3", "external_pooled"}
    assert len(fused) == 2 * 4 * 3
    # image only is the ALL input's predictions here: the same estimate_b as the ALL rows
    plain = table[(table.kind == "inputs") & (table.model_a == "netA/T1") & (table.model_b == "netA/ALL")]
    joined = fused[fused.model_b == f"netA/{IMAGE_ONLY}"].merge(plain, on=["test_set", "metric", "class"])
    assert len(joined) == 4 * 3 and np.allclose(joined["estimate_b_x"], joined["estimate_b_y"])
    auc = fused[(fused.metric == "auc") & (fused.test_set == "external_pooled")]
    assert (auc["estimate_a"] == 1.0).all() and (auc["difference"] >= 0).all()
