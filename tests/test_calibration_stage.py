"""Calibration and clinical-utility stage: the rows it picks and its numbers against
scikit-learn (Brier, calibration_curve), statsmodels (logistic intercept and slope) and
the net-benefit formula computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedx import config as configuration
from spinedx.stages import calibration as stage
from test_comparisons_stage import BACKBONES, case_predictions


@pytest.fixture
def settings():
    return configuration.resolve({})["calibration"]


def final_rows(predictions, cohort="external", backbone="netB", input_="ALL"):
    model = "ensemble" if cohort == "external" else "oof"
    return predictions[(predictions["cohort"] == cohort) & (predictions["model"] == model)
                       & (predictions["backbone"] == backbone) & (predictions["input"] == input_)]


def test_summary_matches_scikit_learn_and_statsmodels():
    import statsmodels.api as sm
    from sklearn.metrics import brier_score_loss

    predictions = case_predictions(n_internal=40, n_external=40)
    summary = stage.calibration_table(predictions, BACKBONES, "prob_schwannoma", "netB", 200, 0, 0.95)
    assert len(summary) == 2 * 2 * 3 and summary["final_system"].sum() == 2
    assert set(summary[summary["final_system"]]["backbone"] + summary[summary["final_system"]]["input"]) == {"netBALL"}
    for cohort in ("external", "internal"):
        # netA/T1 overlaps (netB/ALL separates the classes: no slope exists, NaN)
        rows = final_rows(predictions, cohort, "netA", "T1")
        row = summary[(summary["cohort"] == cohort) & (summary["backbone"] == "netA")
                      & (summary["input"] == "T1")].iloc[0]
        labels, probs = rows["label"].to_numpy(), rows["prob_schwannoma"].to_numpy()
        assert row["brier"] == pytest.approx(brier_score_loss(labels, probs), rel=1e-12)
        logit = np.log(probs / (1 - probs))
        intercept = sm.GLM(labels, np.ones((labels.size, 1)), family=sm.families.Binomial(), offset=logit).fit()
        slope = sm.GLM(labels, sm.add_constant(logit), family=sm.families.Binomial()).fit()
        assert row["intercept"] == pytest.approx(intercept.params[0], abs=1e-6)
        assert row["slope"] == pytest.approx(slope.params[1], abs=1e-6)
        assert row["intercept_lo"] < row["intercept"] < row["intercept_hi"]
        assert row["n"] == len(rows) and row["interval"].startswith("patient bootstrap (percentile, 200")


def test_binned_curve_is_scikit_learns_and_lowess_spans_the_predictions(settings):
    from sklearn.calibration import calibration_curve

    predictions = case_predictions(n_internal=40, n_external=40)
    final = pd.concat([final_rows(predictions, "external"), final_rows(predictions, "internal")])
    curves = stage.curve_table(final, "prob_schwannoma", settings, 0.95)
    for cohort in ("external", "internal"):
        rows = final[final["cohort"] == cohort]
        observed, predicted = calibration_curve(rows["label"], rows["prob_schwannoma"], n_bins=settings["n_bins"],
                                                strategy="quantile")
        binned = curves[(curves["cohort"] == cohort) & (curves["curve"] == "binned")]
        assert binned["observed"].to_numpy() == pytest.approx(observed, abs=1e-12)
        assert binned["predicted"].to_numpy() == pytest.approx(predicted, abs=1e-12)
        smooth = curves[(curves["cohort"] == cohort) & (curves["curve"] == "lowess")]
        assert smooth["predicted"].min() == pytest.approx(rows["prob_schwannoma"].min())
        assert smooth["predicted"].max() == pytest.approx(rows["prob_schwannoma"].max())


def test_net_benefit_is_the_formula_on_the_cases_every_model_scored(settings):
    predictions = case_predictions(n_external=40)
    curve = stage.decision_curve_table(predictions, BACKBONES, "prob_schwannoma", settings)
    external = predictions[(predictions["cohort"] == "external") & (predictions["model"] == "ensemble")]
    common = set(external[external["input"] == "T2"]["patient_id"])  # one patient lacks T2
    assert curve["n"].eq(len(common)).all()
    rows = final_rows(predictions)
    rows = rows[rows["patient_id"].isin(common)]
    labels, probs = rows["label"].to_numpy(), rows["prob_schwannoma"].to_numpy()
    for threshold in (0.1, 0.25, 0.5, 0.8):
        called = probs >= threshold
        expected = ((called & (labels == 1)).sum() - (called & (labels == 0)).sum() * threshold / (1 - threshold)) / len(labels)
        got = curve[(curve["model"] == "netB/ALL") & np.isclose(curve["threshold"], threshold)]["net_benefit"]
        assert float(got.iloc[0]) == pytest.approx(expected, abs=1e-12)
    assert set(curve["model"]) == {f"{b}/{i}" for b in BACKBONES for i in ("T1", "T2", "ALL")} | {"treat all", "treat none"}
    assert curve["threshold"].max() == pytest.approx(settings["dca_max_threshold"])


def test_figures_draw_the_final_system(settings):
    predictions = case_predictions(n_internal=40, n_external=40)
    final = pd.concat([final_rows(predictions, "external"), final_rows(predictions, "internal")])
    curves = stage.curve_table(final, "prob_schwannoma", settings, 0.95)
    summary = stage.calibration_table(predictions, BACKBONES, "prob_schwannoma", "netB", 50, 0, 0.95)
    fig = stage.calibration_figure(final, curves, summary, "prob_schwannoma", "netB", "schwannoma")
    assert len(fig.axes) == 4 and "slope" in fig.axes[0].texts[0].get_text()
    curve = stage.decision_curve_table(predictions, BACKBONES, "prob_schwannoma", settings)
    fig = stage.decision_curve_figure(curve, "netB", ["T1", "T2", "ALL"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["T1", "T2", "ALL (final system)", "treat all", "treat none"]


def test_one_sequence_calibrates_and_draws_every_models_all_input(settings):
    """A study of one sequence (a volume study's CT): ALL repeats the sequence, so only ALL
    rows, and the decision-curve figure shows every model's ALL input (a volume study's
    input modes) instead of one backbone's identical inputs."""
    models = {"netA": "2d_resnet10t", "netB": "2.5d_resnet10t"}
    predictions = case_predictions(n_internal=30, n_external=30)
    predictions = predictions[predictions["input"].isin(["T1", "ALL"])].assign(
        input=lambda f: f["input"].replace("T1", "CT"), backbone=lambda f: f["backbone"].map(models))
    names = list(models.values())
    summary = stage.calibration_table(predictions, names, "prob_schwannoma", "2.5d_resnet10t", 50, 0, 0.95)
    assert set(summary["input"]) == {"ALL"} and len(summary) == 2 * 2 and summary["final_system"].sum() == 2
    curve = stage.decision_curve_table(predictions, names, "prob_schwannoma", settings)
    assert set(curve["model"]) == {f"{name}/ALL" for name in names} | {"treat all", "treat none"}
    fig = stage.decision_curve_figure(curve, "2.5d_resnet10t", ["CT", "ALL"], names)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["2d_resnet10t", "2.5d_resnet10t (final system)", "treat all", "treat none"]


