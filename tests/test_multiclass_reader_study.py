"""N-class reader studies (issue 15 for the ISMF-Net shape): the accuracy figure of merit
of the Obuchowski-Rockette analysis, pooled reader metrics and the aided - unaided gain,
the N-class readers.csv, the demo readers, N-class subgroups and the hold-out participant
flow. Every statistic against an independent computation: scikit-learn's metrics, a
jackknife written out case by case, the Dorfman-Berbaum-Metz ANOVA of pseudovalues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score,
                             multilabel_confusion_matrix, recall_score)

from spinedx.errors import InputError
from spinedx.stats import mrmc
from spinedx.stats.multiclass import case_bootstrap_weights, confusion_matrix, confusion_metrics, multiclass_tables
from spinedx.stats.multiclass_readers import condition_gain, pooled_reader_metrics
from test_stats_mrmc import dbm_tests

CLASSES = ["schwannoma", "meningioma", "astrocytoma", "ependymoma", "metastasis"]


def reader_decisions(n_readers=4, n_cases=40, n_classes=5, skill=(0.5, 0.7), shift=0.0, seed=0):
    """truth (c,) and decisions (t=2 conditions, r, c): each reader right with probability
    skill (+ shift in the second condition) + the case's ease in that condition (shared by
    every reader: hard cases are hard for all; partly changed by the condition), otherwise a
    random other class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_cases)
    ease = rng.normal(0, 0.2, n_cases) + rng.normal(0, 0.2, (2, n_cases))
    decisions = np.empty((2, n_readers, n_cases), dtype=int)
    for i in range(2):
        for j in range(n_readers):
            p = np.clip(np.linspace(*skill, n_readers)[j] + shift * i + ease[i], 0, 1)
            right = rng.random(n_cases) < p
            other = (truth + rng.integers(1, n_classes, n_cases)) % n_classes
            decisions[i, j] = np.where(right, truth, other)
    return truth, decisions


def long_table(truth, decisions, modalities=("unaided", "aided")):
    rows = [{"modality": modalities[i], "reader": f"R{j}", "case": f"C{k:03d}", "truth": int(truth[k]),
             "rating": int(decisions[i, j, k])}
            for i in range(decisions.shape[0]) for j in range(decisions.shape[1]) for k in range(truth.size)]
    return pd.DataFrame(rows)


# --- the accuracy figure of merit of the OR analysis -------------------------------------

def test_accuracy_jackknife_covariance_equals_the_case_by_case_jackknife():
    truth, decisions = reader_decisions(n_readers=3, n_cases=17, seed=4)
    ratings = decisions.reshape(6, 17)
    c = truth.size
    by_hand = np.empty((6, c))
    for k in range(c):  # each case left out, accuracy by scikit-learn
        keep = np.arange(c) != k
        by_hand[:, k] = [accuracy_score(truth[keep], reading[keep]) for reading in ratings]
    deviations = by_hand - by_hand.mean(axis=1, keepdims=True)
    expected = (c - 1) / c * deviations @ deviations.T
    assert mrmc.jackknife_covariance(truth, ratings, mrmc.ACCURACY) == pytest.approx(expected, abs=1e-15)
    # A figure-of-merit callback without a closed-form jackknife is recomputed per case.
    generic = mrmc.FigureOfMerit("accuracy", lambda t, r: (r == t).mean(axis=1), binary_truth=False)
    assert mrmc.jackknife_covariance(truth, ratings, generic) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("n_readers, n_cases, shift, seed", [(4, 30, 0.15, 1), (6, 25, 0.0, 2), (3, 40, 0.1, 3)])
