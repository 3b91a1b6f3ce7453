"""Tests of spinedx.stats (metrics, the patient-level bootstrap, metric tables) and the evaluation stage's tables."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    cohen_kappa_score,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)

from spinedx.stages.evaluation import build_tables, write_tables
from spinedx.stats.binary import confusion_counts, metrics_from_counts, roc_auc, wilson_interval
from spinedx.stats.bootstrap import _summarise_clusters, bootstrap_intervals
from spinedx.stats.tables import METRIC_COLUMNS, fold_2x2_table, metrics_table

SETTINGS = {"threshold": 0.5, "bootstrap_replicates": 200, "seed": 0, "ci_level": 0.95}


# --- the study's table 3 (34 schwannomas, 34 ependymomas) -----------------------------


@pytest.mark.parametrize(
    ("tp", "fn", "tn", "fp", "sensitivity", "specificity", "accuracy", "kappa"),
    [
        (25, 9, 25, 9, 73.5, 73.5, 73.5, 0.471),  # T1
        (26, 8, 29, 5, 76.5, 85.3, 80.9, 0.618),  # T2
        (30, 4, 26, 8, 88.2, 76.5, 82.4, 0.647),  # CE-T1
        (32, 2, 27, 7, 94.1, 79.4, 86.8, 0.735),  # ALL
    ],
)
def test_table3_rows_reproduced(tp, fn, tn, fp, sensitivity, specificity, accuracy, kappa):
    metrics = metrics_from_counts(tp=tp, fp=fp, fn=fn, tn=tn)
    assert round(100 * metrics["sensitivity"], 1) == sensitivity
    assert round(100 * metrics["specificity"], 1) == specificity
    assert round(100 * metrics["accuracy"], 1) == accuracy
    assert round(metrics["kappa"], 3) == kappa
    assert (metrics["n_pos"], metrics["n_neg"]) == (34, 34)
    for name in ("sensitivity", "specificity", "accuracy"):
        assert metrics[f"{name}_lo"] < metrics[name] < metrics[f"{name}_hi"]


# --- agreement with scikit-learn -------------------------------------------------------


def _random_predictions(seed, n=300):
    """Labels and coarsely rounded probabilities (many ties, some exactly 0.5)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.25), 0, 1).round(1)
    return labels, probs


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn(seed):
    labels, probs = _random_predictions(seed)
    assert np.unique(probs).size < probs.size  # ties present
    decisions = (probs > 0.5).astype(int)
    counts = confusion_counts(labels, probs)
    tn, fp, fn, tp = confusion_matrix(labels, decisions, labels=[0, 1]).ravel()
    assert counts == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}

    metrics = metrics_from_counts(**counts)
    assert metrics["sensitivity"] == pytest.approx(recall_score(labels, decisions))
    assert metrics["specificity"] == pytest.approx(recall_score(labels, decisions, pos_label=0))
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score(labels, decisions))
    assert roc_auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)


def test_cluster_replicate_matches_sklearn_on_expanded_data():
    """A replicate's weighted AUC/kappa equals sklearn on the physically resampled images."""
    rng = np.random.default_rng(7)
    patients = rng.integers(0, 30, 200)
    labels = (patients % 2).astype(int)
    probs = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1).round(2)
    summary = _summarise_clusters(labels, probs, patients, threshold=0.5)
    pos_ids, neg_ids = pd.unique(patients[labels == 1]), pd.unique(patients[labels == 0])
    w_pos = rng.integers(0, 4, (1, pos_ids.size))
    w_neg = rng.integers(0, 4, (1, neg_ids.size))
    weight_of = {**dict(zip(pos_ids, w_pos[0])), **dict(zip(neg_ids, w_neg[0]))}
    repeats = np.array([weight_of[p] for p in patients])
    resampled_labels, resampled_probs = np.repeat(labels, repeats), np.repeat(probs, repeats)

    auc, kappa = summary.replicate(w_pos, w_neg)
    assert auc[0] == pytest.approx(roc_auc_score(resampled_labels, resampled_probs))
    assert kappa[0] == pytest.approx(
        cohen_kappa_score(resampled_labels, (resampled_probs > 0.5).astype(int))
    )


# --- Wilson interval, threshold ---------------------------------------------------------


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)

    # 32/34 by the textbook formula: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    z, n, p = 1.959963984540054, 34, 32 / 34
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert wilson_interval(32, 34) == pytest.approx((centre - half, centre + half))

    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_threshold_is_strict():
    counts = confusion_counts([1, 0, 1, 0], [0.5, 0.5, 0.51, 0.49])
    assert counts == {"tp": 1, "fp": 0, "fn": 1, "tn": 2}
    assert confusion_counts([1], [0.7], threshold=0.7) == {"tp": 0, "fp": 0, "fn": 1, "tn": 0}


