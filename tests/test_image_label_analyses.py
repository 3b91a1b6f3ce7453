"""Issue 15 for studies whose labels belong to images (canine shape: labels.source
annotation, no case level): the images that score each cohort, participant flow counted
in images, one-vs-rest calibration and N-class subgroups on images with intervals from a
bootstrap of dogs, one-vs-rest decision curves per image, and the checklist of a study
without a reader study. Every number is pinned against scikit-learn, dcurves or an
explicit loop over the same dog draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, cohen_kappa_score, f1_score, recall_score

from spinedx import config as configuration
from spinedx import paths
from spinedx.checklists import AUTHOR, NOT_APPLICABLE
from spinedx.final_system import scoring_image_predictions
from spinedx.stages import calibration, participant_flow, reporting_checklist, subgroups

CLASSES = ["unremarkable", "IVDE", "IVDP", "FCE_ANNPE"]
SEQUENCES = {"T1_SAG": ["T1_SAG"], "T2_SAG": ["T2_SAG"], "T2_TRA": ["T2_TRA"]}
PLANES = {"sagittal": ["T1_SAG", "T2_SAG"], "transverse": ["T2_TRA"]}
N_BOOT, SEED, LEVEL = 300, 11, 0.95


def study_config(**overrides):
    return configuration.resolve({
        "classes": CLASSES, "labels": {"source": "annotation", "reference_class": "unremarkable"},
        "sequences": SEQUENCES, "planes": PLANES, "splits": {"scheme": "holdout", "ratios": [4, 1, 0]},
        "preprocessing": {"crop": "image"},
        "subgroups": {"variables": ["plane", "sequence", "sex"]},
        "evaluation": {"bootstrap_replicates": N_BOOT, "seed": SEED}, **overrides})


def image_rows(n_internal=6, n_external=14, seed=3):
    """Images of dogs: each dog has 1-4 images per sequence, most unremarkable and some of
    the dog's own pathology (labels of images); probabilities lean towards the truth."""
    rng = np.random.default_rng(seed)
    cases, images = [], []
    for index in range(n_internal + n_external):
        cohort = "internal" if index < n_internal else "external"
        dog = f"DOG-{'I' if cohort == 'internal' else 'E'}{index:03d}"
        pathology = 1 + index % (len(CLASSES) - 1)
        cases.append({"patient_id": dog, "cohort": cohort, "diagnosis": CLASSES[pathology],
                      "sex": "F" if index % 3 else "M"})
        for sequence in SEQUENCES:
            for slice_ in range(int(rng.integers(1, 5))):
                label = pathology if rng.random() < 0.35 else 0
                images.append({"image_id": f"{dog}/{sequence}/{slice_}", "patient_id": dog, "sequence": sequence,
                               "cohort": cohort, "label": label, "diagnosis": CLASSES[label]})
    return pd.DataFrame(cases), pd.DataFrame(images)


