"""Tests of spinedx.stats.multiclass: point estimates against scikit-learn, Wilson bounds
against statsmodels, the vectorised bootstrap against a loop over explicitly resampled
rows scored by scikit-learn."""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from statsmodels.stats.proportion import proportion_confint

from spinedx.errors import InputError
from spinedx.stats import multiclass
from spinedx.stats.multiclass import (
    OVERALL_COLUMNS,
    PER_CLASS_COLUMNS,
    REFERENCE_COLUMNS,
    argmax_decisions,
    cohen_kappa,
    confusion_matrix,
    multiclass_tables,
    one_vs_rest_auc,
    reference_class_table,
)

OPTIONS = dict(n_boot=200, seed=0, level=0.95, stratify="none")


def _names(n_classes):
    return [f"c{k}" for k in range(n_classes)]


def _softmax(logits):
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def _study(seed, n_rows=240, n_classes=5, n_patients=80, image_labels=False, signal=1.0,
           absent_truth=(), absent_decided=()):
    """Random rows of a study: (labels, probs, patients).

    Probabilities are rounded to 2 decimals (many exact ties, also for the argmax) and
    renormalised. Case labels: every patient's rows share its class; image labels: each
    row its own class. ``absent_truth`` classes never occur in the truth,
    ``absent_decided`` ones never win the argmax (their probability is set to 0).
    """
    rng = np.random.default_rng(seed)
    present = [k for k in range(n_classes) if k not in absent_truth]
    patients = rng.integers(0, n_patients, n_rows)
    patient_class = rng.choice(present, n_patients)
    labels = rng.choice(present, n_rows) if image_labels else patient_class[patients]
    logits = rng.normal(size=(n_rows, n_classes))
    logits[np.arange(n_rows), labels] += signal
    probs = np.round(_softmax(logits), 2)
    probs[:, list(absent_decided)] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, probs, patients.astype(str)


def _sklearn_per_class(labels, decisions, n_classes):
    """One-vs-rest metrics per class from scikit-learn (NaN where undefined)."""
    every = list(range(n_classes))
    ppv, sensitivity, f1, _ = precision_recall_fscore_support(
        labels, decisions, labels=every, zero_division=np.nan)
    specificity, npv = [], []
    for k in every:
        # Specificity and NPV of class k are recall and precision of "not k".
        npv_k, spec_k, _, _ = precision_recall_fscore_support(
            labels != k, decisions != k, labels=[True], zero_division=np.nan)
        specificity.append(spec_k[0])
        npv.append(npv_k[0])
    counts = multilabel_confusion_matrix(labels, decisions, labels=every)  # [[tn, fp], [fn, tp]]
    return {
        "sensitivity": sensitivity, "specificity": np.array(specificity), "ppv": ppv,
        "npv": np.array(npv), "f1": f1,
        "tn": counts[:, 0, 0], "fp": counts[:, 0, 1], "fn": counts[:, 1, 0], "tp": counts[:, 1, 1],
    }


def _sklearn_auc(labels, probs, k):
    is_k = labels == k
    return roc_auc_score(is_k, probs[:, k]) if 0 < is_k.sum() < is_k.size else np.nan


CASES = [
    # (seed, n_classes, absent from truth, never decided, image labels)
    (1, 5, (), (), False),
    (2, 3, (), (), True),
    (3, 6, (2,), (), False),       # a class never true (but sometimes decided)
    (4, 4, (), (1,), True),        # a class never decided
    (5, 5, (3,), (3,), False),     # a class neither true nor decided: F1 undefined
    (6, 2, (), (), False),
    (7, 5, (0, 4), (2,), True),
]