def test_or_on_accuracy_equals_dbm_on_accuracy_pseudovalues(n_readers, n_cases, shift, seed):
    truth, decisions = reader_decisions(n_readers, n_cases, shift=shift, seed=seed)
    data = long_table(truth, decisions)
    # DBM pseudovalues of accuracy, leave-one-out by scikit-learn (modalities sorted: aided, unaided).
    pseudo = np.empty((2, n_readers, n_cases))
    for i, modality in enumerate([1, 0]):
        for j in range(n_readers):
            full = accuracy_score(truth, decisions[modality, j])
            for k in range(n_cases):
                keep = np.arange(n_cases) != k
                pseudo[i, j, k] = n_cases * full - (n_cases - 1) * accuracy_score(truth[keep],
                                                                                   decisions[modality, j][keep])
    dbm = dbm_tests(pseudo)
    random = mrmc.obuchowski_rockette(data, analysis="RRRC", fom="accuracy")
    # The FRRC identity below holds where OR does not truncate cov2 - cov3 at 0 (readers
    # agree on which cases are hard, as the simulation's shared case ease makes them).
    components = random.variance_components
    assert components["cov2"] > components["cov3"]
    assert random.figure_of_merit == "accuracy"
    test = random.global_test
    assert (test["statistic"], test["df2"], test["p"]) == pytest.approx(dbm["RRRC"], rel=1e-9)
    fixed_readers = mrmc.obuchowski_rockette(data, analysis="FRRC", fom=mrmc.ACCURACY).global_test
    assert fixed_readers["statistic"] / fixed_readers["df1"] == pytest.approx(dbm["FRRC"], rel=1e-9)
    fixed_cases = mrmc.obuchowski_rockette(data, analysis="RRFC", fom=mrmc.ACCURACY).global_test
    assert (fixed_cases["statistic"], fixed_cases["p"]) == pytest.approx(dbm["RRFC"], rel=1e-9)
    # Reader and modality figures of merit are accuracies (scikit-learn).
    readers = random.reader_fom.set_index(["modality", "reader"])["fom"]
    assert readers[("unaided", "R0")] == pytest.approx(accuracy_score(truth, decisions[0, 0]), abs=1e-15)
    modality = random.modality_fom.set_index("modality")["fom"]
    assert modality["aided"] == pytest.approx(np.mean([accuracy_score(truth, d) for d in decisions[1]]), abs=1e-15)
    assert "auc" not in random.reader_fom.columns


def test_auc_stays_the_default_and_delong_is_auc_only():
    data = mrmc.simulate_roe_metz(4, 15, 15, seed=5)
    result = mrmc.obuchowski_rockette(data)
    assert result.figure_of_merit == "auc" and (result.reader_auc["auc"] == result.reader_auc["fom"]).all()
    truth, decisions = reader_decisions(seed=6)
    with pytest.raises(InputError, match="DeLong covariances exist for the AUC only"):
        mrmc.obuchowski_rockette(long_table(truth, decisions), fom="accuracy", covariance="delong")
    with pytest.raises(InputError, match="must be 0 or 1"):
        mrmc.obuchowski_rockette(long_table(truth, decisions))  # five classes are no AUC truth
    with pytest.raises(InputError, match="figure of merit must be one of"):
        mrmc.obuchowski_rockette(data, fom="kappa")


# --- N-class metrics of confusion matrices ------------------------------------------------

