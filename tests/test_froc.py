"""Tests of spinedx.stats.froc.

1. Matching, FROC, CPM, operating point, size bands and case AUC on hand-made masks,
   expected values computed by hand (comments).
2. Agreement with picai_eval 1.4.13 (an independent, maintained evaluator) on the same
   inputs where the definitions coincide, and the documented differences.
3. The case bootstrap: weighted replicates equal explicitly resampled cases (also
   evaluated by picai_eval), intervals equal percentiles of explicit resampling.
"""

import dataclasses
import math

import numpy as np
import pytest

from spinedx.errors import InputError
from spinedx.imaging.components import equivalent_diameter_mm, extract_candidates, lesions_from_mask
from spinedx.stats.froc import (
    DUPLICATE,
    FALSE_POSITIVE,
    FP_RATES,
    TRUE_POSITIVE,
    bootstrap_case_weights,
    case_level_auc,
    cpm,
    evaluate_detection,
    froc_curve,
    iou_matrix,
    match_case,
    match_marks,
    match_scores,
    operating_point,
    sensitivity_at_fp_rates,
    sensitivity_by_size,
    threshold_at_fp_rate,
)

# Its module-scoped fixtures are built once: every test here on one xdist worker.
pytestmark = pytest.mark.xdist_group(name="froc")

picai_eval = pytest.importorskip("picai_eval")

SHAPE = (10, 10, 12)
S = np.s_


def volumes(lesions, candidates, shape=SHAPE):
    """A lesion mask (boxes) and a float32 probability map (boxes of constant score)."""
    mask = np.zeros(shape, dtype=np.uint8)
    for box in lesions:
        mask[box] = 1
    probability = np.zeros(shape, dtype=np.float32)
    for box, score in candidates:
        probability[box] = score
    return mask, probability


# Six cases, 5 lesions (expected values by hand in the tests below).
HAND_CASES = {
    # L0 found exactly (IoU 1, 0.9); L1 (27 voxels) hit by a 3-voxel row inside it
    # (IoU 3/27 = 0.111, 0.6); one false positive (0.7).
    "A": volumes([S[1:3, 1:3, 1:3], S[6:9, 6:9, 6:9]],
                 [(S[1:3, 1:3, 1:3], 0.9), (S[6, 6, 6:9], 0.6), (S[9, 0, 11], 0.7)]),
    # no lesion, two false positives (0.8, 0.3)
    "B": volumes([], [(S[2, 2, 2], 0.8), (S[8, 8, 8], 0.3)]),
    # a 30-voxel lesion hit with IoU exactly 3/30 = 0.1 (inclusive: a hit, 0.4)
    "C": volumes([S[1:4, 1:4, 1:4], S[4, 1, 1:4]], [(S[1, 1, 1:4], 0.4)]),
    # a 27-voxel lesion overlapped by 2 voxels: IoU 2/27 < 0.1, missed; the candidate is a
    # false positive (0.5). Its centroid (5, 5, 5.5) rounds to (5, 5, 6), inside the lesion.
    "D": volumes([S[5:8, 5:8, 5:8]], [(S[5, 5, 5:7], 0.5)]),
    # a 45-voxel lesion hit twice: IoU 18/45 = 0.4 (0.95) and 9/45 = 0.2 (0.35, duplicate)
    "E": volumes([S[1:4, 1:4, 1:6]], [(S[1:4, 1:4, 1:3], 0.95), (S[1:4, 1:4, 4:5], 0.35)]),
    # nothing at all: a negative case scored 0
    "F": volumes([], []),
}
F32 = lambda x: float(np.float32(x))  # noqa: E731  (scores come from float32 maps)


def components(mask, probability, threshold=0.05):
    return extract_candidates(probability, (1, 1, 1), threshold=threshold), lesions_from_mask(mask, (1, 1, 1))


def match_all(cases, **options):
    return [match_case(*components(*cases[c]), case_id=c, **options) for c in cases]


@pytest.fixture(scope="module")
def hand():
    return match_all(HAND_CASES)


# --- 1. by hand --------------------------------------------------------------------------