def ensembled(images: pd.DataFrame, seed=5) -> pd.DataFrame:
    """The ensembling stage's rows: internal validation images (repeat 0) and every
    external image by the repeat model and by the ensemble."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(images), len(CLASSES)))
    logits[np.arange(len(images)), images["label"].to_numpy()] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = images[["sequence", "image_id", "patient_id", "cohort", "label"]].assign(
        backbone="resnet10t", **{f"prob_{c}": probs[:, k] for k, c in enumerate(CLASSES)})
    internal = frame[frame["cohort"] == "internal"].assign(model="holdout0", prediction_set="validation")
    external = frame[frame["cohort"] == "external"]
    noisy = external.assign(model="holdout0", prediction_set="external",
                            **{f"prob_{c}": 1 / len(CLASSES) for c in CLASSES})
    return pd.concat([internal, noisy, external.assign(model="ensemble", prediction_set="external")],
                     ignore_index=True)


@pytest.fixture
def study(tmp_path):
    cases, images = image_rows()
    cases.to_csv(tmp_path / "cases.csv", index=False)
    images.to_parquet(tmp_path / "images.parquet")
    predictions = ensembled(images)
    for sequence, rows in predictions.groupby("sequence"):
        rows.to_parquet(tmp_path / f"{sequence}.parquet")
    overall = pd.DataFrame([{"level": "image", "backbone": "resnet10t", "input": "ALL", "prediction_set": "external",
                             "macro_auc": 0.7}])
    overall.to_csv(tmp_path / "overall.csv", index=False)
    return {"dir": tmp_path, "cases": cases, "images": images, "predictions": predictions,
            "prediction_paths": [tmp_path / f"{s}.parquet" for s in SEQUENCES]}


def test_each_image_is_scored_by_the_predictions_that_never_saw_its_dog(study):
    scored = scoring_image_predictions(study["predictions"], "resnet10t")
    external = study["images"][study["images"]["cohort"] == "external"]
    assert sorted(scored["image_id"]) == sorted(external["image_id"])  # no validation image, one row each
    assert set(scored["model"]) == {"ensemble"}
    # Hold-out with an internal test partition: the first repeat testing the dog scores its images.
    tested = study["predictions"][study["predictions"]["cohort"] == "internal"]
    both = pd.concat([tested.assign(model=f"holdout{r}", prediction_set="internal_test", prob_IVDE=r / 10)
                      for r in (1, 0)])
    internal = scoring_image_predictions(both, "resnet10t")
    assert len(internal) == len(tested) and (internal["model"] == "holdout0").all()
    assert (internal["prob_IVDE"] == 0).all()


def dog_bootstrap_accuracy(rows: pd.DataFrame, decisions: np.ndarray) -> tuple[float, float]:
    """Explicit loop: draw the dogs (first-appearance order) with replacement, as many as
    there are, with the generator the N-class tables use; accuracy over the drawn dogs'
    images; numpy's percentile interval."""
    dogs = list(dict.fromkeys(rows["patient_id"]))
    rng = np.random.default_rng(SEED)
    draws = rng.integers(0, len(dogs), size=(N_BOOT, len(dogs)))
    correct = (decisions == rows["label"].to_numpy())
    values = []
    for draw in draws:
        hits = total = 0
        for d in draw:
            mine = (rows["patient_id"] == dogs[d]).to_numpy()
            hits += int(correct[mine].sum())
            total += int(mine.sum())
        values.append(hits / total)
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_subgroups_of_images_match_scikit_learn_with_dog_bootstrap_intervals(study, tmp_path):
    config = study_config()
    out = tmp_path / "subgroups.csv"
    table = subgroups.main_stage(config, study["dir"] / "cases.csv", study["dir"] / "images.parquet", tmp_path, [],
                                 None, out, tmp_path / "forest", overall_path=study["dir"] / "overall.csv",
                                 image_prediction_paths=study["prediction_paths"])
    assert pd.read_csv(out).shape[0] == len(table) and (tmp_path / "forest.png").is_file()
    scored = scoring_image_predictions(study["predictions"], "resnet10t")
    scored = scored.merge(study["cases"][["patient_id", "sex"]], on="patient_id")
    scored["plane"] = scored["sequence"].map({s: p for p, members in PLANES.items() for s in members})
    probs = scored[[f"prob_{c}" for c in CLASSES]].to_numpy()
    scored["decision"] = probs.argmax(axis=1)
    expected_levels = {("all cases", "all cases"), ("plane", "sagittal"), ("plane", "transverse"),
                       *(("sequence", s) for s in SEQUENCES), ("sex", "F"), ("sex", "M")}
    assert set(zip(table["variable"], table["level"])) == expected_levels
    for row in table.itertuples():
        rows = scored if row.variable == "all cases" else scored[scored[row.variable] == row.level]
        truth, decision = rows["label"].to_numpy(), rows["decision"].to_numpy()
        assert row.n == len(rows)
        assert f"{row.accuracy:.6f}" == f"{accuracy_score(truth, decision):.6f}"
        present = sorted(set(truth) | set(decision))
        assert f"{row.macro_f1:.6f}" == f"{f1_score(truth, decision, labels=present, average='macro'):.6f}"
        assert f"{row.macro_sensitivity:.6f}" == f"{recall_score(truth, decision, labels=sorted(set(truth)), average='macro'):.6f}"
        assert f"{row.kappa:.6f}" == f"{cohen_kappa_score(truth, decision):.6f}"
        # Accuracy's interval resamples dogs, not images (no Wilson interval on correlated images).
        lo, hi = dog_bootstrap_accuracy(rows.reset_index(drop=True), decision)
        assert (f"{row.accuracy_lo:.6f}", f"{row.accuracy_hi:.6f}") == (f"{lo:.6f}", f"{hi:.6f}")
    assert set(table["cohort"]) == {"external (ensemble)"}