def sklearn_metrics(truth, decided, n_classes=5) -> dict:
    labels = list(range(n_classes))
    matrices = multilabel_confusion_matrix(truth, decided, labels=labels)  # [[tn, fp], [fn, tp]] per class
    present_neg = matrices[:, 0].sum(axis=1) > 0
    specificity = matrices[present_neg, 0, 0] / matrices[present_neg, 0].sum(axis=1)
    present = np.isin(labels, truth)
    return {"accuracy": accuracy_score(truth, decided),
            "macro_sensitivity": balanced_accuracy_score(truth, decided),
            "macro_specificity": specificity.mean(),
            "macro_f1": f1_score(truth, decided, labels=labels, average="macro", zero_division=np.nan),
            "kappa": cohen_kappa_score(truth, decided, labels=labels),
            "sensitivity": np.where(present, recall_score(truth, decided, labels=labels, average=None,
                                                          zero_division=0), np.nan)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_metrics_equal_scikit_learn(seed):
    truth, decisions = reader_decisions(n_readers=1, n_cases=60, seed=seed)
    decided = decisions[0, 0]
    ours = confusion_metrics(confusion_matrix(truth, decided, 5))
    for name, value in sklearn_metrics(truth, decided).items():
        assert np.asarray(ours[name], dtype=float) == pytest.approx(value, abs=1e-12, nan_ok=True), name


def test_overall_table_has_macro_sensitivity_and_specificity():
    truth, decisions = reader_decisions(n_readers=1, n_cases=50, seed=7)
    tables = multiclass_tables(truth, np.arange(50), CLASSES, decisions=decisions[0, 0], n_boot=20, seed=1,
                               level=0.95, proportion_intervals="wilson", stratify="none")
    row = tables["overall"].iloc[0]
    expected = sklearn_metrics(truth, decisions[0, 0])
    assert row["macro_sensitivity"] == pytest.approx(expected["macro_sensitivity"], abs=1e-12)
    assert row["macro_specificity"] == pytest.approx(expected["macro_specificity"], abs=1e-12)
    assert row["macro_sensitivity_lo"] <= row["macro_sensitivity"] <= row["macro_sensitivity_hi"]


def resampled_metrics(truth, decisions, weights) -> dict:
    """Pooled readings of one bootstrap replicate, written out: the drawn cases repeated as
    often as drawn, every reader's decision on each, scikit-learn's metrics."""
    index = np.repeat(np.arange(truth.size), weights.astype(int))
    pooled_truth = np.tile(truth[index], decisions.shape[0])
    pooled_decided = decisions[:, index].ravel()
    return sklearn_metrics(pooled_truth, pooled_decided)


def test_pooled_reader_metrics_and_their_bootstrap_equal_the_written_out_resampling():
    truth, decisions = reader_decisions(n_readers=3, n_cases=30, seed=8)
    readers = decisions[0]
    ours = pooled_reader_metrics(truth, readers, 5, n_boot=40, seed=11, level=0.9)
    point = sklearn_metrics(np.tile(truth, 3), readers.ravel())
    for name in ("accuracy", "macro_sensitivity", "macro_specificity", "macro_f1", "kappa"):
        assert ours[name] == pytest.approx(point[name], abs=1e-12), name
    # Accuracy, sensitivity and specificity of pooled readings = the mean of the readers'.
    assert ours["accuracy"] == pytest.approx(np.mean([accuracy_score(truth, d) for d in readers]), abs=1e-12)
    assert ours["macro_sensitivity"] == pytest.approx(
        np.mean([balanced_accuracy_score(truth, d) for d in readers]), abs=1e-12)
    weights = case_bootstrap_weights(30, 40, 11)
    replicates = [resampled_metrics(truth, readers, w) for w in weights]
    for name in ("accuracy", "macro_sensitivity", "macro_specificity", "kappa"):
        values = np.array([r[name] for r in replicates])
        values = values[np.isfinite(values)]
        assert (ours[f"{name}_lo"], ours[f"{name}_hi"]) == pytest.approx(tuple(np.percentile(values, [5, 95])),
                                                                         abs=1e-12), name
    sensitivity = np.array([r["sensitivity"] for r in replicates])
    lo = [np.percentile(column[np.isfinite(column)], 5) for column in sensitivity.T]
    assert np.asarray(ours["sensitivity_lo"]) == pytest.approx(lo, abs=1e-12)


def test_condition_gain_and_its_paired_bootstrap():
    truth, decisions = reader_decisions(n_readers=4, n_cases=35, shift=0.2, seed=9)
    gains = condition_gain(truth, decisions[0], decisions[1], 5, n_boot=30, seed=3, level=0.95)
    unaided = sklearn_metrics(np.tile(truth, 4), decisions[0].ravel())
    aided = sklearn_metrics(np.tile(truth, 4), decisions[1].ravel())
    for name in ("accuracy", "macro_sensitivity", "macro_specificity", "kappa"):
        assert gains[name]["reference"] == pytest.approx(unaided[name], abs=1e-12)
        assert gains[name]["gain"] == pytest.approx(aided[name] - unaided[name], abs=1e-12)
    weights = case_bootstrap_weights(35, 30, 3)
    differences = [resampled_metrics(truth, decisions[1], w)["accuracy"]
                   - resampled_metrics(truth, decisions[0], w)["accuracy"] for w in weights]
    assert (gains["accuracy"]["gain_lo"], gains["accuracy"]["gain_hi"]) == pytest.approx(
        tuple(np.percentile(differences, [2.5, 97.5])), abs=1e-12)
    assert gains["accuracy"]["gain"] > 0  # the simulated aid helps


# --- readers.csv with class decisions ----------------------------------------------------

def study_cases(n=6):
    return pd.DataFrame({"patient_id": [f"P{k}" for k in range(n)], "diagnosis": [CLASSES[k % 5] for k in range(n)],
                         "label": [k % 5 for k in range(n)], "cohort": ["external_centre2"] * n})


def readers_csv(tmp_path, cases, change=None, probabilities=True):
    rows = []
    for reader, experience in (("R1", "junior"), ("R2", "senior")):
        for condition in ("unaided", "aided"):
            for k, patient in enumerate(cases.patient_id):
                decided = CLASSES[(k + (reader == "R1")) % 5]
                row = {"reader": reader, "patient_id": patient, "condition": condition, "decision": decided,
                       "experience": experience}
                if probabilities:
                    row.update({f"prob_{c}": 0.6 if c == decided else 0.1 for c in CLASSES})
                rows.append(row)
    table = pd.DataFrame(rows)
    if change:
        table = change(table)
    path = tmp_path / "readers.csv"
    table.to_csv(path, index=False)
    return path


def test_multiclass_readers_csv_is_checked_and_joined(tmp_path):
    from spinedx.readers.reader_study import read_multiclass_reader_study

    cases = study_cases()
    study = read_multiclass_reader_study(readers_csv(tmp_path, cases), cases, CLASSES, ["unaided", "aided"])
    assert len(study) == 24 and study.condition.iloc[0] == "unaided"
    assert (study.label == study.patient_id.str[1:].astype(int) % 5).all()
    senior = study[study.reader == "R2"]
    assert (senior.decision_label == senior.label).all() and study.rating.isna().all()
    assert study[[f"prob_{c}" for c in CLASSES]].sum(axis=1).to_numpy() == pytest.approx(1.0)
    without = read_multiclass_reader_study(readers_csv(tmp_path, cases, probabilities=False), cases, CLASSES,
                                           ["unaided", "aided"])
    assert "prob_schwannoma" not in without.columns


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(decision=t.decision.replace("schwannoma", "lipoma")), "not one of"),
    (lambda t: t.drop(columns="prob_metastasis"), "give prob_<class> for every class"),
    (lambda t: t.assign(prob_schwannoma=0.9), "sum to"),
    (lambda t: t.iloc[1:], "not fully crossed"),
    (lambda t: t.assign(experience=np.where(t.condition == "aided", "senior", t.experience)), "more than one experience"),
    (lambda t: t.drop(columns="decision"), "missing column"),
])
def test_multiclass_readers_csv_errors_name_the_fix(tmp_path, change, message):
    from spinedx.readers.reader_study import read_multiclass_reader_study

    cases = study_cases()
    with pytest.raises(InputError, match=message):
        read_multiclass_reader_study(readers_csv(tmp_path, cases, change), cases, CLASSES, ["unaided", "aided"])


