"""Tests of spinedx.stats.fusion: the design against scikit-learn's own transformers, the
leak canaries, refusal of test rows in fitting, and input errors."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gmean
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from spinedx.errors import InputError
from spinedx.stats.fusion import (
    FUSION_INPUTS,
    FusionSpec,
    fit_fusion,
    fit_fusion_models,
    fusion_predictions,
)

CLASSES = ("schwannoma", "meningioma", "ependymoma")
PROBS = [f"prob_{name}" for name in CLASSES]


def _cohort(seed, n, prediction_set, prefix, image_signal=0.8, sites=("A", "B")):
    """Case-level rows: image probabilities with partial signal, age and sex that carry
    real but partial signal (meningioma: older, mostly women), site without signal."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), label] += image_signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    age = rng.normal(np.array([50.0, 62.0, 38.0])[label], 10.0)
    female = rng.random(n) < np.array([0.5, 0.8, 0.4])[label]
    frame = pd.DataFrame(probs, columns=PROBS)
    frame.insert(0, "patient_id", [f"{prefix}{i:03d}" for i in range(n)])
    frame.insert(1, "prediction_set", prediction_set)
    frame.insert(2, "label", label)
    return frame.assign(age=age, sex=np.where(female, "F", "M"), site=rng.choice(sites, n))


def _spec(numeric=("age",), categorical=("sex", "site"), C=1.0):
    return FusionSpec(class_names=CLASSES, numeric=numeric, categorical=categorical, C=C, seed=0)


@pytest.fixture
def data():
    training = _cohort(0, 400, "oof", "T")
    test = _cohort(1, 200, "external_a", "E", sites=("A", "B", "C"))  # site C unseen
    return training, test


def test_design_and_fit_equal_scikit_learn_pipeline(data):
    """Standardisation with training statistics, one-hot with unseen levels as zeros and
    the learner, against scikit-learn's StandardScaler + OneHotEncoder + LogisticRegression."""
    training, test = data
    spec = _spec()
    model = fit_fusion(training, spec, "image+clinical")
    ours = model.predict(test)

    def clr(frame):  # centred log-ratio via the geometric mean (no floor is hit here)
        probs = frame[PROBS].to_numpy()
        return pd.DataFrame(np.log(probs / gmean(probs, axis=1)[:, None]),
                            columns=[f"clr_{c}" for c in CLASSES])

    def features(frame):
        return pd.concat([clr(frame), frame[["age", "sex", "site"]].reset_index(drop=True)], axis=1)

    reference = make_pipeline(
        ColumnTransformer([
            ("numeric", StandardScaler(), [f"clr_{c}" for c in CLASSES] + ["age"]),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["sex", "site"]),
        ]),
        LogisticRegression(C=1.0, l1_ratio=0.0, tol=1e-8, max_iter=10_000),
    )
    reference.fit(features(training), training["label"])
    expected = reference.predict_proba(features(test))
    np.testing.assert_allclose(ours.probs[PROBS].to_numpy(), expected, atol=1e-9)
    assert list(model.feature_names) == [f"clr_{c}" for c in CLASSES] + [
        "age", "sex=F", "sex=M", "site=A", "site=B"]
    assert ours.probs["patient_id"].tolist() == test["patient_id"].tolist()
    unseen = ours.unseen_levels
    assert unseen[["covariate", "level"]].values.tolist() == [["site", "C"]]
    assert unseen.loc[0, "n_patients"] == (test["site"] == "C").sum()
    assert unseen.loc[0, "patients"].startswith(test.loc[test["site"] == "C", "patient_id"].iloc[0])


def test_three_models_side_by_side(data):
    training, test = data
    predictions, unseen = fusion_predictions(training, test, _spec())
    assert predictions["fusion_input"].unique().tolist() == list(FUSION_INPUTS)
    assert list(predictions.columns[:4]) == ["fusion_input", "patient_id", "prediction_set", "label"]
    np.testing.assert_allclose(predictions[PROBS].sum(axis=1), 1.0, atol=1e-12)
    assert len(predictions) == 3 * len(test) and len(unseen) == 1
    # The covariates carry signal here: fusing them lowers the test log loss of the image
    # probabilities re-calibrated alone, and the clinical covariates alone beat chance.
    loss = {name: log_loss(group["label"], group[PROBS], labels=[0, 1, 2])
            for name, group in predictions.groupby("fusion_input")}
    assert loss["image+clinical"] < loss["image"] - 0.05
    assert loss["clinical"] < np.log(3) - 0.05


