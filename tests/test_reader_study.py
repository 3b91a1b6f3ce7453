"""Reader study: readers.csv checked and joined to the cases, per reader metrics against
scikit-learn / statsmodels / a direct DeLong computation, the stage's MRMC rows against
the validated OR library on the same tables, the model-vs-readers (2T) table built
independently, the demo simulation, the N-class contrast and the figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spinedx import config as configuration
from spinedx.demo.reader_study import simulate_readers
from spinedx.errors import InputError
from spinedx.readers.reader_study import read_reader_study
from spinedx.stages import reader_study as stage
from spinedx.stats.mrmc import obuchowski_rockette, simulate_roe_metz

CLASSES = ["ependymoma", "schwannoma"]
CONDITIONS = ["unaided", "aided"]


@pytest.fixture
def settings():
    return configuration.resolve({})["reader_study"]


def roe_metz_study(seed=3, n_readers=4, n_positive=12, n_negative=14, separations=(1.0, 1.6)):
    """A reader study of probabilities from the Roe-Metz simulation (modality 0 = unaided)."""
    table = simulate_roe_metz(n_readers, n_positive, n_negative, separations, seed=seed)
    cases = pd.DataFrame({"patient_id": [f"P{k:03d}" for k in range(n_positive + n_negative)]})
    cases["label"] = np.r_[np.ones(n_positive, int), np.zeros(n_negative, int)]
    cases["diagnosis"] = np.where(cases["label"] == 1, CLASSES[1], CLASSES[0])
    cases["cohort"] = "external"
    rating = 1 / (1 + np.exp(-table["rating"].to_numpy()))
    readers = pd.DataFrame({
        "reader": "R" + (table["reader"] + 1).astype(str), "patient_id": cases["patient_id"].to_numpy()[table["case"]],
        "condition": np.asarray(CONDITIONS)[table["modality"]], "rating": np.round(rating, 4),
        "decision": np.where(rating > 0.5, CLASSES[1], CLASSES[0]),
        "experience": np.where(table["reader"] % 2 == 0, "senior", "junior")})
    return cases, readers


def write(tmp_path, readers: pd.DataFrame, name="readers.csv"):
    path = tmp_path / name
    readers.to_csv(path, index=False)
    return path


def model_of(cases: pd.DataFrame, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rating = 1 / (1 + np.exp(-(2.5 * cases["label"].to_numpy() - 1.25 + rng.normal(0, 1, len(cases)))))
    return pd.DataFrame({"patient_id": cases["patient_id"], "rating": rating,
                         "called_positive": (rating > 0.5).astype(int),
                         "decision": np.where(rating > 0.5, CLASSES[1], CLASSES[0])})


# --- readers.csv --------------------------------------------------------------------------

def test_a_good_file_is_joined_to_the_cases_with_the_truth_from_the_cases_table(tmp_path):
    cases, readers = roe_metz_study()
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    assert len(study) == len(readers) and list(study["condition"].unique()) == CONDITIONS
    truth = study.drop_duplicates("patient_id").set_index("patient_id")["truth"]
    assert (truth == cases.set_index("patient_id")["label"]).all()
    assert set(study["experience"]) == {"senior", "junior"}
    # 0/1 decisions mean the last class (positive) and the first.
    numeric = readers.assign(decision=(readers["decision"] == CLASSES[1]).astype(int))
    again = read_reader_study(write(tmp_path, numeric, "numeric.csv"), cases, CLASSES, CONDITIONS)
    assert (again["decision"] == study["decision"]).all()


@pytest.mark.parametrize("change, message, fix", [
    (lambda r: r.assign(patient_id=r["patient_id"].replace("P000", "P999")), r"case\(s\) \['P999'\]",
     "add the patient to the cases table"),
    (lambda r: r.assign(condition=r["condition"].replace("aided", "with AI")), r"unknown condition\(s\) \['with AI'\]",
     "reader_study.conditions"),
    (lambda r: r[r["condition"] == "unaided"], r"condition\(s\) \['aided'\] .* have no ratings",
     "remove the condition from the config"),
    (lambda r: r.assign(rating=r["rating"].astype(str).where(r.index != 5, "high")), r"rating\(s\) \['high'\]",
     "probability of a positive case in \\[0, 1\\]"),
    (lambda r: r.assign(rating=r["rating"] * 100), "not probabilities in \\[0, 1\\]", "divide by 100"),
    (lambda r: r.assign(decision=r["decision"].where(r.index != 3, "meningioma")), r"decision\(s\) \['meningioma'\]",
     "write the class the reader chose"),
    (lambda r: r.drop(index=7), "not fully crossed", "add the missing ratings"),
    (lambda r: pd.concat([r, r.iloc[[0]]]), "more than one rating", "keep one reading each"),
    (lambda r: r.assign(experience=r["experience"].where(r.index != 0, "fellow")), "more than one experience",
     "give each reader one"),
    (lambda r: r.drop(columns="decision"), r"missing column\(s\) \['decision'\]", "one row per reader"),
    (lambda r: r.assign(reader=r["reader"].where(r.index != 2, "")), "empty value", "every row needs"),
])
def test_bad_files_name_the_file_and_the_fix(tmp_path, change, message, fix):
    cases, readers = roe_metz_study()
    path = write(tmp_path, change(readers.copy()))
    with pytest.raises(InputError, match=message) as error:
        read_reader_study(path, cases, CLASSES, CONDITIONS)
    assert str(path) in str(error.value)
    assert pytest.importorskip("re").search(fix, str(error.value)), str(error.value)


def test_ordinal_ratings_must_be_integers(tmp_path):
    cases, readers = roe_metz_study()
    ordinal = readers.assign(rating=np.ceil(readers["rating"] * 5).clip(1, 5).astype(int))
    study = read_reader_study(write(tmp_path, ordinal), cases, CLASSES, CONDITIONS, "ordinal")
    assert set(study["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    with pytest.raises(InputError, match="not integer scores"):
        read_reader_study(write(tmp_path, readers, "fractions.csv"), cases, CLASSES, CONDITIONS, "ordinal")


def test_too_few_cases_of_a_class_are_refused(tmp_path):
    cases, readers = roe_metz_study(n_positive=12, n_negative=14)
    only = readers[readers["patient_id"].isin(cases["patient_id"][cases["label"] == 1].tolist() + ["P012"])]
    with pytest.raises(InputError, match="at least 2 of each"):
        read_reader_study(write(tmp_path, only), cases, CLASSES, CONDITIONS)


# --- per reader metrics --------------------------------------------------------------------

def delong_variance_by_pairs(truth, rating) -> float:
    """DeLong et al. (1988) with the m x n comparison matrix (not the library's midranks)."""
    positive, negative = rating[truth == 1], rating[truth == 0]
    psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    return psi.mean(axis=1).var(ddof=1) / positive.size + psi.mean(axis=0).var(ddof=1) / negative.size


def test_reader_metrics_match_scikit_learn_statsmodels_and_a_direct_delong(tmp_path):
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    cases, readers = roe_metz_study()
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    model = model_of(cases)
    metrics = stage.reader_metrics(study, model, CONDITIONS, 0.95)
    assert len(metrics) == 4 * 2 + 1 and metrics["reader"].iloc[-1] == stage.MODEL
    for row in metrics.itertuples():
        if row.reader == stage.MODEL:
            truth = cases["label"].to_numpy()
            rating, called = model["rating"].to_numpy(), model["called_positive"].to_numpy()
        else:
            one = study[(study["reader"] == row.reader) & (study["condition"] == row.condition)]
            truth, rating, called = one["truth"].to_numpy(), one["rating"].to_numpy(), one["called_positive"].to_numpy()
        assert row.auc == pytest.approx(roc_auc_score(truth, rating), abs=1e-12)
        se = math.sqrt(delong_variance_by_pairs(truth, rating))
        assert row.auc_se == pytest.approx(se, rel=1e-9)
        assert row.auc_lo == pytest.approx(max(row.auc - norm.ppf(0.975) * se, 0), abs=1e-9)
        tp, n_pos = int(((called == 1) & (truth == 1)).sum()), int(truth.sum())
        tn, n_neg = int(((called == 0) & (truth == 0)).sum()), int((truth == 0).sum())
        assert (row.tp, row.tn, row.n_pos, row.n_neg) == (tp, tn, n_pos, n_neg)
        lo, hi = proportion_confint(tp, n_pos, method="wilson")
        assert (row.sensitivity_lo, row.sensitivity_hi) == pytest.approx((lo, hi), abs=1e-12)
        lo, hi = proportion_confint(tn, n_neg, method="wilson")
        assert (row.specificity_lo, row.specificity_hi) == pytest.approx((lo, hi), abs=1e-12)
        assert row.accuracy == pytest.approx((tp + tn) / truth.size)


# --- MRMC ----------------------------------------------------------------------------------

def test_condition_rows_are_the_or_library_on_the_same_table(tmp_path, settings):
    cases, readers = roe_metz_study(seed=11)
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    table = stage.mrmc_table(study, model_of(cases), settings, 0.95, "readers.csv")
    long = readers.merge(cases[["patient_id", "label"]], on="patient_id")
    for analysis in ("RRRC", "FRRC", "RRFC"):
        expected = obuchowski_rockette(long, analysis=analysis, covariance="jackknife", reader="reader",
                                       case="patient_id", modality="condition", truth="label", rating="rating",
                                       modalities=["aided", "unaided"])
        rows = table[(table["contrast"] == "conditions") & (table["analysis"] == analysis)]
        difference = rows[rows["row_type"] == "difference"].iloc[0]
        reference = expected.differences.iloc[0]
        assert difference["comparison"] == "aided - unaided"
        for ours, theirs in (("estimate", "difference"), ("se", "se"), ("df", "df"), ("p", "p"),
                             ("ci_lo", "ci_lo"), ("ci_hi", "ci_hi")):
            assert difference[ours] == pytest.approx(reference[theirs], rel=1e-12), (analysis, ours)
        modality = rows[rows["row_type"] == "modality"].set_index("modality")
        for row in expected.modality_auc.itertuples():
            assert modality.loc[row.modality, "estimate"] == pytest.approx(row.auc, rel=1e-12)
            assert modality.loc[row.modality, "ci_lo"] == pytest.approx(row.ci_lo, rel=1e-12)
        test = rows[rows["row_type"] == "global"].iloc[0]
        assert test["statistic"] == pytest.approx(expected.global_test["statistic"], rel=1e-12)
        assert test["df2"] == pytest.approx(expected.global_test["df2"], rel=1e-12)
    # 3 contrasts of all 4 readers (conditions, model vs each condition) + the conditions within
    # each experience group of 2 readers.
    assert (table[table["analysis"] == "FRRC"]["row_type"] == "reader difference").sum() == 4 * 3 + 2 * 2


def test_model_vs_readers_is_the_2t_table_with_the_model_duplicated_per_reader(tmp_path, settings):
    from sklearn.metrics import roc_auc_score

    cases, readers = roe_metz_study(seed=5)
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    model = model_of(cases, seed=2)
    table = stage.mrmc_table(study, model, dict(settings, covariance="delong"), 0.95, "readers.csv")
    for condition in CONDITIONS:
        theirs = readers[readers["condition"] == condition]
        duplicated = pd.concat([theirs.assign(condition="model", rating=theirs["patient_id"].map(
            model.set_index("patient_id")["rating"])), theirs], ignore_index=True)
        duplicated = duplicated.merge(cases[["patient_id", "label"]], on="patient_id")
        expected = obuchowski_rockette(duplicated, analysis="RRRC", covariance="delong", reader="reader",
                                       case="patient_id", modality="condition", truth="label", rating="rating",
                                       modalities=["model", condition]).differences.iloc[0]
        row = table[(table["contrast"] == f"model vs {condition}") & (table["analysis"] == "RRRC")
                    & (table["row_type"] == "difference")].iloc[0]
        mean_reader = np.mean([roc_auc_score(g["truth"], g["rating"])
                               for _, g in study[study["condition"] == condition].groupby("reader")])
        assert row["estimate"] == pytest.approx(roc_auc_score(cases["label"], model["rating"]) - mean_reader, abs=1e-12)
        assert (row["estimate"], row["se"], row["df"], row["p"]) == pytest.approx(
            (expected["difference"], expected["se"], expected["df"], expected["p"]), rel=1e-12)


def test_one_condition_gives_the_model_comparison_only(tmp_path, settings):
    cases, readers = roe_metz_study()
    unaided = readers[readers["condition"] == "unaided"]
    study = read_reader_study(write(tmp_path, unaided), cases, CLASSES, ["unaided"])
    table = stage.mrmc_table(study, model_of(cases), dict(settings, conditions=["unaided"]), 0.95, "x")
    assert set(table["contrast"]) == {"model vs unaided"}


# --- the demo simulation ---------------------------------------------------------------------

def test_demo_readers_are_plausible_reproducible_and_helped_by_a_good_model(tmp_path, settings):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    label = np.r_[np.ones(40, int), np.zeros(40, int)]
    probability = 1 / (1 + np.exp(-(4 * label - 2 + rng.normal(0, 1, label.size))))  # model AUC ~0.97
    cases = pd.DataFrame({"patient_id": [f"E{k:03d}" for k in range(label.size)], "label": label,
                          "model_probability": probability})
    readers = simulate_readers(cases, settings["demo"], CLASSES, CONDITIONS)
    assert readers.equals(simulate_readers(cases, settings["demo"], CLASSES, CONDITIONS))
    assert readers["reader"].nunique() == 6 and set(readers["experience"]) == {"senior", "junior"}
    table = cases.assign(diagnosis=np.where(label == 1, CLASSES[1], CLASSES[0]), cohort="external")
    study = read_reader_study(write(tmp_path, readers), table, CLASSES, CONDITIONS)  # a valid readers.csv
    auc = study.groupby(["condition", "reader"]).apply(lambda g: roc_auc_score(g["truth"], g["rating"]))
    assert 0.65 < auc["unaided"].mean() < 0.92 and (auc["unaided"] > 0.55).all()
    assert auc["aided"].mean() > auc["unaided"].mean() + 0.03
    assert roc_auc_score(label, probability) > auc["aided"].mean()


# --- more than two classes -------------------------------------------------------------------

def test_three_classes_use_the_configured_binary_contrast(tmp_path, settings):
    classes = ["a", "b", "c"]
    cases, readers = roe_metz_study(seed=8)
    rng = np.random.default_rng(0)
    diagnosis = np.where(cases["label"] == 1, rng.choice(["b", "c"], len(cases)), "a")
    cases = cases.assign(diagnosis=diagnosis, label=pd.Series(diagnosis).map({"a": 0, "b": 1, "c": 2}))
    decided = np.where(readers["rating"] > 0.5, np.where(readers.index % 2, "b", "c"), "a")
    study = read_reader_study(write(tmp_path, readers.assign(decision=decided)), cases, classes, CONDITIONS,
                              positive_classes=["b", "c"])
    truth = study.set_index("patient_id")["truth"].groupby(level=0).first()
    assert (truth == cases.set_index("patient_id")["diagnosis"].isin(["b", "c"]).astype(int)).all()
    assert (study["called_positive"] == study["decision"].isin(["b", "c"])).all()
    probabilities = pd.DataFrame({"backbone": "net", "input": "ALL", "model": "ensemble", "cohort": "external",
                                  "prediction_set": "external",  # as the case_level stage writes it
                                  "patient_id": cases["patient_id"], "label": cases["label"],
                                  "prob_a": 0.5, "prob_b": 0.3, "prob_c": 0.2})
    model = stage.model_ratings(probabilities, "net", classes, ["b", "c"], 0.5)
    assert model["rating"].to_numpy() == pytest.approx(0.5) and (model["decision"] == "a").all()
    decisions = stage.decision_table(study, model, classes)
    one = decisions[(decisions["reader"] == "R1") & (decisions["condition"] == "aided")]
    assert len(one) == 9 and one["n"].sum() == len(cases)
    counts = study[(study["reader"] == "R1") & (study["condition"] == "aided")].groupby(["diagnosis", "decision"]).size()
    assert one.set_index(["true_class", "decided_class"])["n"].loc[counts.index].tolist() == counts.tolist()
    with pytest.raises(InputError, match="some, not all"):
        read_reader_study(write(tmp_path, readers), cases, classes, CONDITIONS, positive_classes=classes)


def test_the_models_ratings_of_a_holdout_study_with_several_external_cohorts():
    """Two classes of another shape (hold-out, two external cohorts): each external case is
    rated by the ensemble, each internal case by the first repeat that tests it, validation
    cases (they chose the epoch) and the repeats' own external rows by nobody."""
    from test_comparisons_stage import BINARY, binary_holdout_case_predictions

    predictions = binary_holdout_case_predictions()
    model = stage.model_ratings(predictions, "netB", BINARY, ["ependymoma"], 0.5)
    assert model["patient_id"].is_unique and not model["patient_id"].str.startswith("V").any()
    assert set(model["patient_id"].str[0]) == {"I", "2", "3"} and len(model) == 30 + 15 + 15
    rows = predictions[(predictions["backbone"] == "netB") & (predictions["input"] == "ALL")]
    expected = pd.concat([rows[(rows["cohort"] != "internal") & (rows["model"] == "ensemble")],
                          rows[(rows["prediction_set"] == "internal_test") & (rows["model"] == "holdout0")],
                          rows[(rows["prediction_set"] == "internal_test") & (rows["model"] == "holdout1")]
                          ]).drop_duplicates("patient_id").set_index("patient_id")["prob_ependymoma"]
    rated = model.set_index("patient_id")
    assert rated["rating"].to_numpy() == pytest.approx(expected.loc[rated.index].to_numpy(), abs=0)
    assert (rated["decision"] == np.where(rated["rating"] > 0.5, "ependymoma", "schwannoma")).all()


# --- the figure ---------------------------------------------------------------------------------

def test_figure_puts_every_reader_at_their_operating_points_with_arrows(tmp_path):
    cases, readers = roe_metz_study()
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    model = model_of(cases)
    metrics = stage.reader_metrics(study, model, CONDITIONS, 0.95)
    fig = stage.reader_roc_figure(study, model, metrics, CONDITIONS, CLASSES[1], "net")
    ax = fig.axes[0]
    drawn = {(round(float(line.get_xdata()[0]), 9), round(float(line.get_ydata()[0]), 9))
             for line in ax.lines if line.get_linestyle() in ("None", "") and len(line.get_xdata()) == 1}
    for row in metrics[metrics["reader"] != stage.MODEL].itertuples():
        assert (round(1 - row.specificity, 9), round(row.sensitivity, 9)) in drawn
    moved = metrics[metrics["reader"] != stage.MODEL].pivot(index="reader", columns="condition",
                                                            values=["sensitivity", "specificity"])
    n_moved = int((moved.xs("unaided", axis=1, level=1) != moved.xs("aided", axis=1, level=1)).any(axis=1).sum())
    assert len([t for t in ax.texts if t.arrow_patch is not None]) == n_moved
    assert "model (net), AUC" in [t.get_text() for t in ax.get_legend().get_texts()][0]


def test_vandyke_through_readers_csv_gives_the_published_or_dbm_mrmc_numbers(tmp_path, settings):
    """The VanDyke data (5 readers x 114 cases x 2 modalities, ordinal ratings) written as a
    readers.csv and analysed by the stage: OR-DBM MRMC 2.51's printed RRRC results (quoted
    in tests/test_stats_mrmc.py), with the stage's orientation (later condition minus the
    first: 2 - 1). Skipped without ../shared/reference/VanDyke.csv."""
    from test_stats_mrmc import VANDYKE, printed

    if not VANDYKE.exists():
        pytest.skip(f"{VANDYKE} absent")
    data = pd.read_csv(VANDYKE)
    cases = data.drop_duplicates("case")[["case", "truth"]].rename(columns={"case": "patient_id"})
    cases = cases.assign(patient_id=cases["patient_id"].astype(str), label=cases["truth"],
                         diagnosis=np.where(cases["truth"] == 1, CLASSES[1], CLASSES[0]), cohort="external")
    readers = pd.DataFrame({"reader": data["reader"].astype(str), "patient_id": data["case"].astype(str),
                            "condition": data["modality"].astype(str), "rating": data["rating"].astype(int),
                            "decision": np.where(data["rating"] >= 4, 1, 0)})
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, ["1", "2"], "ordinal")
    table = stage.mrmc_table(study, model_of(cases), dict(settings, conditions=["1", "2"], model_vs_readers=False),
                             0.95, "VanDyke")
    rrrc = table[(table["contrast"] == "conditions") & (table["analysis"] == "RRRC")]
    difference = rrrc[rrrc["row_type"] == "difference"].iloc[0]
    assert difference["comparison"] == "2 - 1"
    for key, text in (("estimate", "0.04380"), ("se", "0.02075"), ("df", "15.26"), ("p", "0.0517"),
                      ("ci_lo", "-0.00036"), ("ci_hi", "0.08796")):
        assert printed(difference[key], text), (key, difference[key], text)
    test = rrrc[rrrc["row_type"] == "global"].iloc[0]
    assert printed(test["statistic"], "4.46") and printed(test["df2"], "15.26")
    modality = rrrc[rrrc["row_type"] == "modality"].set_index("modality")
    assert printed(modality.loc["1", "estimate"], "0.89703704") and printed(modality.loc["1", "ci_lo"], "0.82522360")