# --- the demo's readers -------------------------------------------------------------------

def test_demo_readers_have_plausible_skill_and_follow_the_model_when_aided():
    from spinedx.demo.reader_study import simulate_multiclass_readers

    rng = np.random.default_rng(0)
    n = 300
    label = rng.integers(0, 5, n)
    logits = rng.normal(0, 1, (n, 5)) + 2.0 * np.eye(5)[label]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cases = pd.DataFrame({"patient_id": [f"P{k:03d}" for k in range(n)], "label": label,
                          **{f"prob_{c}": probs[:, i] for i, c in enumerate(CLASSES)}})
    settings = {"n_readers": 6, "seed": 15, "separation": [0.8, 1.8], "aid_weight": [0.3, 0.6]}
    readers = simulate_multiclass_readers(cases, settings, CLASSES, ["unaided", "aided"])
    assert len(readers) == 6 * n * 2 and set(readers.experience) == {"senior", "intermediate", "junior"}
    assert readers.equals(simulate_multiclass_readers(cases, settings, CLASSES, ["unaided", "aided"]))
    readers["correct"] = readers.decision.map(CLASSES.index) == np.tile(label, 12)
    model_decision = np.asarray(CLASSES)[probs.argmax(axis=1)]
    readers["agrees"] = readers.decision.to_numpy() == np.tile(model_decision, 12)
    accuracy = readers.groupby(["experience", "condition"]).correct.mean()
    assert 0.35 < accuracy[("junior", "unaided")] < accuracy[("senior", "unaided")] < 0.85
    agreement = readers.groupby(["reader", "condition"]).agrees.mean().unstack()
    assert (agreement["aided"] > agreement["unaided"]).all()  # every reader moves toward the model
    gain = accuracy.unstack()["aided"] - accuracy.unstack()["unaided"]
    assert gain["junior"] > gain["senior"]  # juniors lean on the model more
    assert readers[[f"prob_{c}" for c in CLASSES]].sum(axis=1).sub(1).abs().max() < 0.01


# --- subgroups and participant flow of N-class hold-out studies ----------------------------

def test_multiclass_subgroups_rows_equal_the_n_class_evaluation():
    from spinedx.stages.subgroups import multiclass_subgroup_table
    from spinedx.task import MulticlassTask

    rng = np.random.default_rng(3)
    n = 40
    label = rng.integers(0, 5, n)
    logits = rng.normal(0, 1, (n, 5)) + 1.5 * np.eye(5)[label]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    final = pd.DataFrame({"patient_id": [f"P{k:02d}" for k in range(n)], "label": label,
                          **{f"prob_{c}": probs[:, i] for i, c in enumerate(CLASSES)}})
    values = pd.DataFrame({"patient_id": final.patient_id, "sex": np.where(np.arange(n) % 3, "F", "M")})
    evaluation = {"bootstrap_replicates": 50, "seed": 7, "ci_level": 0.95}
    table = multiclass_subgroup_table(final, values, ["sex"], MulticlassTask(tuple(CLASSES)), evaluation)
    assert table.level.tolist() == ["all cases", "F", "M"]
    overall = multiclass_tables(label, final.patient_id, CLASSES, probs=probs, n_boot=50, seed=7, level=0.95,
                                proportion_intervals="wilson", stratify="none")["overall"].iloc[0]
    for column in ("accuracy", "accuracy_lo", "macro_f1", "macro_f1_hi", "kappa", "macro_auc"):
        assert table[column].iloc[0] == pytest.approx(overall[column], abs=1e-15), column
    women = (values.sex == "F").to_numpy()
    assert table.set_index("level").loc["F", "accuracy"] == pytest.approx(
        accuracy_score(label[women], probs[women].argmax(axis=1)), abs=1e-15)
    assert table.set_index("level").loc["M", "n"] == (~women).sum()