def test_nclass_decision_curves_are_dcurves_on_the_one_vs_rest_reduction(settings, tmp_path):
    """N classes: per class, the net benefit of every backbone x input on the pooled external
    cases equals dcurves' on the two-class reduction (that class's probability against "is
    that class") and the formula at one threshold by hand; dca_classes picks the classes."""
    from dcurves import dca

    from spinedx.final_system import scoring_predictions
    from spinedx.task import MulticlassTask
    from test_comparisons_stage import NCLASSES, PROB_COLUMNS, nclass_case_predictions

    predictions = nclass_case_predictions()
    task = MulticlassTask(tuple(NCLASSES))
    curve = stage.multiclass_decision_curve_table(predictions, BACKBONES, task, [], "external_pooled", settings)
    assert list(curve.columns) == stage.MULTICLASS_DECISION_CURVE_COLUMNS
    assert list(curve["class"].unique()) == NCLASSES and set(curve["test_set"]) == {"external_pooled"}
    # T1 is the only sequence: ALL is its predictions again, so only ALL is drawn (distinct_inputs)
    assert set(curve["model"]) == {"netA/ALL", "netB/ALL", "treat all", "treat none"}
    for index, class_name in enumerate(NCLASSES):
        rows = scoring_predictions(predictions, "netB", "ALL")
        rows = rows[rows["cohort"] != "internal"]
        assert len(rows) == 30 and set(rows["model"]) == {"ensemble"}
        data = pd.DataFrame({"outcome": (rows["label"] == index).astype(int).to_numpy(),
                             "p": rows[PROB_COLUMNS[index]].to_numpy()})
        reference = dca(data=data, outcome="outcome", modelnames=["p"], thresholds=[0.05, 0.2, 0.35, 0.5])
        ours = curve[(curve["class"] == class_name) & (curve["model"] == "netB/ALL")].set_index("threshold")
        for row in reference[reference["model"] == "p"].itertuples():
            assert ours.loc[row.threshold, "net_benefit"] == pytest.approx(row.net_benefit, abs=1e-12)
        treat_all = curve[(curve["class"] == class_name) & (curve["model"] == "treat all")].set_index("threshold")
        for row in reference[reference["model"] == "all"].itertuples():
            assert treat_all.loc[row.threshold, "net_benefit"] == pytest.approx(row.net_benefit, abs=1e-12)
        threshold, n = 0.2, len(data)
        called = data["p"] >= threshold
        expected = (int((called & (data.outcome == 1)).sum()) / n
                    - int((called & (data.outcome == 0)).sum()) / n * threshold / (1 - threshold))
        assert ours.loc[threshold, "net_benefit"] == pytest.approx(expected, abs=1e-12)
    chosen = stage.multiclass_decision_curve_table(predictions, BACKBONES, task, ["astrocytoma"], "external_c2",
                                                   settings)
    assert set(chosen["class"]) == {"astrocytoma"} and chosen["n"].eq(15).all()
    fig = stage.multiclass_decision_curve_figure(curve, "netB", ["T1", "ALL"], BACKBONES, "external_pooled")
    assert [ax.get_title() for ax in fig.axes[:3]] == [f"{c} vs rest" for c in NCLASSES]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]  # no spare panel: one legend below
    assert labels == ["netA", "netB (final system)", "treat all", "treat none"]
    four = pd.concat([curve, curve[curve["class"] == "astrocytoma"].assign(**{"class": "fourth"})])
    fig = stage.multiclass_decision_curve_figure(four, "netB", ["T1", "ALL"], BACKBONES, "external_pooled")
    assert not fig.legends and [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == labels  # spare panel


def test_nclass_decision_curve_classes_must_be_classes_of_the_study():
    assert configuration.resolve({"classes": ["a", "b", "c"], "calibration": {"dca_classes": ["c"]}})
    with pytest.raises(configuration.ConfigError, match=r"calibration.dca_classes \['d'\]"):
        configuration.resolve({"classes": ["a", "b", "c"], "calibration": {"dca_classes": ["a", "d"]}})


def test_two_classes_of_another_shape_calibrate_the_positive_class_on_every_test_set(settings):
    """Two classes in the N-class path (hold-out, two external cohorts): the positive
    class's Brier, intercept and slope on every test set (scikit-learn, statsmodels), no
    mirror row of the negative class and no multi-class Brier (twice the Brier); decision
    curves of the positive class by default, equal to dcurves."""
    import statsmodels.api as sm
    from dcurves import dca
    from sklearn.metrics import brier_score_loss

    from spinedx.final_system import evaluated_sets, scoring_predictions
    from spinedx.task import BinaryTask
    from test_comparisons_stage import BINARY, binary_holdout_case_predictions

    predictions = binary_holdout_case_predictions()
    task = BinaryTask(tuple(BINARY), 0.5)
    scored = scoring_predictions(predictions, "netB")
    summary = stage.multiclass_calibration_table(scored, task, "netB", 0, 0, 0.95)
    assert list(summary["test_set"]) == ["internal_test", "external_c2", "external_c3", "external_pooled"]
    assert set(summary["class"]) == {"ependymoma"}
    for name, rows in evaluated_sets(scored):
        row = summary[summary["test_set"] == name].iloc[0]
        labels, probs = rows["label"].to_numpy(), rows["prob_ependymoma"].to_numpy()
        assert row["n"] == len(rows) and row["brier"] == pytest.approx(brier_score_loss(labels, probs), abs=1e-12)
        logit = np.log(probs / (1 - probs))
        slope = sm.GLM(labels, sm.add_constant(logit), family=sm.families.Binomial()).fit()
        assert row["slope"] == pytest.approx(slope.params[1], rel=1e-6)
        intercept = sm.GLM(labels, np.ones((len(labels), 1)), family=sm.families.Binomial(), offset=logit).fit()
        assert row["intercept"] == pytest.approx(intercept.params[0], rel=1e-6, abs=1e-9)
    curves = stage.multiclass_curve_table("external_pooled", dict(evaluated_sets(scored))["external_pooled"], task,
                                          settings, 0.95)
    assert set(curves["class"]) == {"ependymoma"}
    curve = stage.multiclass_decision_curve_table(predictions, BACKBONES, task, [], "external_pooled", settings)
    assert set(curve["class"]) == {"ependymoma"}
    rows = scoring_predictions(predictions, "netA", "ALL")  # one sequence (T1): ALL only
    rows = rows[rows["cohort"] != "internal"]
    data = pd.DataFrame({"outcome": rows["label"].to_numpy(), "p": rows["prob_ependymoma"].to_numpy()})
    reference = dca(data=data, outcome="outcome", modelnames=["p"], thresholds=[0.05, 0.2, 0.35, 0.5])
    ours = curve[curve["model"] == "netA/ALL"].set_index("threshold")
    assert len(ours)
    for row in reference[reference["model"] == "p"].itertuples():
        assert ours.loc[row.threshold, "net_benefit"] == pytest.approx(row.net_benefit, abs=1e-12)
    # a chosen class still gets its curve (calibration.dca_classes)
    chosen = stage.multiclass_decision_curve_table(predictions, BACKBONES, task, ["schwannoma"], "external_c2", settings)
    assert set(chosen["class"]) == {"schwannoma"}