def test_matching_by_hand(hand):
    by_id = {m.case_id: m for m in hand}
    a = by_id["A"]
    assert a.candidate_outcome.tolist() == [TRUE_POSITIVE, TRUE_POSITIVE, FALSE_POSITIVE]
    assert a.candidate_lesion.tolist() == [0, 1, -1]
    np.testing.assert_allclose(a.candidate_overlap, [1.0, 3 / 27, 0.0])
    np.testing.assert_array_equal(a.lesion_hit_score, [F32(0.9), F32(0.6)])
    assert by_id["C"].candidate_outcome.tolist() == [TRUE_POSITIVE]  # IoU == 0.1 counts
    assert by_id["C"].candidate_overlap[0] == 0.1
    d = by_id["D"]
    assert d.candidate_outcome.tolist() == [FALSE_POSITIVE] and np.isnan(d.lesion_hit_score).all()
    e = by_id["E"]
    assert e.candidate_outcome.tolist() == [TRUE_POSITIVE, DUPLICATE]
    assert e.candidate_lesion.tolist() == [0, 0]
    np.testing.assert_allclose(e.candidate_overlap, [0.4, 0.2])
    assert [m.case_score for m in hand] == [F32(0.9), F32(0.8), F32(0.4), F32(0.5), F32(0.95), 0.0]
    assert [m.is_positive for m in hand] == [True, False, True, True, True, False]
    table = e.candidates_table()
    assert table["outcome"].tolist() == ["true_positive", "duplicate"]
    assert by_id["A"].lesions_table()["equivalent_diameter_mm"].iloc[1] == pytest.approx(equivalent_diameter_mm(27))


def test_froc_by_hand(hand):
    # TP hits 0.95 0.9 0.6 0.4, FPs 0.8 0.7 0.5 0.3; 5 lesions, 6 cases
    curve = froc_curve(hand)
    assert curve["min_score"].tolist() == [math.inf] + [F32(s) for s in (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)]
    assert curve["n_tp"].tolist() == [0, 1, 2, 2, 2, 3, 3, 4, 4]
    assert curve["n_fp"].tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 4]
    np.testing.assert_array_equal(curve["sensitivity"], curve["n_tp"] / 5)
    np.testing.assert_array_equal(curve["fp_per_case"], curve["n_fp"] / 6)
    # at most 1/8 FP/case = 0.75 FPs: 0.4; 1/4 = 1.5 FPs: 0.4; 1/2 = 3 FPs: 0.8 (at 0.4);
    # 1 and beyond: 0.8 (the curve ends there)
    expected = dict(zip(FP_RATES, [0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]))
    assert sensitivity_at_fp_rates(hand) == expected
    assert cpm(hand) == pytest.approx(4.8 / 7, abs=1e-15)
    # case AUC: positives A .9, C .4, D .5, E .95 against negatives B .8, F 0:
    # wins 2 (vs B) + 4 (vs F) of 8
    assert case_level_auc(hand) == 0.75


def test_operating_point_is_strict(hand):
    # threshold 0.5: TP .95 .9 .6 kept; FPs .8 .7 kept, the FP at exactly 0.5 is not
    point = operating_point(hand, F32(0.5))
    assert point == {"n_lesions": 5.0, "n_detected": 3.0, "sensitivity": 0.6, "n_fp": 2.0,
                     "fp_per_case": 2 / 6, "n_cases": 6.0, "threshold": F32(0.5)}
    assert operating_point(hand, np.nextafter(F32(0.5), -1))["n_fp"] == 3.0


def test_threshold_at_fp_rate(hand):
    t = threshold_at_fp_rate(hand, 0.5)  # sensitivity 0.8 first reached at min_score 0.4
    assert F32(0.3) < t < F32(0.4)
    point = operating_point(hand, t)
    assert (point["sensitivity"], point["fp_per_case"]) == (0.8, 0.5)
    assert F32(0.8) < threshold_at_fp_rate(hand, 0.1) < F32(0.9)  # 0.4 at 0 FPs, from 0.9
    only_fp = match_all({"B": HAND_CASES["B"], "D": HAND_CASES["D"]})
    assert threshold_at_fp_rate(only_fp, 0.1) == math.inf