# --- no test data in fitting ----------------------------------------------------------


@pytest.mark.parametrize("test_set", ["external_a", "internal_test", "test"])
def test_fitting_refuses_rows_tagged_as_test(data, test_set):
    training, test = data
    leaked = pd.concat([training, test.assign(prediction_set=test_set)], ignore_index=True)
    for inputs in FUSION_INPUTS:
        with pytest.raises(InputError, match=rf"fitted on oof or validation rows only; 200 row\(s\) are tagged \['{test_set}'\]"):
            fit_fusion(leaked, _spec(), inputs)


def test_validation_rows_of_a_hold_out_may_fit(data):
    training, test = data
    model = fit_fusion(training.assign(prediction_set="validation"), _spec(), "image+clinical")
    assert len(model.predict(test).probs) == len(test)


def test_prediction_refuses_training_rows_and_patients(data):
    training, test = data
    model = fit_fusion(training, _spec(), "image+clinical")
    with pytest.raises(InputError, match=r"test rows only; 400 row\(s\) are tagged \['oof'\]"):
        model.predict(training)
    same_patient = test.copy()
    same_patient.loc[0, "patient_id"] = training.loc[5, "patient_id"]
    with pytest.raises(InputError, match=r"patient\(s\) T005 trained the fusion model"):
        model.predict(same_patient)


def _canary_sets(training, test, kind):
    """Add a covariate equal to the label on the test rows only (noise in training)."""
    rng = np.random.default_rng(7)
    if kind == "numeric":
        return (training.assign(canary=rng.normal(size=len(training))),
                test.assign(canary=test["label"].astype(float)))
    return (training.assign(canary=rng.choice(CLASSES, len(training))),
            test.assign(canary=np.array(CLASSES)[test["label"]]))


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_leak_canary_gives_no_benefit(data, kind):
    training, test = data
    training, test = _canary_sets(training, test, kind)
    numeric, categorical = (("age", "canary"), ("sex", "site")) if kind == "numeric" else (
        ("age",), ("sex", "site", "canary"))
    with_canary = fit_fusion(training, _spec(numeric, categorical), "image+clinical").predict(test).probs
    without = fit_fusion(training, _spec(), "image+clinical").predict(test).probs

    def scores(probs):
        return accuracy_score(test["label"], probs[PROBS].to_numpy().argmax(axis=1)), log_loss(
            test["label"], probs[PROBS], labels=[0, 1, 2])

    (accuracy, loss), (accuracy_without, loss_without) = scores(with_canary), scores(without)
    # Measured: accuracy 0.73 / 0.70 with the canary against 0.73 without; log loss
    # 0.597 / 0.648 against 0.592. The canary's training coefficient fits noise, so it
    # can move the test log loss a little either way, never down by a leak's margin.
    assert accuracy <= accuracy_without + 0.02 and loss >= loss_without - 0.01

    # Positive control: had the same test rows trained the stacker (here as if tagged
    # "validation", under other ids, beside the 400 training rows), the canary would lower
    # the test log loss by far more than the margin above (measured 0.437 / 0.339).
    leaked = pd.concat([training, test.assign(prediction_set="validation",
                                              patient_id="L" + test["patient_id"])], ignore_index=True)
    leaky = fit_fusion(leaked, _spec(numeric, categorical), "image+clinical").predict(test).probs
    leaky_accuracy, leaky_loss = scores(leaky)
    assert leaky_loss < loss_without - 0.1 and leaky_accuracy > accuracy_without + 0.05


