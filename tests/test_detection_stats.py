"""Detection statistics around stats/froc.py: matchings stored as tables and read back,
the model-vs-readers comparison at the readers' false-positive rates (pinned by hand and
against explicit bootstrap resampling with froc's public functions), and the folds
stratified by lesion load."""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pandas as pd
import pytest

from spinedx.errors import InputError
from spinedx.splitting import make_detection_folds
from spinedx.stats.detection import compare_with_readers, matches_from_tables
from spinedx.stats.froc import (
    DUPLICATE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    CaseMatch,
    bootstrap_case_weights,
    cpm,
    froc_curve,
    match_scores,
    operating_point,
    sensitivity_at_fp_rates,
)


def case(case_id, scores, outcome, lesion, hit, diameters):
    return CaseMatch(case_id=case_id, candidate_scores=np.array(scores, float),
                     candidate_outcome=np.array(outcome, np.int8), candidate_lesion=np.array(lesion, np.int64),
                     candidate_overlap=np.array([0.5 if o == TRUE_POSITIVE else 0.0 for o in outcome]),
                     lesion_hit_score=np.array(hit, float), lesion_diameter_mm=np.array(diameters, float))


def random_matches(seed, n_cases=14, marks=False):
    """Cases with 0-3 lesions and candidates hitting them or not (score-ordered matching)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_cases):
        n_lesions = int(rng.integers(0, 4))
        n_candidates = int(rng.integers(0, 5))
        scores = rng.integers(1, 6, n_candidates).astype(float) if marks else rng.random(n_candidates).round(2)
        affinity = (rng.random((n_candidates, n_lesions)) < 0.4).astype(float)
        outcome, lesion, hit = match_scores(scores, affinity)
        out.append(CaseMatch(case_id=f"P{i:02d}", candidate_scores=scores, candidate_outcome=outcome,
                             candidate_lesion=lesion, candidate_overlap=np.zeros(n_candidates),
                             lesion_hit_score=hit, lesion_diameter_mm=rng.uniform(2, 15, n_lesions)))
    return out


def with_lesions_of(matches, template):
    """``matches`` re-drawn on the lesions of ``template`` (same cases, same lesion counts)."""
    out = []
    for m, t in zip(matches, template):
        affinity_rng = np.random.default_rng(zlib.crc32(m.case_id.encode()))
        affinity = (affinity_rng.random((m.candidate_scores.size, t.n_lesions)) < 0.5).astype(float)
        outcome, lesion, hit = match_scores(m.candidate_scores, affinity)
        out.append(dataclasses.replace(m, candidate_outcome=outcome, candidate_lesion=lesion, lesion_hit_score=hit,
                                       lesion_diameter_mm=t.lesion_diameter_mm))
    return out


# --- tables <-> matchings -------------------------------------------------------------------


def test_matches_survive_tables_and_keep_empty_cases():
    matches = random_matches(3)
    candidates = pd.concat([m.candidates_table() for m in matches], ignore_index=True)
    lesions = pd.concat([m.lesions_table() for m in matches], ignore_index=True)
    back = matches_from_tables([m.case_id for m in matches], candidates, lesions)
    for a, b in zip(matches, back):
        assert a.case_id == b.case_id
        for field in ("candidate_scores", "candidate_outcome", "candidate_lesion", "lesion_hit_score",
                      "lesion_diameter_mm"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    pd.testing.assert_frame_equal(froc_curve(matches), froc_curve(back))
    # a case with neither candidates nor lesions still counts (FP per case denominator)
    back = matches_from_tables([m.case_id for m in matches] + ["EMPTY"], candidates, lesions)
    assert back[-1].n_lesions == 0 and back[-1].candidate_scores.size == 0
    assert operating_point(back, 0.0)["n_cases"] == len(matches) + 1
    with pytest.raises(InputError, match="not in the cohort"):
        matches_from_tables(["P00"], candidates, lesions)
    with pytest.raises(InputError, match="lacks"):
        matches_from_tables(["P00"], candidates.drop(columns="outcome"), lesions)


# --- readers ---------------------------------------------------------------------------------


@pytest.fixture
def reading():
    """Four cases, five lesions. Model candidates: A (0.9 TP, 0.4 FP), B (0.8 TP, 0.7 FP,
    0.3 TP), C (0.6 FP), D (0.5 TP). Reader R: A (TP), B (FP, TP), D nothing."""
    model = [
        case("A", [0.9, 0.4], [TRUE_POSITIVE, FALSE_POSITIVE], [0, -1], [0.9, math.nan], [4.0, 9.0]),
        case("B", [0.8, 0.7, 0.3], [TRUE_POSITIVE, FALSE_POSITIVE, TRUE_POSITIVE], [0, -1, 1], [0.8, 0.3], [6.0, 3.0]),
        case("C", [0.6], [FALSE_POSITIVE], [-1], [], []),
        case("D", [0.5], [TRUE_POSITIVE], [0], [0.5], [12.0]),
    ]
    reader = [
        case("A", [4.0], [TRUE_POSITIVE], [1], [math.nan, 4.0], [4.0, 9.0]),
        case("B", [2.0, 5.0], [FALSE_POSITIVE, TRUE_POSITIVE], [-1, 0], [5.0, math.nan], [6.0, 3.0]),
        case("C", [], [], [], [], []),
        case("D", [], [], [], [math.nan], [12.0]),
    ]
    return model, reader


def test_reader_comparison_by_hand(reading):
    model, reader = reading
    row = compare_with_readers(model, {"R": reader}, n_boot=0).iloc[0]
    # reader: 2 of 5 lesions, 1 false positive on 4 cases
    assert (row.n_cases, row.n_lesions, row.n_marks, row.n_detected, row.n_fp) == (4, 5, 3, 2, 1)
    assert row.reader_sensitivity == 2 / 5 and row.reader_fp_per_case == 1 / 4
    # model FROC: 0.9 TP, 0.8 TP, 0.7 FP (1/4 FP per case, sensitivity 2/5), 0.6 FP (2/4),
    # 0.5 TP (3/5 at 2/4), 0.4 FP, 0.3 TP: at most 1/4 FP per case -> 2/5
    assert row.model_sensitivity == 2 / 5 and row.difference == 0
    assert math.isnan(row.difference_lo) and math.isnan(row.difference_hi)
    assert row.model_sensitivity == sensitivity_at_fp_rates(model, [0.25])[0.25]
    # a reader with 2 FPs per 4 cases meets the model at 3/5
    generous = [reader[0], reader[1], case("C", [1.0], [FALSE_POSITIVE], [-1], [], []), reader[3]]
    row = compare_with_readers(model, {"R": generous}, n_boot=0).iloc[0]
    assert row.reader_fp_per_case == 0.5 and row.model_sensitivity == 3 / 5
    assert row.difference == pytest.approx(3 / 5 - 2 / 5)


def test_reader_comparison_refuses_other_cases(reading):
    model, reader = reading
    with pytest.raises(InputError, match="differ from the model's"):
        compare_with_readers(model, {"R": reader[:3]}, n_boot=0)
    moved = [reader[0], reader[1], reader[2], case("D", [], [], [], [], [])]
    with pytest.raises(InputError, match="other lesions"):
        compare_with_readers(model, {"R": moved}, n_boot=0)


def resample(matches, weights):
    return [dataclasses.replace(m, case_id=f"{m.case_id}#{k}")
            for m, count in zip(matches, weights) for k in range(int(count))]


def test_reader_intervals_equal_explicit_resampling():
    model = random_matches(5, n_cases=16)
    readers = {"R1": with_lesions_of(random_matches(6, n_cases=16, marks=True), model),
               "R2": with_lesions_of(random_matches(8, n_cases=16, marks=True), model)}
    n_boot, seed = 60, 4
    table = compare_with_readers(model, readers, n_boot=n_boot, seed=seed).set_index("reader")
    weights = bootstrap_case_weights([m.is_positive for m in model], n_boot, seed)
    for name, reader in readers.items():
        values = []
        for w in weights:
            picked_model, picked_reader = resample(model, w), resample(reader, w)
            at = operating_point(picked_reader, -math.inf)
            model_sensitivity = sensitivity_at_fp_rates(picked_model, [at["fp_per_case"]])[at["fp_per_case"]]
            values.append([at["sensitivity"], at["fp_per_case"], model_sensitivity,
                           model_sensitivity - at["sensitivity"]])
        values = np.array(values)
        row = table.loc[name]
        keys = ["reader_sensitivity", "reader_fp_per_case", "model_sensitivity", "difference"]
        np.testing.assert_allclose(row[[f"{k}_lo" for k in keys]].to_numpy(float),
                                   np.nanpercentile(values, 2.5, axis=0), rtol=1e-12)
        np.testing.assert_allclose(row[[f"{k}_hi" for k in keys]].to_numpy(float),
                                   np.nanpercentile(values, 97.5, axis=0), rtol=1e-12)
        estimate = operating_point(reader, -math.inf)
        assert row["reader_sensitivity"] == estimate["sensitivity"]
        assert row["model_sensitivity"] == sensitivity_at_fp_rates(model, [estimate["fp_per_case"]])[
            estimate["fp_per_case"]]
    again = compare_with_readers(model, readers, n_boot=n_boot, seed=seed).set_index("reader")
    pd.testing.assert_frame_equal(again, table)


def test_duplicate_marks_are_neither_hits_nor_false_positives():
    lesion_case = case("A", [3.0, 2.0], [TRUE_POSITIVE, DUPLICATE], [0, 0], [3.0], [5.0])
    model = [case("A", [0.9], [TRUE_POSITIVE], [0], [0.9], [5.0])]
    row = compare_with_readers(model, {"R": [lesion_case]}, n_boot=0).iloc[0]
    assert (row.n_detected, row.n_fp, row.reader_fp_per_case) == (1, 0, 0.0)
    assert cpm(model) == 1.0


# --- folds ------------------------------------------------------------------------------------


def cohort(counts, external=2):
    ids = [f"I{i:02d}" for i in range(len(counts))] + [f"E{i}" for i in range(external)]
    return pd.DataFrame({"patient_id": ids, "cohort": ["internal"] * len(counts) + ["external"] * external,
                         "n_lesions": list(counts) + [1] * external})


def test_detection_folds_are_grouped_and_stratified_by_lesion_load():
    counts = [0, 0, 0, 1, 1, 1, 1, 2, 3, 2, 3, 5, 6, 4, 4]
    folds = make_detection_folds(cohort(counts), 3, seed=1)
    assert sorted(folds["patient_id"]) == sorted(f"I{i:02d}" for i in range(len(counts)))
    assert set(folds["fold"]) == {0, 1, 2}
    per_fold = folds.groupby(["diagnosis", "fold"]).size().unstack(fill_value=0)
    assert list(per_fold.index) == ["1 lesion", "2-3 lesions", "4+ lesions", "no lesion"]
    assert (per_fold.max(axis=1) - per_fold.min(axis=1)).max() <= 1  # each band spread evenly
    pd.testing.assert_frame_equal(folds, make_detection_folds(cohort(counts), 3, seed=1))


def test_small_bands_merge_and_an_all_positive_cohort_is_fine():
    # 2 patients without lesions < 3 folds: merged into the 1-lesion band
    folds = make_detection_folds(cohort([0, 0, 1, 1, 1, 1, 2, 2, 3, 5, 4, 6]), 3, seed=0)
    assert set(folds["diagnosis"]) == {"0-1 lesions", "2-3 lesions", "4+ lesions"}
    # every patient has lesions (the paper's training set): no classes needed per fold
    folds = make_detection_folds(cohort([1, 2, 3, 1, 2, 3]), 3, seed=0)
    assert folds.groupby("fold").size().tolist() == [2, 2, 2]
    folds = make_detection_folds(cohort([2, 2, 2, 2]), 4, seed=0)
    assert set(folds["diagnosis"]) == {"any lesion load"}
    with pytest.raises(InputError, match="cannot fill 5 folds"):
        make_detection_folds(cohort([1, 2, 3]), 5, seed=0)