def test_calibration_of_images_matches_scikit_learn_with_dog_bootstrap_intervals(study, tmp_path):
    config = study_config()
    out = calibration.multiclass_main_stage(config, [], study["dir"] / "overall.csv", tmp_path / "calibration.csv",
                                            tmp_path / "curve.csv", tmp_path / "calibration_figure",
                                            image_prediction_paths=study["prediction_paths"])
    summary = out["summary"].set_index("class")
    scored = scoring_image_predictions(study["predictions"], "resnet10t")
    labels = scored["label"].to_numpy()
    probs = scored[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert set(summary["test_set"]) == {"external"} and summary.loc["all", "n"] == len(scored)
    for k, name in enumerate(CLASSES):
        assert f"{summary.loc[name, 'brier']:.6f}" == f"{brier_score_loss(labels == k, probs[:, k]):.6f}"
    # The multi-class Brier score and its interval: an explicit loop over images, and over
    # draws of dogs (first-appearance order; the calibration bootstrap's generator).
    per_image = [sum((probs[i, k] - (labels[i] == k)) ** 2 for k in range(len(CLASSES))) for i in range(len(labels))]
    assert f"{summary.loc['all', 'brier']:.6f}" == f"{np.mean(per_image):.6f}"
    dogs = list(dict.fromkeys(scored["patient_id"]))
    rng = np.random.default_rng(SEED)
    counts = rng.multinomial(len(dogs), np.full(len(dogs), 1 / len(dogs)), size=N_BOOT)
    replicates = []
    for count in counts:
        weights = np.array([count[dogs.index(dog)] for dog in scored["patient_id"]], dtype=float)
        replicates.append(float((weights * np.array(per_image)).sum() / weights.sum()))
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    assert (f"{summary.loc['all', 'brier_lo']:.6f}", f"{summary.loc['all', 'brier_hi']:.6f}") == (f"{lo:.6f}",
                                                                                                  f"{hi:.6f}")
    assert summary["interval"].str.contains("a patient's images drawn together").all()
    assert (tmp_path / "calibration_figure.png").is_file()


def test_flow_counts_images_per_class_input_and_partition(study, tmp_path):
    config = study_config()
    images = study["images"]
    excluded = tmp_path / "excluded.csv"
    pd.DataFrame(columns=["patient_id", "sequence", "level", "item", "reason"]).to_csv(excluded, index=False)
    internal = study["cases"][study["cases"]["cohort"] == "internal"]
    holdout = pd.DataFrame({"patient_id": internal["patient_id"], "diagnosis": internal["diagnosis"], "label": 1,
                            "repeat": 0, "seed": 42,
                            "partition": ["train"] * (len(internal) - 2) + ["validation"] * 2})
    holdout.to_csv(tmp_path / "holdout.tsv", sep="\t", index=False)
    table = participant_flow.main_stage(config, study["dir"] / "cases.csv", study["dir"] / "images.parquet",
                                        [excluded], [], tmp_path / "flow.csv", tmp_path / "flow",
                                        folds_path=tmp_path / "holdout.tsv",
                                        image_prediction_paths=study["prediction_paths"])
    counts = table.set_index(["step", "cohort", "group"])
    external = images[images["cohort"] == "external"]
    for k, name in enumerate(CLASSES):  # classes of images: images, and the dogs having one
        of_class = external[external["label"] == k]
        assert tuple(counts.loc[("with annotated images", "external", name), ["patients", "images"]]) == (
            of_class["patient_id"].nunique(), len(of_class))
        assert counts.loc[("analysed", "external", f"ALL: {name}"), "images"] == len(of_class)
    for input_, members in [*((s, [s]) for s in SEQUENCES), *PLANES.items(), ("ALL", list(SEQUENCES))]:
        rows = external[external["sequence"].isin(members)]
        assert tuple(counts.loc[("analysed", "external", input_), ["patients", "images"]]) == (
            rows["patient_id"].nunique(), len(rows))
    validation = set(holdout[holdout["partition"] == "validation"]["patient_id"])
    assert counts.loc[("split", "internal", "repeat 0: validation"), "images"] == images["patient_id"].isin(
        validation).sum()
    # Validation images chose the epoch: the internal cohort has no analysed images.
    assert counts.loc[("analysed", "internal", participant_flow.NO_TEST_PARTITION), "images"] == 0
    assert (tmp_path / "flow.png").is_file()


def test_checklist_of_a_study_without_a_reader_study():
    outputs = [paths.StudyPaths("res").table(paths.FLOW_TABLE)]
    without = reporting_checklist.checklist_table("res", outputs, reader_study=False).set_index(["guideline", "item"])
    assert without.loc[("STARD 2015", "13a"), "status"].startswith(NOT_APPLICABLE + ": no reader study")
    assert without.loc[("CLAIM", "18"), "status"].startswith(AUTHOR + ": annotator agreement")
    assert without.loc[("STARD 2015", "19"), "status"] == "answered"
    usual = reporting_checklist.checklist_table("res", outputs).set_index(["guideline", "item"])
    assert usual.loc[("STARD 2015", "13a"), "status"].startswith(AUTHOR + ": what the readers knew")
    changed = (without["status"] != usual["status"])
    assert set(changed[changed].index) == {("STARD 2015", "13a"), ("CLAIM", "18")}


def test_an_unknown_subgroup_variable_names_both_tables_and_the_fix(study, tmp_path):
    from spinedx.errors import InputError
    config = study_config(subgroups={"variables": ["plane", "coil"]})
    with pytest.raises(InputError, match=r"cases.csv, .*images.parquet: subgroup variable\(s\) \['coil'\].*"
                                         r"correct config subgroups.variables"):
        subgroups.main_stage(config, study["dir"] / "cases.csv", study["dir"] / "images.parquet", tmp_path, [], None,
                             tmp_path / "s.csv", tmp_path / "f", overall_path=study["dir"] / "overall.csv",
                             image_prediction_paths=study["prediction_paths"])
    assert not (tmp_path / "s.csv").exists()


def test_decision_curves_of_images_are_dcurves_on_the_one_vs_rest_reduction(study, tmp_path):
    """Labels of images: per class, the net benefit of the ALL input per image (every external
    image, scored by the ensemble) equals dcurves' on the two-class reduction (that class's
    probability against "is that class") and the formula at one threshold by hand."""
    from dcurves import dca

    config = study_config()
    out = calibration.multiclass_main_stage(config, [], study["dir"] / "overall.csv", tmp_path / "calibration.csv",
                                            tmp_path / "curve.csv", tmp_path / "calibration_figure",
                                            tmp_path / "decision_curve.csv", tmp_path / "decision_figure",
                                            image_prediction_paths=study["prediction_paths"])
    curve = pd.read_csv(tmp_path / "decision_curve.csv")
    assert list(curve.columns) == calibration.MULTICLASS_DECISION_CURVE_COLUMNS and len(curve) == len(out["decision_curve"])
    assert list(curve["class"].unique()) == CLASSES and set(curve["test_set"]) == {"external"}
    assert set(curve["model"]) == {"resnet10t/ALL", "treat all", "treat none"}
    external = study["predictions"]
    external = external[(external["cohort"] == "external") & (external["model"] == "ensemble")]
    assert curve["n"].eq(len(external)).all() and len(external) > external["patient_id"].nunique()
    for index, class_name in enumerate(CLASSES):
        data = pd.DataFrame({"outcome": (external["label"] == index).astype(int).to_numpy(),
                             "p": external[f"prob_{class_name}"].to_numpy()})
        reference = dca(data=data, outcome="outcome", modelnames=["p"], thresholds=[0.05, 0.2, 0.35, 0.5])
        ours = curve[(curve["class"] == class_name) & (curve["model"] == "resnet10t/ALL")].set_index("threshold")
        treat_all = curve[(curve["class"] == class_name) & (curve["model"] == "treat all")].set_index("threshold")
        for row in reference.itertuples():
            if row.model in ("p", "all"):
                got = (ours if row.model == "p" else treat_all).loc[round(row.threshold, 6), "net_benefit"]
                assert f"{got:.6f}" == f"{row.net_benefit:.6f}", (class_name, row.model, row.threshold)
        threshold, n = 0.2, len(data)
        called = data["p"] >= threshold
        expected = (int((called & (data.outcome == 1)).sum()) / n
                    - int((called & (data.outcome == 0)).sum()) / n * threshold / (1 - threshold))
        assert f"{ours.loc[threshold, 'net_benefit']:.6f}" == f"{expected:.6f}"
    assert (tmp_path / "decision_figure.png").is_file() and (tmp_path / "decision_figure.pdf").is_file()
    fig = calibration.multiclass_decision_curve_figure(curve, "resnet10t", ["ALL"], ["resnet10t"], "external", "image")
    assert fig._suptitle.get_text() == "One-vs-rest decision curves per image, resnet10t, external"
    legend = fig.axes[-1].get_legend()  # four classes in a 2 x 3 grid: the legend in a spare panel
    assert [t.get_text() for t in legend.get_texts()] == ["resnet10t (final system)", "treat all", "treat none"]


def test_paired_comparisons_of_images_bootstrap_the_difference_over_dogs(study):
    """Inputs (and backbones) compared on images: estimates by scikit-learn, the interval
    and p from an explicit loop that draws the common dogs and concatenates their images
    (a dog drawn twice: its images twice), for both models of the pair."""
    from sklearn.metrics import roc_auc_score

    from spinedx.stages import comparisons
    from spinedx.task import MulticlassTask

    predictions = study["predictions"]
    other = predictions.assign(backbone="netB", **{f"prob_{c}": np.roll(predictions[f"prob_{c}"].to_numpy(), 3)
                                                   for c in CLASSES})
    both = pd.concat([predictions, other], ignore_index=True)
    task = MulticlassTask(tuple(CLASSES))
    n_boot = 100
    table = comparisons.image_comparisons_table(both, ["resnet10t", "netB"], list(SEQUENCES), PLANES, task, n_boot,
                                                SEED, LEVEL, "holm", "all")
    inputs = [*SEQUENCES, *PLANES, "ALL"]
    pairs = {(r.kind, r.model_a, r.model_b) for r in table.itertuples()}
    assert pairs == ({("backbones", f"resnet10t/{i}", f"netB/{i}") for i in inputs}
                     | {("inputs", f"{b}/{x}", f"{b}/{y}") for b in ("resnet10t", "netB")
                        for n, x in enumerate(inputs) for y in inputs[n + 1:]})
    assert set(table.test_set) == {"external"} and table.test.eq(f"patient bootstrap (percentile, {n_boot} replicates)").all()
    assert len(table) == len(pairs) * (1 + 2 * len(CLASSES)) and table.p_adjusted.ge(table.p - 1e-12).all()

    scored = scoring_image_predictions(predictions, "resnet10t")
    columns = [f"prob_{c}" for c in CLASSES]

    def metrics(rows):
        truth, decided = rows["label"].to_numpy(), rows[columns].to_numpy().argmax(axis=1)
        values = {("accuracy", "all"): accuracy_score(truth, decided)}
        for k, name in enumerate(CLASSES):
            is_class = truth == k
            values[("auc", name)] = (roc_auc_score(is_class, rows[columns[k]]) if 0 < is_class.sum() < len(truth)
                                     else np.nan)
            values[("sensitivity", name)] = (decided[is_class] == k).mean() if is_class.any() else np.nan
        return values

    a, b = scored[scored.sequence == "T1_SAG"], scored[scored.sequence.isin(PLANES["sagittal"])]
    dogs = [d for d in dict.fromkeys(a["patient_id"]) if d in set(b["patient_id"])]
    a, b = a[a.patient_id.isin(dogs)], b[b.patient_id.isin(dogs)]
    estimate_a, estimate_b = metrics(a), metrics(b)
    rng = np.random.default_rng(SEED)
    replicates = []
    for draw in rng.integers(0, len(dogs), size=(n_boot, len(dogs))):
        drawn_a = pd.concat([a[a.patient_id == dogs[d]] for d in draw])
        drawn_b = pd.concat([b[b.patient_id == dogs[d]] for d in draw])
        ma, mb = metrics(drawn_a), metrics(drawn_b)
        replicates.append({key: ma[key] - mb[key] for key in ma})
    rows = table[(table.model_a == "resnet10t/T1_SAG") & (table.model_b == "resnet10t/sagittal")]
    checked = 0
    for row in rows.itertuples():
        key = (row.metric, rows.at[row.Index, "class"])
        assert f"{row.estimate_a:.6f}" == f"{estimate_a[key]:.6f}" and f"{row.estimate_b:.6f}" == f"{estimate_b[key]:.6f}"
        differences = np.array([r[key] for r in replicates])
        differences = differences[np.isfinite(differences)]
        if not differences.size or not np.isfinite(estimate_a[key] - estimate_b[key]):
            assert np.isnan(row.p)
            continue
        lo, hi = np.percentile(differences, [2.5, 97.5])
        p = min(1.0, 2 * min((1 + (differences <= 0).sum()) / (differences.size + 1),
                             (1 + (differences >= 0).sum()) / (differences.size + 1)))
        assert (f"{row.ci_lo:.6f}", f"{row.ci_hi:.6f}", f"{row.p:.6f}") == (f"{lo:.6f}", f"{hi:.6f}", f"{p:.6f}"), key
        checked += 1
    assert checked >= 5 and rows.n.iloc[0] == len(a)