def test_invalid_arrays_rejected():
    with pytest.raises(ValueError, match="labels"):
        confusion_counts([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="length"):
        confusion_counts([0, 1], [0.1])


# --- degenerate inputs ------------------------------------------------------------------


def test_single_class_gives_nan_without_error():
    labels, probs, patients = [1, 1, 1], [0.9, 0.2, 0.6], ["a", "b", "c"]
    assert math.isnan(roc_auc(labels, probs))
    metrics = metrics_from_counts(**confusion_counts(labels, probs))
    assert math.isnan(metrics["specificity"])
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert all(math.isnan(v) for v in bootstrap_intervals(labels, probs, patients).values())


def test_empty_counts_and_predictions():
    metrics = metrics_from_counts(0, 0, 0, 0)
    for name in ("sensitivity", "specificity", "accuracy", "kappa", "accuracy_lo"):
        assert math.isnan(metrics[name])
    assert math.isnan(roc_auc([], []))
    empty = pd.DataFrame(columns=["backbone", "input", "patient_id", "label", "prob"])
    table = metrics_table(empty, ["backbone", "input"])
    assert table.empty
    assert list(table.columns) == ["backbone", "input", *METRIC_COLUMNS]


def test_kappa_undefined_when_everything_in_one_cell():
    assert math.isnan(metrics_from_counts(tp=5, fp=0, fn=0, tn=0)["kappa"])
    assert metrics_from_counts(tp=5, fp=5, fn=0, tn=0)["kappa"] == 0.0


# --- bootstrap --------------------------------------------------------------------------


def _clustered_example(seed=3, n_patients=40):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), rng.integers(1, 8, n_patients))
    labels = (patients < n_patients // 2).astype(int)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    return labels, probs, patients


def test_bootstrap_reproducible_and_contains_estimate():
    labels, probs, patients = _clustered_example()
    first = bootstrap_intervals(labels, probs, patients, n_boot=500, seed=11)
    assert first == bootstrap_intervals(labels, probs, patients, n_boot=500, seed=11)
    assert first != bootstrap_intervals(labels, probs, patients, n_boot=500, seed=12)
    assert first["auc_lo"] < roc_auc(labels, probs) < first["auc_hi"]
    kappa = metrics_from_counts(**confusion_counts(labels, probs))["kappa"]
    assert first["kappa_lo"] < kappa < first["kappa_hi"]
    wider = bootstrap_intervals(labels, probs, patients, n_boot=500, seed=11, level=0.99)
    assert wider["auc_lo"] <= first["auc_lo"] and wider["auc_hi"] >= first["auc_hi"]


def test_bootstrap_resamples_patients_not_images():
    # Two positive patients of 10 images each, one scored right (0.9) and one wrong
    # (0.1), against two negative patients at 0.3. Drawing whole patients, a replicate
    # holds the right one twice (AUC 1), both (0.5) or the wrong one twice (0), so the
    # interval spans [0, 1]; resampling images as if independent keeps it near 0.5.
    labels = np.repeat([1, 1, 0, 0], 10)
    probs = np.repeat([0.9, 0.1, 0.3, 0.3], 10)
    patients = np.repeat(["p1", "p2", "n1", "n2"], 10)
    by_patient = bootstrap_intervals(labels, probs, patients, n_boot=2000)
    by_image = bootstrap_intervals(labels, probs, np.arange(40), n_boot=2000)
    assert (by_patient["auc_lo"], by_patient["auc_hi"]) == (0.0, 1.0)
    assert 0.2 < by_image["auc_lo"] < 0.5 < by_image["auc_hi"] < 0.8


def test_bootstrap_rejects_patient_with_both_labels():
    with pytest.raises(ValueError, match="mix labels"):
        bootstrap_intervals([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], ["a", "a", "b", "c"])


def test_bootstrap_zero_replicates_gives_nan():
    labels, probs, patients = _clustered_example()
    intervals = bootstrap_intervals(labels, probs, patients, n_boot=0)
    assert all(math.isnan(v) for v in intervals.values())


# --- tables -----------------------------------------------------------------------------


def _image_predictions():
    """Two sequences x two cohorts; external scored by the ensemble, internal by OOF."""
    rows = []
    for cohort, model in (("external", "ensemble"), ("internal", "oof"), ("external", "fold0")):
        for sequence in ("T2", "T1"):  # T2 first: row order must follow the input
            for patient, label, probs in (
                ("s1", 1, (0.9, 0.8)), ("s2", 1, (0.4, 0.6)), ("s3", 1, (0.7,)),
                ("e1", 0, (0.2, 0.5)), ("e2", 0, (0.6,)), ("e3", 0, (0.1, 0.3)),
            ):
                for i, prob in enumerate(probs):
                    rows.append({
                        "backbone": "resnet18", "sequence": sequence,
                        "image_id": f"{patient}_{sequence}_{i}", "patient_id": patient,
                        "cohort": cohort, "label": label, "model": model, "prob": prob,
                    })
    return pd.DataFrame(rows)


def _case_predictions():
    """Case-level rows: ensemble/OOF per input plus fold models on the external cohort."""
    rows = []

    def add(cohort, model, input_, probs):
        for (patient, label), prob in zip(
            (("s1", 1), ("s2", 1), ("s3", 1), ("e1", 0), ("e2", 0), ("e3", 0)), probs
        ):
            rows.append({
                "backbone": "resnet18", "input": input_, "model": model, "patient_id": patient,
                "cohort": cohort, "label": label, "prob": prob, "n_images": 2,
            })

    for input_ in ("T1", "T2", "CE-T1", "ALL"):
        add("external", "ensemble", input_, (0.9, 0.6, 0.4, 0.2, 0.7, 0.1))
        add("internal", "oof", input_, (0.8, 0.8, 0.8, 0.3, 0.3, 0.5))
    add("external", "fold1", "T1", (0.9, 0.9, 0.9, 0.9, 0.1, 0.1))  # tp3 fp1 fn0 tn2
    add("external", "fold0", "T1", (0.9, 0.5, 0.1, 0.1, 0.1, 0.1))  # tp1 fp0 fn2 tn3
    add("internal", "fold0", "T1", (0.9, 0.9, 0.9, 0.9, 0.9, 0.9))  # internal: ignored
    return pd.DataFrame(rows)


def test_build_tables_keys_and_rows():
    tables = build_tables(_image_predictions(), _case_predictions(), SETTINGS)
    assert set(tables) == {
        "table2_image_level", "table3_case_level", "fold_2x2",
        "internal_cv_image_level", "internal_cv_case_level",
    }
    table2 = tables["table2_image_level"]
    assert list(table2.columns) == ["backbone", "input", *METRIC_COLUMNS]
    assert list(table2["input"]) == ["T2", "T1"]
    # external ensemble images: positives 0.9 0.8 0.4 0.6 0.7, negatives 0.2 0.5 0.6 0.1 0.3
    first = table2.iloc[0]
    assert (first.tp, first.fn, first.fp, first.tn) == (4, 1, 1, 4)
    assert first.n_patients == 6
    assert first.auc == pytest.approx(
        roc_auc_score([1] * 5 + [0] * 5, [0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.5, 0.6, 0.1, 0.3])
    )

    table3 = tables["table3_case_level"]
    assert list(table3["input"]) == ["T1", "T2", "CE-T1", "ALL"]
    row = table3.iloc[0]
    assert (row.tp, row.fn, row.fp, row.tn) == (2, 1, 1, 2)
    assert row.sensitivity == pytest.approx(2 / 3)

    internal = tables["internal_cv_case_level"].iloc[0]
    assert (internal.tp, internal.fn, internal.fp, internal.tn) == (3, 0, 0, 3)  # 0.5 negative
    assert len(tables["internal_cv_image_level"]) == 2


def test_fold_2x2_counts():
    table = fold_2x2_table(_case_predictions())
    assert list(table.columns) == [
        "backbone", "input", "fold", "n_pos", "n_neg", "tp", "fp", "fn", "tn",
        "sensitivity", "specificity",
    ]
    assert list(table["fold"]) == [0, 1]  # sorted numerically, internal rows excluded
    assert table[["tp", "fp", "fn", "tn"]].values.tolist() == [[1, 0, 2, 3], [3, 1, 0, 2]]
    assert table["sensitivity"].tolist() == pytest.approx([1 / 3, 1.0])
    assert table["specificity"].tolist() == pytest.approx([1.0, 2 / 3])


def test_metrics_table_keeps_first_appearance_order_and_clusters():
    labels, probs, patients = _clustered_example()
    frame = pd.DataFrame({"g": np.where(patients % 3 == 0, "b", "a"), "label": labels,
                          "prob": probs, "patient_id": patients})
    frame = frame.iloc[::-1]
    table = metrics_table(frame, ["g"], n_boot=100)
    assert list(table["g"]) == list(pd.unique(frame["g"]))
    for _, row in table.iterrows():
        group = frame[frame["g"] == row.g]
        assert row.n_patients == group["patient_id"].nunique()
        assert row.n_pos + row.n_neg == len(group)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="prob"), "prob"),
        (lambda f: f.assign(label=f["label"].replace(1, 2)), "'label'"),
        (lambda f: f.assign(prob=f["prob"].where(f.index != 0, 1.2)), "'prob'"),
        (lambda f: f.assign(prob=f["prob"].where(f.index != 0, np.nan)), "'prob'"),
    ],
)
def test_build_tables_validates_inputs(mutate, message):
    with pytest.raises(ValueError, match=message):
        build_tables(mutate(_image_predictions()), _case_predictions(), SETTINGS)
    with pytest.raises(ValueError, match="case_predictions"):
        build_tables(_image_predictions(), mutate(_case_predictions()), SETTINGS)


def test_write_tables_round_trips(tmp_path):
    tables = build_tables(_image_predictions(), _case_predictions(), SETTINGS)
    paths = write_tables(tables, tmp_path / "tables")
    for key, table in tables.items():
        assert paths[key].name == f"{key}.csv"
        read = pd.read_csv(paths[key])
        assert list(read.columns) == list(table.columns)
        pd.testing.assert_frame_equal(read, table, check_dtype=False)