def test_participant_flow_of_a_holdout_study_with_two_external_centres():
    from spinedx.stages import participant_flow

    ids = [f"P{k}" for k in range(8)]
    cohorts = ["internal"] * 5 + ["centre2", "centre2", "centre3"]
    cases = pd.DataFrame({"patient_id": ids, "diagnosis": [CLASSES[k % 5] for k in range(8)], "cohort": cohorts})
    images = pd.DataFrame({"patient_id": ids, "image_id": ids, "sequence": "T1"})
    excluded = pd.DataFrame(columns=["patient_id", "sequence", "level", "item", "reason"])
    holdout = pd.DataFrame({"patient_id": ids[:5] * 2, "repeat": [0] * 5 + [1] * 5,
                            "partition": ["train", "train", "train", "validation", "internal_test",
                                          "internal_test", "train", "train", "train", "validation"]})
    rows = []
    for model, prediction_set, patients in (("holdout0", "internal_test", ["P4"]), ("holdout1", "internal_test", ["P0"]),
                                            ("holdout0", "validation", ["P3"]),
                                            ("ensemble", "centre2", ["P5", "P6"]), ("ensemble", "centre3", ["P7"])):
        for patient in patients:
            rows.append({"backbone": "net", "input": "ALL", "model": model, "prediction_set": prediction_set,
                         "patient_id": patient, "cohort": cases.set_index("patient_id").cohort[patient],
                         "label": int(patient[1:]) % 5, "n_images": 1})
    table = participant_flow.flow_table(cases, images, excluded, holdout, pd.DataFrame(rows), CLASSES,
                                        cohorts=["internal", "centre2", "centre3"])
    get = table.set_index(["step", "cohort", "group"])
    assert get.loc[("split", "internal", "repeat 0: train"), "patients"] == 3
    assert get.loc[("split", "internal", "repeat 1: internal_test"), "patients"] == 1
    assert get.loc[("analysed", "internal", "ALL"), "patients"] == 2  # the internal-test patients of both repeats
    assert get.loc[("analysed", "centre2", "ALL"), "patients"] == 2
    assert get.loc[("analysed", "centre3", "ALL"), "patients"] == 1
    fig = participant_flow.flow_figure(table, CLASSES, None, ["internal", "centre2", "centre3"], "3:1:1, 2 repeat(s)")
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    assert "Internal cohort (hold-out 3:1:1, 2 repeat(s))" in text and "External cohort centre3 (test)" in text
    assert "repeat 1: internal_test: n = 1" in text


def test_multiclass_brier_is_the_sum_of_one_vs_rest_briers_with_a_patient_bootstrap():
    from sklearn.metrics import brier_score_loss

    from spinedx.stats.calibration import _bootstrap_weights, multiclass_brier

    rng = np.random.default_rng(12)
    n = 45
    label = rng.integers(0, 5, n)
    logits = rng.normal(0, 1, (n, 5)) + 1.2 * np.eye(5)[label]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    patients = np.arange(n) // 3  # three rows per patient
    result = multiclass_brier(label, probs, patients, n_boot=60, seed=4, level=0.9)
    assert result["brier"] == pytest.approx(sum(brier_score_loss(label == k, probs[:, k]) for k in range(5)),
                                            abs=1e-12)
    replicates = []
    for weights in _bootstrap_weights(patients, 60, 4, chunk=10_000):
        for w in weights:  # the drawn rows, each as often as its patient was drawn
            index = np.repeat(np.arange(n), w.astype(int))
            replicates.append(sum(brier_score_loss(label[index] == k, probs[index, k]) for k in range(5)))
    assert (result["brier_lo"], result["brier_hi"]) == pytest.approx(tuple(np.percentile(replicates, [5, 95])),
                                                                     abs=1e-12)