def test_size_bands_by_hand(hand):
    # diameters: A.L0 8 vox 2.48 mm (found .9), A.L1 27 vox 3.72 (found .6), C 30 vox 3.86
    # (found .4), D 27 vox 3.72 (missed), E 45 vox 4.41 (found .95)
    bands = sensitivity_by_size(hand, F32(0.5), [0, 3, 4, 10])
    assert bands["band"].tolist() == ["[0, 3) mm", "[3, 4) mm", "[4, 10) mm"]
    assert bands["n_lesions"].tolist() == [1, 3, 1]
    assert bands["n_detected"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(bands["sensitivity"], [1.0, 1 / 3, 1.0])
    below = sensitivity_by_size(hand, F32(0.5), [5, 10])
    assert below["n_lesions"].tolist() == [0] and np.isnan(below["sensitivity"][0])


def test_duplicates_as_false_positives():
    matches = match_all(HAND_CASES, duplicates="false_positive")
    e = {m.case_id: m for m in matches}["E"]
    assert e.candidate_outcome.tolist() == [TRUE_POSITIVE, FALSE_POSITIVE]
    curve = froc_curve(matches)
    # the duplicate 0.35 adds a false positive between 0.4 and 0.3
    assert curve["min_score"].tolist()[-2:] == [F32(0.35), F32(0.3)]
    assert curve["n_fp"].tolist()[-3:] == [3, 4, 5]


def test_centre_criterion_by_hand():
    matches = match_all(HAND_CASES, criterion="centre")
    by_id = {m.case_id: m for m in matches}
    # D's candidate centre (5, 5, 6) lies in its lesion: a hit although IoU < 0.1
    assert by_id["D"].candidate_outcome.tolist() == [TRUE_POSITIVE]
    assert by_id["E"].candidate_outcome.tolist() == [TRUE_POSITIVE, DUPLICATE]
    # TP .95 .9 .6 .5 .4, FP .8 .7 .3: 1/8 -> 0.4, 1/4 (1.5 FPs) -> 0.4, then 1.0
    assert list(sensitivity_at_fp_rates(matches).values()) == [0.4, 0.4, 1, 1, 1, 1, 1]
    assert cpm(matches) == pytest.approx(5.8 / 7, abs=1e-15)


@pytest.mark.parametrize(("scores", "affinity", "outcome", "lesion", "hit"), [
    # equal scores: the lower candidate index (raster order) wins
    ([0.5, 0.5], [[0.3], [0.3]], [TRUE_POSITIVE, DUPLICATE], [0, 0], [0.5]),
    # score before overlap: the higher-scoring candidate takes the lesion
    ([0.3, 0.9], [[0.8], [0.2]], [DUPLICATE, TRUE_POSITIVE], [0, 0], [0.9]),
    # a candidate hitting two lesions takes the one of larger IoU; ties: lower lesion index
    ([0.7], [[0.2, 0.5]], [TRUE_POSITIVE], [1], [math.nan, 0.7]),
    ([0.7], [[0.5, 0.5]], [TRUE_POSITIVE], [0], [0.7, math.nan]),
    # the next candidate takes a lesion still free
    ([0.9, 0.5], [[0.3, 0.2], [0.0, 0.4]], [TRUE_POSITIVE, TRUE_POSITIVE], [0, 1], [0.9, 0.5]),
    # ... but not one it does not hit: a duplicate, and lesion 1 stays missed
    ([0.9, 0.5], [[0.3, 0.2], [0.5, 0.0]], [TRUE_POSITIVE, DUPLICATE], [0, 0], [0.9, math.nan]),
    ([0.2], [[0.0, 0.0]], [FALSE_POSITIVE], [-1], [math.nan, math.nan]),
    ([], np.zeros((0, 2)), [], [], [math.nan, math.nan]),
])
def test_match_scores_ties(scores, affinity, outcome, lesion, hit):
    got_outcome, got_lesion, got_hit = match_scores(scores, affinity)
    assert got_outcome.tolist() == outcome and got_lesion.tolist() == lesion
    np.testing.assert_array_equal(got_hit, hit)


def test_iou_matrix_against_boolean_masks():
    mask, probability = HAND_CASES["E"]
    candidates, lesions = components(mask, probability)
    iou = iou_matrix(candidates, lesions)
    for c in range(len(candidates)):
        for l_ in range(len(lesions)):
            a, b = candidates.mask(c), lesions.mask(l_)
            assert iou[c, l_] == (a & b).sum() / (a | b).sum()


def test_reader_marks():
    mask, _ = HAND_CASES["A"]
    lesions = lesions_from_mask(mask, (1, 1, 1))
    marks = [(1.6, 1.4, 1.5), (20, 0, 0), (7, 7, 7), (1, 1, 1)]
    match = match_marks(marks, [0.9, 0.8, 0.2, 0.5], lesions, case_id="A")
    # (1.6, 1.4, 1.5) rounds to (2, 1, 2): lesion 0; the later mark in lesion 0 is a duplicate
    assert match.candidate_outcome.tolist() == [TRUE_POSITIVE, FALSE_POSITIVE, TRUE_POSITIVE, DUPLICATE]
    np.testing.assert_array_equal(match.lesion_hit_score, [0.9, 0.2])
    with pytest.raises(InputError, match="confidences"):
        match_marks(marks, [0.9], lesions, case_id="A")


def test_degenerate_inputs():
    negatives = match_all({"B": HAND_CASES["B"], "F": HAND_CASES["F"]})
    assert math.isnan(case_level_auc(negatives))
    assert math.isnan(operating_point(negatives, 0.5)["sensitivity"])
    empty = match_all({"F": HAND_CASES["F"], "D0": volumes([S[1, 1, 1]], [])})
    assert froc_curve(empty)["n_tp"].tolist() == [0]
    assert cpm(empty) == 0.0
    with pytest.raises(InputError, match="unique"):
        froc_curve(match_all({"A": HAND_CASES["A"]}) * 2)
    with pytest.raises(InputError, match="no cases"):
        froc_curve([])
    with pytest.raises(InputError, match="criterion"):
        match_all({"A": HAND_CASES["A"]}, criterion="dice")
    with pytest.raises(InputError, match="shape"):
        match_case(extract_candidates(np.zeros((2, 2, 2)), (1, 1, 1), threshold=0.5),
                   lesions_from_mask(np.zeros((3, 3, 3)), (1, 1, 1)), case_id="x")
    with pytest.raises(InputError, match="edges"):
        sensitivity_by_size(match_all({"A": HAND_CASES["A"]}), 0.5, [3, 3])


# --- 2. picai_eval -------------------------------------------------------------------------


def detection_map(candidates):
    """picai_eval's input: each candidate's voxels set to its score (components do not
    touch under 26-connectivity, so picai_eval finds the same components)."""
    scores = np.concatenate([[0.0], candidates.scores]).astype(np.float32)
    return scores[candidates.labels]


def picai(cases, **options):
    ids = list(cases)
    det = [detection_map(components(*cases[c])[0]) for c in ids]
    true = [cases[c][0] for c in ids]
    return picai_eval.evaluate(y_det=det, y_true=true, subject_list=ids, num_parallel_calls=1, **options)


def as_picai_lesion_results(match):
    """(is_lesion, confidence) pairs as picai_eval lists them: TP (1, score), missed lesion
    (1, 0), FP (0, score); duplicates are not listed (ignored)."""
    rows = [(1, s) for s in match.lesion_hit_score if not np.isnan(s)]
    rows += [(1, 0.0)] * int(np.isnan(match.lesion_hit_score).sum())
    rows += [(0, s) for s, o in zip(match.candidate_scores, match.candidate_outcome) if o == FALSE_POSITIVE]
    return sorted(rows)


def random_cases(seed, n_cases=10):
    """Volumes of 2x2x2 cells of 12^3 voxels; each cell holds nothing, a lesion (ball),
    a candidate (ball with a random peak), or both, a candidate near its lesion (jittered
    centre and radius: some overlap below IoU 0.1). Objects stay 1 voxel inside their
    cell, so a candidate can only overlap the lesion of its own cell: the matching is
    unambiguous and picai_eval's assignment equals ours. Scores are multiples of 1/32,
    so ties across cases occur."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), axis=-1)
    cases = {}
    for case in range(n_cases):
        mask = np.zeros((24, 24, 24), np.uint8)
        probability = np.zeros((24, 24, 24), np.float32)
        kinds = rng.choice(["empty", "lesion", "candidate", "both"], size=8, p=[0.25, 0.15, 0.2, 0.4])
        if case % 3 == 2:  # a third of the cases without lesions
            kinds[np.isin(kinds, ["lesion", "both"])] = "candidate"
        if case == 0:
            kinds[:2] = ["lesion", "both"]  # at least one missed lesion (see the picai quirk test)
        for cell, kind in enumerate(kinds):
            offset = np.array([(cell >> k) & 1 for k in range(3)]) * 12
            centre = 6 + rng.integers(-1, 2, size=3)
            radius = rng.choice([1.0, 1.5, 2.0, 2.5])
            if kind in ("lesion", "both"):
                ball = np.linalg.norm(grid - centre, axis=-1) <= radius
                mask[tuple((np.argwhere(ball) + offset).T)] = 1
            if kind in ("candidate", "both"):
                jitter = rng.choice([-2, -1, 0, 1, 2], p=[0.1, 0.2, 0.4, 0.2, 0.1], size=3) * (kind == "both")
                c_centre = np.clip(centre + jitter, 3, 8)
                c_radius = np.clip(radius + rng.choice([-0.5, 0.0, 0.5]), 1.0, 2.5)
                distance = np.linalg.norm(grid - c_centre, axis=-1)
                peak = rng.integers(12 if kind == "both" else 4, 33) / 32
                values = np.where(distance <= c_radius, peak * (1 - 0.5 * distance / (c_radius + 0.5)), 0)
                sub = probability[offset[0]:offset[0] + 12, offset[1]:offset[1] + 12, offset[2]:offset[2] + 12]
                np.maximum(sub, values.astype(np.float32), out=sub)
        cases[f"case{case:02d}"] = (mask, probability)
    return cases


@pytest.fixture(scope="module")
def random_study():
    cases = random_cases(seed=7)
    return cases, match_all(cases), picai(cases)


def assert_agrees_with_picai(matches, metrics):
    """Per-case lists, FROC points, sensitivity at the FP rates, lesion count and AUC."""
    for match in matches:
        theirs = sorted((int(t), float(c)) for t, c, _ in metrics.lesion_results[match.case_id])
        assert as_picai_lesion_results(match) == theirs, match.case_id
    assert metrics.num_lesions == sum(m.n_lesions for m in matches)
    curve = froc_curve(matches)
    counts = metrics.calculate_counts()  # also sets metrics.thresholds
    # picai's last point is its threshold 0 (missed lesions), replaced by (TP, inf): the
    # points before it are ours after our (inf, 0, 0) start. picai counts in float32.
    assert metrics.thresholds[-1] == 0 and counts["FP"][-1] == math.inf
    np.testing.assert_array_equal(curve["min_score"][1:], metrics.thresholds[:-1])
    np.testing.assert_array_equal(curve["n_tp"][1:], counts["TP"][:-1])
    np.testing.assert_array_equal(curve["n_fp"][1:], counts["FP"][:-1])
    np.testing.assert_allclose(curve["sensitivity"][1:], metrics.lesion_TPR[:-1], rtol=1e-7)
    np.testing.assert_allclose(curve["fp_per_case"][1:], metrics.lesion_FPR[:-1], rtol=1e-7)
    ours = sensitivity_at_fp_rates(matches)
    for rate in FP_RATES:
        assert ours[rate] == pytest.approx(float(metrics.lesion_TPR_at_FPR(rate)), rel=1e-7), rate
    assert case_level_auc(matches) == pytest.approx(metrics.auroc, abs=1e-15)


def test_picai_agrees_on_hand_cases(hand):
    assert_agrees_with_picai(hand, picai(HAND_CASES))


def test_picai_agrees_on_random_cases(random_study):
    cases, matches, metrics = random_study
    outcomes = np.concatenate([m.candidate_outcome for m in matches])
    # the study exercises every outcome, ties across cases and misses by low IoU
    assert (outcomes == TRUE_POSITIVE).sum() > 10 and (outcomes == FALSE_POSITIVE).sum() > 10
    assert np.isnan(np.concatenate([m.lesion_hit_score for m in matches])).sum() >= 3
    low = [iou_matrix(*components(*cases[c])) for c in cases]
    assert any(((iou > 0) & (iou < 0.1)).any() for iou in low)  # overlapping, but missed
    assert froc_curve(matches)["min_score"].size < 1 + sum(m.candidate_scores.size for m in matches)
    assert_agrees_with_picai(matches, metrics)


def test_picai_agrees_with_duplicates_as_false_positives(hand):
    metrics = picai(HAND_CASES, allow_unmatched_candidates_with_minimal_overlap=False)
    assert_agrees_with_picai(match_all(HAND_CASES, duplicates="false_positive"), metrics)


def centre_overlap(candidate_mask, lesion_mask):
    """The centre criterion as a picai_eval overlap function (1 = hit)."""
    centre = np.floor(np.argwhere(candidate_mask).mean(axis=0) + 0.5).astype(int)
    return float(lesion_mask[tuple(centre)])


def test_picai_agrees_on_centre_criterion(random_study):
    cases, _, _ = random_study
    metrics = picai(cases, overlap_func=centre_overlap, min_overlap=0.5)
    assert_agrees_with_picai(match_all(cases, criterion="centre"), metrics)


def test_difference_score_order_versus_largest_overlap():
    # one 45-voxel lesion; the 0.9 candidate overlaps 9 voxels (IoU 0.2), the 0.3
    # candidate 36 (IoU 0.8). We: detected at 0.9. picai: assignment by overlap, so the
    # lesion counts at 0.3 and the 0.9 candidate is dropped (neither TP nor FP).
    cases = {"X": volumes([S[1:4, 1:4, 1:6]], [(S[1:4, 1:4, 1], 0.9), (S[1:4, 1:4, 3:6], 0.3)])}
    (ours,) = match_all(cases)
    assert ours.candidate_outcome.tolist() == [TRUE_POSITIVE, DUPLICATE]
    assert ours.lesion_hit_score.tolist() == [F32(0.9)]
    theirs = picai(cases).lesion_results["X"]
    assert sorted((t, c) for t, c, _ in theirs) == [(1, F32(0.3))]


def test_difference_one_candidate_hitting_two_lesions():
    # along one row: lesion 1 = x 0..9, lesion 2 = x 12..15; candidate A = x 6..13 (0.9)
    # hits both (IoU 4/14 and 2/10), candidate B = x 0..4 (0.5) hits lesion 1 (IoU 0.5).
    # We: A takes lesion 1 (larger IoU), B is a duplicate, lesion 2 is missed.
    # picai: the assignment maximising the number of matches: A-2, B-1, both found.
    shape = (1, 1, 20)
    cases = {"Y": volumes([S[0, 0, 0:10], S[0, 0, 12:16]], [(S[0, 0, 6:14], 0.9), (S[0, 0, 0:5], 0.5)], shape)}
    (ours,) = match_all(cases)
    assert ours.candidate_outcome.tolist() == [DUPLICATE, TRUE_POSITIVE]  # raster order: B is label 1
    np.testing.assert_array_equal(ours.lesion_hit_score, [F32(0.9), math.nan])
    theirs = picai(cases).lesion_results["Y"]
    assert sorted((t, c) for t, c, _ in theirs) == [(1, F32(0.5)), (1, F32(0.9))]


def test_difference_picai_drops_its_lowest_point():
    # every lesion found, the lowest-scoring candidate a TP: picai overwrites that last
    # point with (previous sensitivity, inf) and never reaches sensitivity 1; we do.
    cases = {"A": volumes([S[1:3, 1:3, 1:3], S[6:9, 6:9, 6:9]], [(S[1:3, 1:3, 1:3], 0.9), (S[6:9, 6:9, 6:9], 0.25)]),
             "B": volumes([], [(S[2, 2, 2], 0.5)])}
    matches = match_all(cases)
    metrics = picai(cases)
    assert froc_curve(matches)["sensitivity"].tolist() == [0, 0.5, 0.5, 1.0]
    assert metrics.lesion_TPR.tolist() == [0.5, 0.5, 0.5] and metrics.lesion_FPR[-1] == math.inf
    assert sensitivity_at_fp_rates(matches)[1.0] == 1.0
    assert metrics.lesion_TPR_at_FPR(1.0) == 0.5


# --- 3. bootstrap --------------------------------------------------------------------------


def resample(matches, weights):
    """The cases of one bootstrap replicate, each repeated as often as it was drawn."""
    return [dataclasses.replace(m, case_id=f"{m.case_id}#{k}")
            for m, count in zip(matches, weights) for k in range(int(count))]


def public_metrics(matches, threshold, edges):
    point = operating_point(matches, threshold)
    sens = sensitivity_at_fp_rates(matches)
    values = [point["sensitivity"], point["fp_per_case"], *sens.values(), cpm(matches), case_level_auc(matches)]
    bands = sensitivity_by_size(matches, threshold, edges)["sensitivity"].tolist()
    return values, bands


def test_bootstrap_weights_are_stratified_and_seeded(hand):
    positive = [m.is_positive for m in hand]
    weights = bootstrap_case_weights(positive, 500, seed=3)
    assert weights.shape == (500, 6)
    assert (weights[:, positive].sum(axis=1) == 4).all() and (weights[:, ~np.array(positive)].sum(axis=1) == 2).all()
    np.testing.assert_array_equal(weights, bootstrap_case_weights(positive, 500, seed=3))
    assert not np.array_equal(weights, bootstrap_case_weights(positive, 500, seed=4))


def test_intervals_equal_explicit_resampling(random_study):
    _, matches, _ = random_study
    edges, threshold, n_boot, seed = [0, 3, 6], 0.5, 40, 11
    result = evaluate_detection(matches, threshold=threshold, size_bands_mm=edges, n_boot=n_boot, seed=seed, chunk=16)
    estimates, bands = public_metrics(matches, threshold, edges)
    np.testing.assert_allclose(result.summary["estimate"], estimates, rtol=1e-15)
    np.testing.assert_allclose(result.size_bands["sensitivity"], bands, rtol=1e-15)
    replicates = [public_metrics(resample(matches, w), threshold, edges)
                  for w in bootstrap_case_weights([m.is_positive for m in matches], n_boot, seed)]
    values = np.array([v for v, _ in replicates])
    band_values = np.array([b for _, b in replicates])
    np.testing.assert_allclose(result.summary["ci_lo"], np.nanpercentile(values, 2.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.summary["ci_hi"], np.nanpercentile(values, 97.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.size_bands["ci_lo"], np.nanpercentile(band_values, 2.5, axis=0), rtol=1e-12)
    names = result.summary["metric"].tolist()
    assert names[:3] == ["lesion_sensitivity", "fp_per_case", "sensitivity_at_0.125_fp_per_case"]
    assert result.summary["metric"].tolist()[-2:] == ["cpm", "case_auc"]
    assert (result.summary["ci_lo"] <= result.summary["ci_hi"]).all()
    assert result.settings["n_lesions"] == sum(m.n_lesions for m in matches)
    again = evaluate_detection(matches, threshold=threshold, size_bands_mm=edges, n_boot=n_boot, seed=seed)
    assert again.summary.equals(result.summary)


def test_patients_with_several_cases(random_study):
    _, matches, _ = random_study
    # patient A has cases 0-2, B cases 3-4 (e.g. visits), the others one case each: the
    # number of cases per replicate varies, and so does the FP-per-case denominator
    patients = ["A", "A", "A", "B", "B"] + [f"P{i}" for i in range(5, len(matches))]
    weights = bootstrap_case_weights([m.is_positive for m in matches], 300, seed=2, patient_ids=patients)
    assert (weights[:, [0, 0, 1, 3]] == weights[:, [1, 2, 2, 4]]).all()
    assert len(set(weights.sum(axis=1))) > 3
    first = [0, 3, *range(5, len(matches))]
    positive = np.array([any(m.is_positive for m, p in zip(matches, patients) if p == patients[i]) for i in first])
    assert (weights[:, first][:, positive].sum(axis=1) == positive.sum()).all()
    edges, threshold, n_boot, seed = [0, 3, 6], 0.5, 30, 9
    result = evaluate_detection(matches, threshold=threshold, size_bands_mm=edges, n_boot=n_boot, seed=seed,
                                patient_ids=patients)
    replicates = [public_metrics(resample(matches, w), threshold, edges)
                  for w in bootstrap_case_weights([m.is_positive for m in matches], n_boot, seed, patients)]
    values = np.array([v for v, _ in replicates])
    np.testing.assert_allclose(result.summary["ci_lo"], np.nanpercentile(values, 2.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.summary["ci_hi"], np.nanpercentile(values, 97.5, axis=0), rtol=1e-12)
    with pytest.raises(InputError, match="patient ids"):
        bootstrap_case_weights([True, False], 5, seed=0, patient_ids=["P1"])


def test_bootstrap_replicates_agree_with_picai(random_study):
    cases, matches, _ = random_study
    ids = list(cases)
    for weights in bootstrap_case_weights([m.is_positive for m in matches], 2, seed=5):
        drawn = {f"{c}#{k}": cases[c] for c, count in zip(ids, weights) for k in range(int(count))}
        assert_agrees_with_picai(resample(matches, weights), picai(drawn))


def test_no_bootstrap_gives_nan_intervals(hand):
    result = evaluate_detection(hand, threshold=0.5, n_boot=0)
    assert result.summary["ci_lo"].isna().all() and result.size_bands is None
    with pytest.raises(InputError, match="n_boot"):
        evaluate_detection(hand, threshold=0.5, n_boot=-1)
    with pytest.raises(InputError, match="fp_rates"):
        evaluate_detection(hand, threshold=0.5, fp_rates=[0])