def test_a_test_row_is_predicted_from_that_row_alone(data):
    """No statistic of the test rows enters a prediction: predicting a subset, or the
    rows with the other rows' covariates changed, gives the same probabilities."""
    training, test = data
    model = fit_fusion(training, _spec(), "image+clinical")
    whole = model.predict(test).probs.set_index("patient_id")[PROBS]
    part = model.predict(test.iloc[::7]).probs.set_index("patient_id")[PROBS]
    pd.testing.assert_frame_equal(part, whole.loc[part.index], check_exact=False, atol=1e-14)
    shifted = test.copy()
    shifted.loc[1:, "age"] += 40
    shifted.loc[1:, PROBS] = shifted.loc[1:, PROBS[::-1]].to_numpy()
    first = model.predict(shifted).probs.set_index("patient_id")[PROBS].iloc[0]
    pd.testing.assert_series_equal(first, whole.iloc[0], check_exact=False, atol=1e-14)


# --- input errors ----------------------------------------------------------------------


def test_missing_covariate_names_column_and_patients(data):
    training, test = data
    training.loc[[3, 17], "age"] = np.nan
    with pytest.raises(InputError, match=r"column 'age' is missing for patient\(s\) T003, T017"):
        fit_fusion(training, _spec(), "image+clinical")
    # Image-only fusion does not use the covariates, so their gaps do not matter there.
    model = fit_fusion(training, _spec(), "image")
    test.loc[4, "sex"] = ""
    model.predict(test)
    with pytest.raises(InputError, match=r"column 'sex' is missing for patient\(s\) E004"):
        fit_fusion(training.dropna(), _spec(), "clinical").predict(test)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.assign(age="old"), "numeric covariate 'age' is not a number"),
    (lambda t: t.assign(age=50.0), r"\['age'\] are constant"),
    (lambda t: t[t["label"] != 2], r"no patient of class\(es\) \['ependymoma'\]"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "one per patient"),
    (lambda t: t.drop(columns="prob_meningioma"), "lack column"),
    (lambda t: t.assign(label=5), "class indices 0..2"),
])
def test_bad_training_rows_are_refused(data, change, message):
    training, _ = data
    with pytest.raises(InputError, match=message):
        fit_fusion(change(training), _spec(), "image+clinical")


def test_bad_specs_are_refused(data):
    training, _ = data
    with pytest.raises(InputError, match="both numeric and categorical"):
        _spec(numeric=("age",), categorical=("age",))
    with pytest.raises(InputError, match="positive number"):
        _spec(C=0.0)
    with pytest.raises(InputError, match="need declared covariates"):
        fit_fusion(training, _spec(numeric=(), categorical=()), "clinical")
    with pytest.raises(InputError, match="fusion inputs must be one of"):
        fit_fusion(training, _spec(), "image+text")


def test_two_classes_use_a_binary_logistic_model():
    rng = np.random.default_rng(3)
    n = 300
    label = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + 0.3 * (label - 0.5) + rng.normal(0, 0.2, n), 0.0, 1.0)  # exact 0 and 1 occur
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "prediction_set": "oof",
                          "label": label, "prob_ependymoma": 1 - p1, "prob_schwannoma": p1,
                          "age": rng.normal(50, 10, n)})
    spec = FusionSpec(("ependymoma", "schwannoma"), ("age",), (), C=1.0, seed=0)
    models = fit_fusion_models(frame, spec)
    coefficients = models["image+clinical"].coefficients()
    assert list(coefficients.columns) == ["schwannoma"]
    assert list(coefficients.index) == ["intercept", "clr_ependymoma", "clr_schwannoma", "age"]
    # clr of two classes is -+logit/2: the two image features get opposite coefficients.
    assert coefficients.loc["clr_schwannoma", "schwannoma"] == pytest.approx(
        -coefficients.loc["clr_ependymoma", "schwannoma"], rel=1e-6)
    test = frame.iloc[:10].assign(patient_id=lambda t: "X" + t["patient_id"], prediction_set="external")
    probs = models["image"].predict(test).probs
    assert np.isfinite(probs[["prob_ependymoma", "prob_schwannoma"]].to_numpy()).all()


def test_categorical_covariates_alone(data):
    training, test = data
    model = fit_fusion(training, _spec(numeric=(), categorical=("sex",)), "clinical")
    assert model.feature_names == ("sex=F", "sex=M")
    probs = model.predict(test).probs[PROBS].to_numpy()
    # Only sex enters: every woman gets one probability vector, every man another.
    assert len(np.unique(probs.round(12), axis=0)) == 2