@pytest.mark.parametrize(("seed", "n_classes", "absent_truth", "absent_decided", "image_labels"), CASES)
def test_point_estimates_equal_scikit_learn(seed, n_classes, absent_truth, absent_decided, image_labels):
    labels, probs, patients = _study(seed, n_classes=n_classes, absent_truth=absent_truth,
                                     absent_decided=absent_decided, image_labels=image_labels)
    decisions = argmax_decisions(probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined values are NaN, without warnings
        tables = multiclass_tables(labels, patients, _names(n_classes), probs=probs,
                                   proportion_intervals="bootstrap", **OPTIONS)
    per_class, overall = tables["per_class"], tables["overall"].iloc[0]
    assert list(per_class.columns) == list(PER_CLASS_COLUMNS)
    assert list(tables["overall"].columns) == list(OVERALL_COLUMNS)

    expected = _sklearn_per_class(labels, decisions, n_classes)
    for name, values in expected.items():
        np.testing.assert_allclose(per_class[name].to_numpy(dtype=float), values, rtol=0, atol=1e-12,
                                   equal_nan=True, err_msg=name)
    auc = [_sklearn_auc(labels, probs, k) for k in range(n_classes)]
    np.testing.assert_allclose(per_class["auc"], auc, atol=1e-12, equal_nan=True)

    assert overall["accuracy"] == pytest.approx(accuracy_score(labels, decisions), abs=1e-12)
    assert overall["macro_f1"] == pytest.approx(
        f1_score(labels, decisions, labels=list(range(n_classes)), average="macro", zero_division=np.nan),
        abs=1e-12)
    assert overall["kappa"] == pytest.approx(cohen_kappa_score(labels, decisions), abs=1e-12)
    if n_classes == 2:  # scikit-learn takes the positive column alone; both AUCs equal it
        assert overall["macro_auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]), abs=1e-12)
    elif not absent_truth:
        assert overall["macro_auc"] == pytest.approx(
            roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-12)
    else:
        # scikit-learn makes the whole macro-AUC NaN (with a warning) when a class is
        # absent from the truth; ours averages the classes present.
        with pytest.warns(UserWarning, match="Only one class"):
            assert np.isnan(roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                                          labels=list(range(n_classes))))
        assert overall["macro_auc"] == pytest.approx(np.nanmean(auc), abs=1e-12)
    assert overall["n_classes_present"] == n_classes - len(absent_truth)

    confusion = tables["confusion"]
    expected_counts = sk_confusion_matrix(labels, decisions, labels=list(range(n_classes)))
    np.testing.assert_array_equal(confusion["count"].to_numpy().reshape(n_classes, n_classes), expected_counts)
    with np.errstate(invalid="ignore"):
        expected_percent = 100 * sk_confusion_matrix(labels, decisions, labels=list(range(n_classes)),
                                                     normalize="true")
    present = expected_counts.sum(axis=1) > 0
    row_percent = confusion["row_percent"].to_numpy().reshape(n_classes, n_classes)
    np.testing.assert_allclose(row_percent[present], expected_percent[present], atol=1e-12)
    assert np.isnan(row_percent[~present]).all()  # scikit-learn writes 0 for an absent class
    assert list(confusion["truth"][:n_classes]) == ["c0"] * n_classes
    assert list(confusion["decision"][:n_classes]) == _names(n_classes)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kappa_weights_equal_scikit_learn(weights, seed):
    labels, probs, patients = _study(seed, n_classes=4, signal=1.5)
    decisions = argmax_decisions(probs)
    expected = cohen_kappa_score(labels, decisions, weights=weights)
    assert cohen_kappa(confusion_matrix(labels, decisions, 4), weights) == pytest.approx(expected, abs=1e-12)
    overall = multiclass_tables(labels, patients, _names(4), probs=probs, kappa_weights=weights,
                                proportion_intervals="bootstrap", **OPTIONS)["overall"].iloc[0]
    assert overall["kappa"] == pytest.approx(expected, abs=1e-12)
    assert overall["kappa_weights"] == (weights or "none")


def test_undefined_values_are_nan_not_errors():
    # Every row true class 0 and decided class 0: specificity, NPV, AUC and kappa undefined.
    labels = np.zeros(6, dtype=int)
    probs = np.tile([0.8, 0.1, 0.1], (6, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables = multiclass_tables(labels, list("aabbcc"), ["x", "y", "z"], probs=probs,
                                   proportion_intervals="wilson", **OPTIONS)
    per_class, overall = tables["per_class"], tables["overall"].iloc[0]
    assert per_class.loc[0, "sensitivity"] == 1.0 and per_class.loc[0, "ppv"] == 1.0
    assert np.isnan(per_class.loc[0, ["specificity", "npv", "auc"]].to_numpy(dtype=float)).all()
    # Classes 1 and 2: neither true nor decided, so everything but specificity and NPV.
    assert np.isnan(per_class.loc[1:, ["sensitivity", "ppv", "f1", "auc"]].to_numpy(dtype=float)).all()
    assert (per_class.loc[1:, ["specificity", "npv"]] == 1.0).all().all()
    assert overall["accuracy"] == 1.0 and overall["macro_f1"] == 1.0
    assert np.isnan(overall["kappa"]) and np.isnan(overall["macro_auc"])
    with pytest.warns(UserWarning):  # scikit-learn agrees, with a warning
        assert np.isnan(cohen_kappa_score(labels, labels))


def test_empty_input_gives_nan_rows():
    tables = multiclass_tables([], [], ["x", "y"], probs=np.zeros((0, 2)),
                               proportion_intervals="bootstrap", **OPTIONS)
    assert len(tables["per_class"]) == 2 and tables["per_class"]["sensitivity"].isna().all()
    assert np.isnan(tables["overall"].loc[0, "accuracy"])


def test_argmax_ties_go_to_the_earlier_class():
    probs = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    np.testing.assert_array_equal(argmax_decisions(probs), [0, 1, 0, 2])


def test_decisions_alone_give_counts_without_auc():
    labels, probs, patients = _study(11, n_classes=3)
    reader = np.random.default_rng(0).integers(0, 3, labels.size)
    tables = multiclass_tables(labels, patients, _names(3), decisions=reader,
                               proportion_intervals="bootstrap", **OPTIONS)
    expected = _sklearn_per_class(labels, reader, 3)
    np.testing.assert_allclose(tables["per_class"]["f1"], expected["f1"], atol=1e-12)
    assert tables["per_class"]["auc"].isna().all() and tables["per_class"]["auc_lo"].isna().all()
    # Given decisions win over the argmax of given probabilities; AUC still uses the probabilities.
    both = multiclass_tables(labels, patients, _names(3), probs=probs, decisions=reader,
                             proportion_intervals="bootstrap", **OPTIONS)["per_class"]
    np.testing.assert_allclose(both["f1"], expected["f1"], atol=1e-12)
    np.testing.assert_allclose(both["auc"], one_vs_rest_auc(labels, probs), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_wilson_bounds_equal_statsmodels(seed):
    labels, probs, patients = _study(seed, n_classes=4, absent_truth=(3,))
    tables = multiclass_tables(labels, patients, _names(4), probs=probs, proportion_intervals="wilson",
                               n_boot=50, seed=0, level=0.9, stratify="class")
    per_class, overall = tables["per_class"], tables["overall"].iloc[0]
    for name, successes, total in (("sensitivity", "tp", ("tp", "fn")), ("specificity", "tn", ("tn", "fp")),
                                   ("ppv", "tp", ("tp", "fp")), ("npv", "tn", ("tn", "fn"))):
        for _, row in per_class.iterrows():
            n = int(row[total[0]] + row[total[1]])
            if n == 0:
                assert np.isnan(row[f"{name}_lo"]) and np.isnan(row[f"{name}_hi"])
                continue
            lo, hi = proportion_confint(int(row[successes]), n, alpha=0.1, method="wilson")
            assert (row[f"{name}_lo"], row[f"{name}_hi"]) == pytest.approx((lo, hi), abs=1e-12)
    lo, hi = proportion_confint(int(round(overall["accuracy"] * overall["n"])), int(overall["n"]),
                                alpha=0.1, method="wilson")
    assert (overall["accuracy_lo"], overall["accuracy_hi"]) == pytest.approx((lo, hi), abs=1e-12)
    assert overall["proportion_intervals"] == "wilson"


# --- the per-pathology table against the reference class -------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_class_table_equals_scikit_learn_on_subsets(seed):
    names = ["unremarkable", "ivde", "ivdp", "fce", "neoplasia"]
    labels, probs, dogs = _study(seed, n_rows=400, n_classes=5, n_patients=60, image_labels=True,
                                 absent_decided=(4,) if seed == 2 else ())
    decisions = argmax_decisions(probs)
    table = reference_class_table(labels, dogs, names, "unremarkable", probs=probs,
                                  proportion_intervals="bootstrap", **OPTIONS)
    assert list(table.columns) == list(REFERENCE_COLUMNS)
    assert list(table["pathology"]) == names[1:]
    for _, row in table.iterrows():
        p = names.index(row["pathology"])
        subset = (labels == p) | (labels == 0)
        truth, called = labels[subset] == p, decisions[subset] == p
        _, sens, _, _ = precision_recall_fscore_support(truth, called, labels=[True], zero_division=np.nan)
        _, spec, _, _ = precision_recall_fscore_support(~truth, ~called, labels=[True], zero_division=np.nan)
        assert row["sensitivity"] == pytest.approx(sens[0], abs=1e-12)
        assert row["specificity"] == pytest.approx(spec[0], abs=1e-12)
        assert row["auc"] == pytest.approx(roc_auc_score(truth, probs[subset, p]), abs=1e-12)
        assert (row["n_pathology"], row["n_reference"]) == (truth.sum(), (~truth).sum())
        assert row["n_patients"] == len(set(dogs[labels == p]))
        assert row["sensitivity_lo"] <= row["sensitivity"] <= row["sensitivity_hi"] or row["tp"] == 0


def test_reference_class_must_be_a_class():
    labels, probs, dogs = _study(0, n_classes=3)
    with pytest.raises(InputError, match="reference class 'normal'"):
        reference_class_table(labels, dogs, ["a", "b", "c"], "normal", probs=probs,
                              proportion_intervals="wilson", **OPTIONS)


# --- the bootstrap ---------------------------------------------------------------------


def _resampled_rows(patients, weights_row, cluster_ids):
    """Row indices of one replicate: each patient's rows repeated as often as it was drawn."""
    index = []
    for cluster, times in zip(cluster_ids, weights_row):
        index.extend(np.flatnonzero(patients == cluster).tolist() * int(times))
    return np.array(index, dtype=int)


@pytest.mark.parametrize("image_labels", [False, True])
def test_bootstrap_replicates_equal_scikit_learn_on_resampled_rows(image_labels):
    """The vectorised replicates (per-cluster sums) against a loop that materialises each
    replicate's rows and scores them with scikit-learn; then the reported bounds against
    numpy percentiles of the loop's values."""
    n_classes, n_boot, seed = 4, 40, 7
    labels, probs, patients = _study(3, n_rows=150, n_classes=n_classes, n_patients=40,
                                     image_labels=image_labels)
    decisions = argmax_decisions(probs)
    stratify = "none" if image_labels else "class"
    tables = multiclass_tables(labels, patients, _names(n_classes), probs=probs, n_boot=n_boot,
                               seed=seed, level=0.9, proportion_intervals="bootstrap",
                               kappa_weights="linear", stratify=stratify)
    rows = multiclass._rows(labels, patients, n_classes, probs, None)
    strata, rule = multiclass._patient_strata(rows, stratify)
    assert rule == stratify
    weights = multiclass._bootstrap_weights(strata, n_boot, seed)
    cluster_ids = pd.factorize(pd.Series(patients, dtype=object))[1]

    loop = {name: [] for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "auc",
                                  "accuracy", "macro_f1", "macro_auc", "kappa")}
    every = list(range(n_classes))
    for weights_row in weights:
        index = _resampled_rows(patients, weights_row, cluster_ids)
        y, d, p = labels[index], decisions[index], probs[index]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_class = _sklearn_per_class(y, d, n_classes)
            for name in ("sensitivity", "specificity", "ppv", "npv", "f1"):
                loop[name].append(per_class[name])
            auc = np.array([_sklearn_auc(y, p, k) for k in every])
            loop["auc"].append(auc)
            loop["accuracy"].append(accuracy_score(y, d))
            loop["macro_f1"].append(f1_score(y, d, labels=every, average="macro", zero_division=np.nan))
            loop["macro_auc"].append(np.nanmean(auc))
            loop["kappa"].append(cohen_kappa_score(y, d, weights="linear"))
    loop = {name: np.array(values, dtype=float) for name, values in loop.items()}

    def bounds(values):
        return np.nanpercentile(values, [5, 95], axis=0)

    per_class, overall = tables["per_class"], tables["overall"].iloc[0]
    for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "auc"):
        lo, hi = bounds(loop[name])
        np.testing.assert_allclose(per_class[f"{name}_lo"], lo, atol=1e-12, equal_nan=True, err_msg=name)
        np.testing.assert_allclose(per_class[f"{name}_hi"], hi, atol=1e-12, equal_nan=True, err_msg=name)
    for name in ("accuracy", "macro_f1", "macro_auc", "kappa"):
        lo, hi = bounds(loop[name])
        assert (overall[f"{name}_lo"], overall[f"{name}_hi"]) == pytest.approx((lo, hi), abs=1e-12), name
    # Replicates holding each class, from the materialised rows.
    with_class = [(np.isfinite(loop["sensitivity"][:, k])).sum() for k in every]
    assert per_class["replicates_with_class"].tolist() == with_class


def test_engine_at_unit_weights_reproduces_point_estimates():
    labels, probs, patients = _study(9, n_rows=300, n_classes=5, n_patients=30, image_labels=True)
    rows = multiclass._rows(labels, patients, 5, probs, None)
    unit = np.ones((1, rows.n_clusters))
    for k in range(5):
        problem = multiclass._BinaryProblem.build(rows, labels == k, labels != k, rows.decisions == k,
                                                  probs[:, k])
        assert problem.replicate(unit)["auc"][0] == pytest.approx(roc_auc_score(labels == k, probs[:, k]),
                                                                  abs=1e-12)


def test_stratify_by_class_keeps_class_counts():
    labels, probs, patients = _study(4, n_classes=5, n_patients=40)
    tables = multiclass_tables(labels, patients, _names(5), probs=probs, proportion_intervals="bootstrap",
                               n_boot=300, seed=1, level=0.95, stratify="class")
    assert tables["overall"].loc[0, "stratification"] == "class"
    assert (tables["per_class"]["replicates_with_class"] == 300).all()
    # Each replicate draws as many patients of each class as the data holds.
    rows = multiclass._rows(labels, patients, 5, probs, None)
    strata, _ = multiclass._patient_strata(rows, "class")
    weights = multiclass._bootstrap_weights(strata, 300, 1)
    for k in range(5):
        assert (weights[:, strata == k].sum(axis=1) == (strata == k).sum()).all()
    # Unstratified draws keep only the number of patients.
    weights = multiclass._bootstrap_weights(multiclass._patient_strata(rows, "none")[0], 300, 1)
    assert (weights.sum(axis=1) == rows.n_clusters).all()
    assert len({tuple(weights[:, strata == k].sum(axis=0) > 0) for k in range(5)}) > 1


def test_stratify_by_class_refuses_patients_with_several_classes():
    labels = np.array([0, 1, 1, 2])
    with pytest.raises(InputError, match=r"1 patient\(s\) have rows of several classes \(e.g. \['dog1'\]\)"):
        multiclass_tables(labels, ["dog1", "dog1", "dog2", "dog3"], _names(3), decisions=labels,
                          proportion_intervals="bootstrap", n_boot=10, seed=0, level=0.95, stratify="class")


def test_unstratified_rare_class_replicates_are_counted():
    # Patient "rare" is the only one with class 2: unstratified draws miss it at times,
    # and those replicates are left out of class 2's percentiles.
    labels = np.array([0, 1] * 40 + [2, 0])
    patients = np.array([f"p{i // 4}" for i in range(80)] + ["rare", "rare"])
    decisions = labels.copy()
    decisions[::7] = 0
    tables = multiclass_tables(labels, patients, _names(3), decisions=decisions,
                               proportion_intervals="bootstrap", n_boot=500, seed=0, level=0.95,
                               stratify="none")
    assert tables["overall"].loc[0, "stratification"] == "none"
    with_class = tables["per_class"]["replicates_with_class"].tolist()
    assert with_class[:2] == [500, 500]
    # P(patient not drawn in 21 draws) = (20/21)^21 = 0.36: about 180 of 500 miss it.
    assert 250 < with_class[2] < 400


def test_given_strata_must_be_constant_within_a_patient():
    labels, probs, patients = _study(2, image_labels=True)
    options = {**OPTIONS, "proportion_intervals": "bootstrap"}
    given = multiclass_tables(labels, patients, _names(5), probs=probs,
                              **{**options, "stratify": np.zeros(labels.size)})
    assert given["overall"].loc[0, "stratification"] == "given"
    with pytest.raises(InputError, match="constant within each patient"):
        multiclass_tables(labels, patients, _names(5), probs=probs, **{**options, "stratify": labels})
    with pytest.raises(InputError, match="stratify must be 'class', 'none'"):
        multiclass_tables(labels, patients, _names(5), probs=probs, **{**options, "stratify": "severity"})


def test_bootstrap_is_reproducible_and_seeded():
    labels, probs, patients = _study(5)
    first = multiclass_tables(labels, patients, _names(5), probs=probs,
                              proportion_intervals="bootstrap", **OPTIONS)
    again = multiclass_tables(labels, patients, _names(5), probs=probs,
                              proportion_intervals="bootstrap", **OPTIONS)
    other = multiclass_tables(labels, patients, _names(5), probs=probs,
                              proportion_intervals="bootstrap", **{**OPTIONS, "seed": 1})
    pd.testing.assert_frame_equal(first["per_class"], again["per_class"])
    assert not first["per_class"]["f1_lo"].equals(other["per_class"]["f1_lo"])
    none = multiclass_tables(labels, patients, _names(5), probs=probs,
                             proportion_intervals="bootstrap", **{**OPTIONS, "n_boot": 0})
    assert none["per_class"]["f1_lo"].isna().all() and np.isnan(none["overall"].loc[0, "kappa_hi"])
    assert none["per_class"]["f1"].equals(first["per_class"]["f1"])


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    (dict(labels=[0, 1, 3]), "labels must be class indices 0..2"),
    (dict(labels=[0.5, 1, 2]), "integer class indices"),
    (dict(probs=[[0.5, 0.5, 0.0], [0.2, 0.3, 0.3], [0, 0, 1]]), "row 1 sums to 0.8"),
    (dict(probs=[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), r"shape \(3, 3\)"),
    (dict(probs=None), "give probs, decisions or both"),
    (dict(clusters=["a", None, "b"]), "must not be missing"),
    (dict(class_names=["a", "a", "b"]), "unique"),
    (dict(proportion_intervals="wald"), "proportion_intervals"),
    (dict(kappa_weights="cubic"), "kappa weights"),
    (dict(level=95), "level"),
    (dict(n_boot=-1), "n_boot"),
])
def test_bad_input_is_refused_with_a_clear_error(change, message):
    arguments = dict(labels=[0, 1, 2], clusters=["a", "b", "b"], class_names=["a", "b", "c"],
                     probs=[[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0, 0, 1]],
                     proportion_intervals="bootstrap", **OPTIONS)
    arguments.update(change)
    with pytest.raises(InputError, match=message):
        multiclass_tables(**arguments)


def test_importable_without_heavy_libraries():
    """Like the rest of spinedx.stats: no torch, rpy2 or slow optional library at import
    (fusion imports scikit-learn when it fits)."""
    heavy = ["torch", "rpy2", "statsmodels", "dcurves", "lifelines", "sklearn", "matplotlib"]
    code = ("import sys; import spinedx.stats.multiclass, spinedx.stats.fusion; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_reference_class_bootstrap_equals_scikit_learn_on_resampled_rows():
    names = ["unremarkable", "ivde", "fce"]
    labels, probs, dogs = _study(8, n_rows=200, n_classes=3, n_patients=30, image_labels=True)
    decisions = argmax_decisions(probs)
    n_boot, seed = 40, 3
    table = reference_class_table(labels, dogs, names, "unremarkable", probs=probs, n_boot=n_boot,
                                  seed=seed, level=0.8, proportion_intervals="bootstrap", stratify="none")
    rows = multiclass._rows(labels, dogs, 3, probs, None)
    weights = multiclass._bootstrap_weights(multiclass._patient_strata(rows, "none")[0], n_boot, seed)
    cluster_ids = pd.factorize(pd.Series(dogs, dtype=object))[1]
    for _, row in table.iterrows():
        p = names.index(row["pathology"])
        values = {"sensitivity": [], "specificity": [], "auc": []}
        for weights_row in weights:
            index = _resampled_rows(dogs, weights_row, cluster_ids)
            index = index[np.isin(labels[index], (0, p))]
            truth, called = labels[index] == p, decisions[index] == p
            values["sensitivity"].append(called[truth].mean() if truth.any() else np.nan)
            values["specificity"].append((~called[~truth]).mean() if (~truth).any() else np.nan)
            values["auc"].append(roc_auc_score(truth, probs[index, p]) if 0 < truth.sum() < truth.size
                                 else np.nan)
        for name, replicate_values in values.items():
            lo, hi = np.nanpercentile(replicate_values, [10, 90])
            assert (row[f"{name}_lo"], row[f"{name}_hi"]) == pytest.approx((lo, hi), abs=1e-12), name
