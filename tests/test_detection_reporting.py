"""Issue 15 for detection studies: participant flow (patients, volumes, lesions per cohort
and fold), subgroups of the detection system (lesion sensitivity and false positives per
case per lesion-size band and cases-table column, patient-bootstrap intervals) and the
checklist's detection files. Every number is pinned against an explicit loop (the
bootstrap on the same stratified draws)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from spinedx import config as configuration
from spinedx import paths
from spinedx.stages import participant_flow, reporting_checklist, subgroups

N_BOOT, SEED = 300, 7
EDGES = [0, 5, 10, 1000]
PAIRS = [("deepmedic", "both"), ("deepmedic", "bright_blood"), ("unet", "both")]


def study_config():
    tiny = yaml.safe_load((REPO / ".test/brain_mets.yaml").read_text())
    return configuration.resolve({key: tiny[key] for key in ("task", "sequences", "detection")} | {
        "subgroups": {"variables": ["sex", "age_band"]},
        "evaluation": {"bootstrap_replicates": N_BOOT, "seed": SEED},
        "detection_evaluation": {"size_bands_mm": EDGES}})


def synthetic_study(n_internal=8, n_external=16, seed=2):
    """Cases (some without lesions), their lesions (diameter, the score of the candidate
    that found each, NaN when missed) and candidates (true positives and false positives)."""
    rng = np.random.default_rng(seed)
    cases, lesions, candidates = [], [], []
    for index in range(n_internal + n_external):
        cohort = "internal" if index < n_internal else "external"
        case = f"P{index:03d}"
        n_lesions = int(rng.integers(0, 4)) if index % 5 else 0
        cases.append({"patient_id": case, "cohort": cohort, "n_lesions": n_lesions,
                      "sex": "F" if index % 2 else "M", "age": float(40 + 3 * index)})
        candidate = 0
        for lesion in range(n_lesions):
            found = rng.random() < 0.7
            score = float(rng.uniform(0.2, 1.0)) if found else math.nan
            lesions.append({"case_id": case, "lesion": lesion, "equivalent_diameter_mm": float(rng.uniform(2, 20)),
                            "detected_by_score": score, "cohort": cohort})
            if found:
                candidates.append({"case_id": case, "candidate": candidate, "score": score,
                                   "outcome": "true_positive", "lesion": lesion, "iou": 0.5, "cohort": cohort})
                candidate += 1
        for _ in range(int(rng.integers(0, 3))):
            candidates.append({"case_id": case, "candidate": candidate, "score": float(rng.uniform(0, 1)),
                               "outcome": "false_positive", "lesion": -1, "iou": 0.0, "cohort": cohort})
            candidate += 1
    return pd.DataFrame(cases), pd.DataFrame(lesions), pd.DataFrame(candidates)


@pytest.fixture
def study(tmp_path):
    cases, lesions, candidates = synthetic_study()
    cases.to_parquet(tmp_path / "cases.parquet")
    for model, input_ in PAIRS:
        # the second pair has the best internal CPM and a threshold of its own
        candidates.assign(model=model, input=input_).to_parquet(tmp_path / f"{model}_{input_}.parquet")
        lesions.assign(model=model, input=input_).to_parquet(tmp_path / f"{model}_{input_}_lesions.parquet")
    pd.DataFrame([{"model": m, "input": i, "cohort": c, "cpm": 0.8 if (m, i) == PAIRS[1] and c == "internal" else 0.5}
                  for m, i in PAIRS for c in ("internal", "external")]).to_csv(tmp_path / "summary.csv", index=False)
    pd.DataFrame([{"model": m, "input": i, "threshold": 0.45 if (m, i) == PAIRS[1] else 0.9}
                  for m, i in PAIRS]).to_csv(tmp_path / "points.csv", index=False)
    return {"dir": tmp_path, "cases": cases, "lesions": lesions, "candidates": candidates}


def stratified_weights(positive: np.ndarray) -> np.ndarray:
    """The stratified patient bootstrap's draws (lesion-bearing patients, then the others),
    with the generator the detection evaluation uses."""
    rng = np.random.default_rng(SEED)
    weights = np.zeros((N_BOOT, positive.size))
    for stratum in (True, False):
        columns = np.flatnonzero(positive == stratum)
        if columns.size:
            weights[:, columns] = rng.multinomial(columns.size, np.full(columns.size, 1 / columns.size), size=N_BOOT)
    return weights


def explicit(case_ids, lesions, candidates, threshold, band=None):
    """Lesion sensitivity and FPs per case, and their percentile intervals, by loops over cases."""
    per_case = []
    for case in case_ids:
        mine = lesions[lesions["case_id"] == case]
        if band is not None:
            mine = mine[(mine["equivalent_diameter_mm"] >= band[0]) & (mine["equivalent_diameter_mm"] < band[1])]
        fps = candidates[(candidates["case_id"] == case) & (candidates["outcome"] == "false_positive")]
        all_lesions = (lesions["case_id"] == case).sum()
        per_case.append((len(mine), int((mine["detected_by_score"] > threshold).sum()),
                         int((fps["score"] > threshold).sum()), all_lesions > 0))
    counts = np.array([c[:3] for c in per_case], dtype=float)
    weights = stratified_weights(np.array([c[3] for c in per_case]))

    def metrics(w):
        lesions_, detected, fp = (w[:, None] * counts).sum(axis=0)
        return (detected / lesions_ if lesions_ else math.nan), fp / w.sum()

    estimate = metrics(np.ones(len(case_ids)))
    replicates = np.array([metrics(w) for w in weights])
    intervals = []
    for column in range(2):
        values = replicates[:, column][~np.isnan(replicates[:, column])]
        intervals.append(tuple(np.percentile(values, [2.5, 97.5])))
    return estimate, intervals, counts.sum(axis=0)


def test_detection_subgroups_match_an_explicit_loop_on_the_same_draws(study, tmp_path):
    d = study["dir"]
    table = subgroups.detection_main_stage(
        study_config(), d / "cases.parquet", [d / f"{m}_{i}.parquet" for m, i in PAIRS],
        [d / f"{m}_{i}_lesions.parquet" for m, i in PAIRS], d / "summary.csv", d / "points.csv",
        tmp_path / "subgroups.csv", tmp_path / "forest")
    assert set(table["model"]) == {"deepmedic"} and set(table["input"]) == {"bright_blood"}  # best internal CPM
    assert set(table["threshold"]) == {0.45} and set(table["cohort"]) == {"external (fold ensemble)"}
    cases = study["cases"][study["cases"]["cohort"] == "external"].reset_index(drop=True)
    lesions, candidates = study["lesions"], study["candidates"]
    cases["age_band"] = np.where(cases["age"] < 50, "<50", np.where(cases["age"] < 65, "50 to <65", ">=65"))
    checked = 0
    for row in table.itertuples():
        band = None
        chosen = cases
        if row.variable == "lesion size":
            band = next((lo, hi) for lo, hi in zip(EDGES[:-1], EDGES[1:]) if row.level == f"[{lo:g}, {hi:g}) mm")
        elif row.variable != "all cases":
            chosen = cases[cases[row.variable] == row.level]
        (sensitivity, fp_per_case), (sens_ci, fp_ci), (n_lesions, n_detected, n_fp) = explicit(
            list(chosen["patient_id"]), lesions, candidates, 0.45, band)
        assert (row.n_cases, row.n_lesions, row.n_detected) == (len(chosen), n_lesions, n_detected), row
        assert f"{row.lesion_sensitivity:.6f}" == f"{sensitivity:.6f}"
        assert (f"{row.lesion_sensitivity_lo:.6f}", f"{row.lesion_sensitivity_hi:.6f}") == tuple(
            f"{v:.6f}" for v in sens_ci)
        if band is None:
            assert row.n_fp == n_fp and f"{row.fp_per_case:.6f}" == f"{fp_per_case:.6f}"
            assert (f"{row.fp_per_case_lo:.6f}", f"{row.fp_per_case_hi:.6f}") == tuple(f"{v:.6f}" for v in fp_ci)
        else:  # false positives belong to cases, not to a lesion size
            assert math.isnan(row.fp_per_case) and math.isnan(row.n_fp)
        checked += 1
    assert checked == 1 + 3 + cases["sex"].nunique() + cases["age_band"].nunique() == 8
    assert set(table["variable"]) == {"all cases", "lesion size", "sex", "age_band"}
    assert (tmp_path / "forest.png").is_file() and (tmp_path / "forest.pdf").is_file()


def test_detection_flow_counts_patients_volumes_and_lesions(study, tmp_path):
    d = study["dir"]
    cases = study["cases"]
    internal = cases[cases["cohort"] == "internal"]
    folds = pd.DataFrame({"patient_id": internal["patient_id"], "diagnosis": "any lesion load", "label": 0,
                          "fold": [k % 2 for k in range(len(internal))]})
    folds.to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    readers = pd.DataFrame({"reader": ["R1", "R2"], "case_id": "P010"})
    readers.to_parquet(tmp_path / "reader_lesions.parquet")
    table = participant_flow.detection_main_stage(
        study_config(), d / "cases.parquet", [d / f"{m}_{i}_lesions.parquet" for m, i in PAIRS],
        tmp_path / "flow.csv", tmp_path / "flow", folds_path=tmp_path / "folds.tsv",
        reader_lesions_path=tmp_path / "reader_lesions.parquet")
    counts = table.set_index(["step", "cohort", "group"])
    for cohort, rows in cases.groupby("cohort"):
        with_lesions = rows[rows["n_lesions"] > 0]
        assert tuple(counts.loc[("with annotated images", cohort, "all"), ["patients", "images", "lesions"]]) == (
            len(rows), 2 * len(rows), rows["n_lesions"].sum())  # two sequences per patient
        assert tuple(counts.loc[("with annotated images", cohort, "with lesions"), ["patients", "lesions"]]) == (
            len(with_lesions), with_lesions["n_lesions"].sum())
        assert counts.loc[("with annotated images", cohort, "without lesions"), "patients"] == (
            rows["n_lesions"] == 0).sum()
        lesions = study["lesions"][study["lesions"]["cohort"] == cohort]
        assert tuple(counts.loc[("analysed", cohort, "both"), ["patients", "images", "lesions"]]) == (
            len(rows), 2 * len(rows), len(lesions))
        assert tuple(counts.loc[("analysed", cohort, "bright_blood"), ["patients", "images"]]) == (len(rows), len(rows))
    for fold, members in folds.groupby("fold"):
        mine = internal[internal["patient_id"].isin(members["patient_id"])]
        assert tuple(counts.loc[("split", "internal", f"fold {fold}"), ["patients", "lesions"]]) == (
            len(mine), mine["n_lesions"].sum())
    external = cases[cases["cohort"] == "external"]
    assert counts.loc[("reader study", "external", "read by 2 readers"), "patients"] == len(external)
    assert (tmp_path / "flow.png").is_file()


def test_checklist_maps_the_detection_tables():
    study = paths.StudyPaths("res")
    outputs = [study.table(name) for name in (*paths.DETECTION_TABLES, paths.DETECTION_COHORT, paths.FLOW_TABLE)]
    outputs.append(paths.figure_files(study.figure(paths.DETECTION_FROC_FIGURE))[1])
    table = reporting_checklist.checklist_table("res", outputs).set_index(["guideline", "item"])
    assert "tables/detection_summary.csv" in table.loc[("STARD 2015", "24"), "files"]
    assert "tables/detection_size_bands.csv" in table.loc[("STARD 2015", "24"), "files"]
    assert "tables/detection_readers.csv" in table.loc[("STARD 2015", "13a"), "files"]
    assert "figures/fig_detection_froc.png" in table.loc[("STARD 2015", "14"), "files"]
    assert "tables/detection_cohort.csv" in table.loc[("STARD 2015", "20"), "files"]


def test_an_unknown_subgroup_variable_names_the_cases_table_and_the_fix(study, tmp_path):
    from spinedx.errors import InputError
    d = study["dir"]
    config = study_config()
    config["subgroups"]["variables"] = ["sex", "coil"]
    with pytest.raises(InputError, match=r"cases.parquet: subgroup variable\(s\) \['coil'\].*cases.csv or correct"):
        subgroups.detection_main_stage(
            config, d / "cases.parquet", [d / f"{m}_{i}.parquet" for m, i in PAIRS],
            [d / f"{m}_{i}_lesions.parquet" for m, i in PAIRS], d / "summary.csv", d / "points.csv",
            tmp_path / "subgroups.csv", tmp_path / "forest")
    assert not (tmp_path / "subgroups.csv").exists()