# --- experience groups, F1 (two-class volume studies' reader study: r15ct) -----------------------

def test_f1_and_experience_group_rows_match_scikit_learn_and_the_or_library(tmp_path, settings):
    """Per reader F1 against scikit-learn; per experience group x condition the readers'
    mean AUC (scikit-learn) with the single-modality OR interval of the primary analysis
    on that group's readings, and the mean sensitivity / specificity / F1 (scikit-learn)."""
    from sklearn.metrics import f1_score, recall_score, roc_auc_score

    cases, readers = roe_metz_study(seed=21, n_readers=6)
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    metrics = stage.reader_metrics(study, model_of(cases), CONDITIONS, 0.95, settings,
                                   {"n_boot": 300, "seed": 4}, "readers.csv")
    singles = metrics[~metrics["reader"].isin([stage.GROUP_MEAN, stage.MODEL])]
    for row in singles.itertuples():
        one = study[(study["reader"] == row.reader) & (study["condition"] == row.condition)]
        assert row.f1 == pytest.approx(f1_score(one["truth"], one["called_positive"]), abs=1e-12)
        assert row.f1_lo <= row.f1 <= row.f1_hi and row.n_readers == 1
    groups = metrics[metrics["reader"] == stage.GROUP_MEAN]
    assert sorted(set(groups["experience"])) == ["all", "junior", "senior"] and len(groups) == 3 * 2
    for row in groups.itertuples():
        members = sorted(set(readers["reader"])) if row.experience == "all" else sorted(
            set(readers.loc[readers["experience"] == row.experience, "reader"]))
        assert row.n_readers == len(members) == (6 if row.experience == "all" else 3)
        readings = study[(study["condition"] == row.condition) & study["reader"].isin(members)]
        per_reader = readings.groupby("reader")
        assert row.auc == pytest.approx(per_reader.apply(lambda g: roc_auc_score(g["truth"], g["rating"])).mean(),
                                        abs=1e-12)
        assert row.sensitivity == pytest.approx(
            per_reader.apply(lambda g: recall_score(g["truth"], g["called_positive"])).mean(), abs=1e-12)
        assert row.specificity == pytest.approx(
            per_reader.apply(lambda g: recall_score(1 - g["truth"], 1 - g["called_positive"])).mean(), abs=1e-12)
        assert row.f1 == pytest.approx(per_reader.apply(lambda g: f1_score(g["truth"], g["called_positive"])).mean(),
                                       abs=1e-12)
        long = readers[readers["reader"].isin(members) & (readers["condition"] == row.condition)].merge(
            cases[["patient_id", "label"]], on="patient_id")
        expected = obuchowski_rockette(long, analysis="RRRC", covariance="jackknife", reader="reader",
                                       case="patient_id", modality="condition", truth="label", rating="rating",
                                       modalities=[row.condition]).modality_auc.iloc[0]
        assert (row.auc_lo, row.auc_hi, row.auc_se) == pytest.approx(
            (expected["ci_lo"], expected["ci_hi"], expected["se"]), rel=1e-12)
        for name in ("sensitivity", "specificity", "accuracy", "f1"):
            assert getattr(row, f"{name}_lo") <= getattr(row, name) <= getattr(row, f"{name}_hi"), name
    # The figure draws the readers only (no group means).
    fig = stage.reader_roc_figure(study, model_of(cases), metrics, CONDITIONS, CLASSES[1], "2.5d_resnet10t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("model (2.5d_resnet10t), AUC") and not any("mean (" in label for label in labels)


def test_experience_groups_get_their_own_condition_comparison(tmp_path, settings):
    cases, readers = roe_metz_study(seed=13, n_readers=4)
    study = read_reader_study(write(tmp_path, readers), cases, CLASSES, CONDITIONS)
    table = stage.mrmc_table(study, model_of(cases), settings, 0.95, "readers.csv")
    assert set(table["contrast"]) == {"conditions", "conditions, junior readers", "conditions, senior readers",
                                      "model vs unaided", "model vs aided"}
    for group in ("junior", "senior"):
        members = readers[readers["experience"] == group]
        long = members.merge(cases[["patient_id", "label"]], on="patient_id")
        expected = obuchowski_rockette(long, analysis="RRRC", covariance="jackknife", reader="reader",
                                       case="patient_id", modality="condition", truth="label", rating="rating",
                                       modalities=["aided", "unaided"]).differences.iloc[0]
        row = table[(table["contrast"] == f"conditions, {group} readers") & (table["analysis"] == "RRRC")
                    & (table["row_type"] == "difference")].iloc[0]
        assert row["n_readers"] == 2 and row["comparison"] == "aided - unaided"
        assert (row["estimate"], row["se"], row["p"], row["ci_lo"]) == pytest.approx(
            (expected["difference"], expected["se"], expected["p"], expected["ci_lo"]), rel=1e-12)
    # Readers without an experience value: no group contrasts.
    plain = readers.drop(columns="experience")
    study = read_reader_study(write(tmp_path, plain, "plain.csv"), cases, CLASSES, CONDITIONS)
    table = stage.mrmc_table(study, model_of(cases), settings, 0.95, "plain.csv")
    assert set(table["contrast"]) == {"conditions", "model vs unaided", "model vs aided"}


def test_reader_mean_intervals_follow_the_documented_bootstrap(tmp_path):
    """The library's vectorised replicates against a loop over the documented draws with
    scikit-learn's metrics, and the point estimates against scikit-learn on the data."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from spinedx.stats.bootstrap import reader_mean_intervals

    rng = np.random.default_rng(7)
    truth = np.r_[np.ones(9, int), np.zeros(12, int)][rng.permutation(21)]
    called = (rng.random((3, 21)) < np.where(truth == 1, 0.7, 0.25)).astype(int)
    n_boot, seed = 150, 5
    result = reader_mean_intervals(truth, called, n_boot=n_boot, seed=seed, level=0.9)

    def means(index):
        t = truth[index]
        return {"sensitivity": np.mean([recall_score(t, c[index]) for c in called]),
                "specificity": np.mean([recall_score(1 - t, 1 - c[index]) for c in called]),
                "accuracy": np.mean([accuracy_score(t, c[index]) for c in called]),
                "f1": np.mean([f1_score(t, c[index]) for c in called])}

    draws = np.random.default_rng(seed)
    strata = [np.flatnonzero(truth == 0), np.flatnonzero(truth == 1)]
    picked = [members[draws.integers(0, members.size, size=(n_boot, members.size))] for members in strata]
    replicates = [means(np.concatenate([picked[0][b], picked[1][b]])) for b in range(n_boot)]
    for name, value in means(np.arange(truth.size)).items():
        assert result[name] == pytest.approx(value, abs=1e-12)
        lo, hi = np.percentile([r[name] for r in replicates], [5, 95])
        assert (result[f"{name}_lo"], result[f"{name}_hi"]) == pytest.approx((lo, hi), abs=1e-12), name
    assert np.isnan(reader_mean_intervals(truth, called, n_boot=0)["f1_lo"])


def test_demo_readers_on_the_ordinal_scale_cut_the_same_probabilities(tmp_path, settings):
    """The 5-point scale is the probability-scale rating cut at 0.2, 0.4, 0.6, 0.8
    (np.digitize, by hand), the decisions unchanged; the file is a valid ordinal readers.csv."""
    rng = np.random.default_rng(9)
    label = np.r_[np.ones(15, int), np.zeros(15, int)]
    cases = pd.DataFrame({"patient_id": [f"E{k:03d}" for k in range(label.size)], "label": label,
                          "model_probability": 1 / (1 + np.exp(-(3 * label - 1.5 + rng.normal(0, 1, label.size))))})
    probability = simulate_readers(cases, settings["demo"], CLASSES, CONDITIONS)
    ordinal = simulate_readers(cases, settings["demo"], CLASSES, CONDITIONS, "ordinal")
    cut = 1 + np.digitize(probability["rating"], [0.2, 0.4, 0.6, 0.8], right=True)
    assert ordinal["rating"].tolist() == cut.tolist()
    assert ordinal.drop(columns="rating").equals(probability.drop(columns="rating"))
    assert set(ordinal["rating"]) <= {1, 2, 3, 4, 5} and ordinal["rating"].nunique() >= 4
    table = cases.assign(diagnosis=np.where(label == 1, CLASSES[1], CLASSES[0]), cohort="external")
    study = read_reader_study(write(tmp_path, ordinal), table, CLASSES, CONDITIONS, "ordinal")
    assert len(study) == 6 * 30 * 2
    with pytest.raises(ValueError, match="rating scale"):
        simulate_readers(cases, settings["demo"], CLASSES, CONDITIONS, "percent")
