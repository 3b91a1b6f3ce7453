"""Lesion-level detection evaluation: matching, FROC, CPM, size bands, case-level AUC.

The unit is the lesion. Definitions (each one is a parameter where a study could differ):

**Hit criterion** (``criterion``):

* ``"iou"``: a candidate hits a lesion when the intersection over union of their
  voxel sets is at least ``min_iou`` (default 0.1, inclusive, as picai_eval);
* ``"centre"``: a candidate hits the lesion whose mask contains the candidate's centre
  (its centroid, rounded to the nearest voxel; see ``Region.centre_index``). Reader
  marks (points) are matched this way, with :func:`match_marks`.

**Matching** (one candidate counts for at most one lesion and vice versa): candidates
are visited by decreasing score (ties: lower candidate label first); each takes, among
the lesions it hits that no earlier candidate took, the one of largest IoU (ties: lower
lesion label). A candidate that hits nothing is a false positive. A candidate whose hit
lesions were all taken by higher-scoring candidates is a *duplicate*: with
``duplicates="ignore"`` (default; picai_eval's default and LUNA16's rule) it is neither
a true nor a false positive, with ``duplicates="false_positive"`` it is a false
positive. Because candidates are taken in score order, the matching among the
candidates kept at any score threshold is the restriction of this one matching: a
lesion is detected at threshold ``t`` exactly when its matched candidate is kept.

**Operating point**: a candidate is kept when its score is strictly above the threshold
(the project's decision rule, ``spinedx.stats.binary.positive_calls``). Lesion-level
sensitivity = detected lesions / all lesions; false positives per case = kept false
positives / all cases (cases without lesions included).

**FROC curve**: one point per distinct score ``s`` of a true or false positive, keeping
the candidates scoring ``>= s`` (``min_score``), preceded by the point (0, 0) at
``min_score = inf``.

**Sensitivity at an FP rate** ``f`` (1/8, 1/4, 1/2, 1, 2, 4, 8 per case by default):
the highest sensitivity among the curve's points with at most ``f`` false positives per
case, no interpolation (0 when even the highest-scoring point has more; the last
point's sensitivity when the curve ends below ``f``). Identical to picai_eval's
``Metrics.lesion_TPR_at_FPR``. **CPM** (competition performance metric): the mean of
the sensitivities at the FP rates.

**Case level**: a case is positive when it has at least one lesion; its score is the
highest score of its candidates (duplicates included), 0 when it has none; AUC by
Mann-Whitney (ties count one half).

**Size bands**: lesions grouped by equivalent diameter (sphere of the same volume) into
``[edges[i], edges[i+1])`` mm; sensitivity at the operating point per band.

**Intervals**: percentile intervals from a patient-level bootstrap: each replicate draws
patients with replacement (with all their cases, lesions and candidates; one case per
patient unless ``patient_ids`` groups several), stratified by whether a patient has a
lesion so that every replicate has as many lesion-bearing patients as the data. A
patient drawn twice counts twice. Replicates in which a quantity is undefined (a size
band without lesions) are left out of that quantity's interval. Seeded.

Differences from picai_eval 1.4.13 (tested in tests/test_froc.py): picai matches by a
Hungarian assignment that maximises the number of matches and then the total IoU,
ignoring scores, instead of the score-ordered matching above (the two differ only when
a candidate hits several lesions or a lesion is hit by several candidates); picai
replaces its lowest-threshold point by (second-lowest sensitivity, infinite FPs), which
drops a real point when no lesion is missed; picai keeps candidates ``>= threshold``.

This module imports numpy and pandas only (no torch, no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.imaging.components import ComponentMap

__all__ = [
    "CRITERIA",
    "DUPLICATES",
    "FP_RATES",
    "CaseMatch",
    "DetectionEvaluation",
    "case_level_auc",
    "cpm",
    "evaluate_detection",
    "froc_curve",
    "iou_matrix",
    "match_case",
    "match_marks",
    "match_scores",
    "operating_point",
    "sensitivity_at_fp_rates",
    "sensitivity_by_size",
    "threshold_at_fp_rate",
]

#: False positives per case at which sensitivity is read off the FROC (the CPM's points).
FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CRITERIA: tuple[str, ...] = ("iou", "centre")
DUPLICATES: tuple[str, ...] = ("ignore", "false_positive")

#: Outcomes of a candidate.
TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE = 1, 0, -1


# ---------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseMatch:
    """Matching of one case's candidates to its lesions.

    Per candidate (in the order given): ``candidate_scores``, ``candidate_outcome``
    (``TRUE_POSITIVE`` 1, ``FALSE_POSITIVE`` 0, ``DUPLICATE`` -1),
    ``candidate_lesion`` (index of the lesion it detects, or for a duplicate the lesion
    it hit; -1 for none) and ``candidate_overlap`` (IoU with that lesion; 0 for none).
    Per lesion: ``lesion_hit_score`` (score of the candidate that detects it, NaN when
    missed) and ``lesion_diameter_mm``.
    """

    case_id: str
    candidate_scores: np.ndarray
    candidate_outcome: np.ndarray
    candidate_lesion: np.ndarray
    candidate_overlap: np.ndarray
    lesion_hit_score: np.ndarray
    lesion_diameter_mm: np.ndarray
    settings: dict = field(default_factory=dict)

    @property
    def n_lesions(self) -> int:
        return int(self.lesion_hit_score.size)

    @property
    def is_positive(self) -> bool:
        """A case with at least one lesion."""
        return self.n_lesions > 0

    @property
    def case_score(self) -> float:
        """Highest candidate score (duplicates included); 0 without candidates."""
        return float(self.candidate_scores.max()) if self.candidate_scores.size else 0.0

    def candidates_table(self) -> pd.DataFrame:
        names = {TRUE_POSITIVE: "true_positive", FALSE_POSITIVE: "false_positive", DUPLICATE: "duplicate"}
        return pd.DataFrame({
            "case_id": self.case_id,
            "candidate": np.arange(self.candidate_scores.size),
            "score": self.candidate_scores,
            "outcome": [names[int(o)] for o in self.candidate_outcome],
            "lesion": self.candidate_lesion,
            "iou": self.candidate_overlap,
        })

    def lesions_table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "case_id": self.case_id,
            "lesion": np.arange(self.n_lesions),
            "equivalent_diameter_mm": self.lesion_diameter_mm,
            "detected_by_score": self.lesion_hit_score,
        })


def _check_choice(value, options, name):
    if value not in options:
        raise InputError(f"{name} must be one of {options}; got {value!r}")


def match_scores(scores, affinity, *, duplicates: str = "ignore"):
    """The score-ordered one-to-one matching (see the module docstring).

    ``affinity[c, l] > 0`` when candidate ``c`` hits lesion ``l``; among several free
    hit lesions a candidate takes the one of largest affinity. Returns
    ``(outcome, lesion, hit_score)``: per candidate its outcome and lesion index (-1
    for none), per lesion the score of the candidate that detects it (NaN if none).
    """
    _check_choice(duplicates, DUPLICATES, "duplicates")
    scores = np.asarray(scores, dtype=float).reshape(-1)
    affinity = np.asarray(affinity, dtype=float)
    n_candidates = scores.size
    if affinity.ndim != 2 or affinity.shape[0] != n_candidates:
        raise InputError(f"affinity must have shape (candidates={n_candidates}, lesions); got {affinity.shape}")
    if not np.isfinite(scores).all():
        raise InputError("candidate scores must be finite")
    n_lesions = affinity.shape[1]
    outcome = np.full(n_candidates, FALSE_POSITIVE, dtype=np.int8)
    lesion = np.full(n_candidates, -1, dtype=np.int64)
    hit_score = np.full(n_lesions, math.nan)
    taken = np.zeros(n_lesions, dtype=bool)
    order = np.lexsort((np.arange(n_candidates), -scores))
    for c in order:
        hits = affinity[c] > 0
        if not hits.any():
            continue
        free = hits & ~taken
        if free.any():
            best = int(np.argmax(np.where(free, affinity[c], -np.inf)))
            taken[best] = True
            hit_score[best] = scores[c]
            outcome[c] = TRUE_POSITIVE
        else:
            best = int(np.argmax(np.where(hits, affinity[c], -np.inf)))
            outcome[c] = DUPLICATE if duplicates == "ignore" else FALSE_POSITIVE
        lesion[c] = best
    return outcome, lesion, hit_score


def iou_matrix(candidates: ComponentMap, lesions: ComponentMap) -> np.ndarray:
    """Intersection over union of every candidate (rows) with every lesion (columns)."""
    if candidates.labels.shape != lesions.labels.shape:
        raise InputError(f"candidate map shape {candidates.labels.shape} differs from lesion "
                         f"mask shape {lesions.labels.shape}; resample both onto one grid")
    n_c, n_l = len(candidates), len(lesions)
    both = (candidates.labels > 0) & (lesions.labels > 0)
    pairs = candidates.labels[both].astype(np.int64) * (n_l + 1) + lesions.labels[both]
    inter = np.bincount(pairs, minlength=(n_c + 1) * (n_l + 1)).reshape(n_c + 1, n_l + 1)[1:, 1:]
    size_c = np.array([r.size_voxels for r in candidates.regions], dtype=float)
    size_l = np.array([r.size_voxels for r in lesions.regions], dtype=float)
    union = size_c[:, None] + size_l[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _centre_hits(points, lesions: ComponentMap) -> np.ndarray:
    """affinity[c, l] = 1 when voxel ``points[c]`` lies in lesion ``l``."""
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    shape = np.array(lesions.labels.shape)
    inside = ((points >= 0) & (points < shape)).all(axis=1)
    affinity = np.zeros((points.shape[0], len(lesions)))
    label = lesions.labels[tuple(points[inside].T)] if inside.any() else np.zeros(0, dtype=int)
    rows = np.flatnonzero(inside)[label > 0]
    affinity[rows, label[label > 0] - 1] = 1.0
    return affinity


def _diameters(lesions: ComponentMap) -> np.ndarray:
    return np.array([r.equivalent_diameter_mm for r in lesions.regions], dtype=float)


def match_case(
    candidates: ComponentMap,
    lesions: ComponentMap,
    *,
    case_id: str,
    criterion: str = "iou",
    min_iou: float = 0.1,
    duplicates: str = "ignore",
) -> CaseMatch:
    """Match one case's candidates (:func:`~spinedx.imaging.components.extract_candidates`)
    to its lesions (:func:`~spinedx.imaging.components.lesions_from_mask`)."""
    _check_choice(criterion, CRITERIA, "criterion")
    if not 0 < min_iou <= 1:
        raise InputError(f"min_iou must be in (0, 1]; got {min_iou!r}")
    iou = iou_matrix(candidates, lesions)
    if criterion == "iou":
        affinity = np.where(iou >= min_iou, iou, 0.0)
    else:
        centres = [r.centre_index for r in candidates.regions]
        # Among the (at most one) lesion holding the centre, IoU is reported, not used.
        affinity = _centre_hits(np.reshape(centres, (-1, 3)), lesions)
    scores = candidates.scores
    if np.isnan(scores).any():
        raise InputError("candidates have no scores: pass the output of extract_candidates, "
                         "not of lesions_from_mask")
    outcome, lesion, hit_score = match_scores(scores, affinity, duplicates=duplicates)
    overlap = np.where(lesion >= 0, iou[np.arange(scores.size), np.maximum(lesion, 0)] if iou.size else 0.0, 0.0)
    return CaseMatch(
        case_id=str(case_id), candidate_scores=scores, candidate_outcome=outcome,
        candidate_lesion=lesion, candidate_overlap=overlap, lesion_hit_score=hit_score,
        lesion_diameter_mm=_diameters(lesions),
        settings={"criterion": criterion, "min_iou": float(min_iou), "duplicates": duplicates},
    )


def match_marks(
    points_voxel,
    scores,
    lesions: ComponentMap,
    *,
    case_id: str,
    duplicates: str = "ignore",
) -> CaseMatch:
    """Match point marks (a reader's lesion marks: voxel coordinates (z, y, x), one row
    per mark, with a confidence each) to lesions by the centre criterion: a mark hits
    the lesion whose mask contains its voxel (coordinates rounded half up). Marks
    outside the volume hit nothing."""
    points = np.floor(np.asarray(points_voxel, dtype=float).reshape(-1, 3) + 0.5)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if scores.size != points.shape[0]:
        raise InputError(f"{points.shape[0]} marks but {scores.size} confidences for case {case_id}")
    affinity = _centre_hits(points, lesions)
    outcome, lesion, hit_score = match_scores(scores, affinity, duplicates=duplicates)
    return CaseMatch(
        case_id=str(case_id), candidate_scores=scores, candidate_outcome=outcome,
        candidate_lesion=lesion, candidate_overlap=np.zeros(scores.size),
        lesion_hit_score=hit_score, lesion_diameter_mm=_diameters(lesions),
        settings={"criterion": "centre", "duplicates": duplicates},
    )


# ---------------------------------------------------------------------------------------
# Pooled cases and case-weighted metrics (weights: 1 each, or bootstrap multiplicities)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pooled:
    """All cases' matchings flattened into arrays.

    Every metric below takes case weights ``w`` of shape (B, n_cases): all ones for the
    estimate, how often each case was drawn for a bootstrap replicate. A weight of 2
    is the same as the case appearing twice (tested against explicit resampling).
    """

    case_ids: tuple[str, ...]
    case_positive: np.ndarray  # bool (n_cases,)
    case_score: np.ndarray  # (n_cases,)
    lesions_per_case: np.ndarray  # (n_cases,)
    lesion_case: np.ndarray  # (n_lesions,)
    lesion_hit: np.ndarray  # (n_lesions,) NaN = missed
    lesion_diameter: np.ndarray
    event_case: np.ndarray  # TP and FP events sorted by decreasing score
    event_tp: np.ndarray  # bool
    group_end: np.ndarray  # index of the last event of each distinct score
    group_score: np.ndarray  # the distinct scores, decreasing
    fp_case: np.ndarray
    fp_score: np.ndarray

    @property
    def n_cases(self) -> int:
        return len(self.case_ids)

    @classmethod
    def from_matches(cls, matches: Sequence[CaseMatch]) -> _Pooled:
        matches = list(matches)
        if not matches:
            raise InputError("no cases to evaluate")
        ids = [m.case_id for m in matches]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise InputError(f"case ids must be unique (one matching per case); repeated: {repeated[:5]}")
        lesion_case = np.concatenate([np.full(m.n_lesions, i) for i, m in enumerate(matches)]).astype(np.int64)
        lesion_hit = np.concatenate([m.lesion_hit_score for m in matches]).astype(float)
        lesion_diameter = np.concatenate([m.lesion_diameter_mm for m in matches]).astype(float)
        fp_parts = [(i, m.candidate_scores[m.candidate_outcome == FALSE_POSITIVE]) for i, m in enumerate(matches)]
        fp_case = np.concatenate([np.full(s.size, i) for i, s in fp_parts]).astype(np.int64)
        fp_score = np.concatenate([s for _, s in fp_parts]).astype(float)

        detected = ~np.isnan(lesion_hit)
        event_score = np.concatenate([lesion_hit[detected], fp_score])
        event_case = np.concatenate([lesion_case[detected], fp_case])
        event_tp = np.concatenate([np.ones(int(detected.sum()), bool), np.zeros(fp_score.size, bool)])
        order = np.argsort(-event_score, kind="stable")
        event_score, event_case, event_tp = event_score[order], event_case[order], event_tp[order]
        if event_score.size:
            last = np.flatnonzero(np.append(event_score[1:] != event_score[:-1], True))
        else:
            last = np.zeros(0, dtype=np.int64)
        return cls(
            case_ids=tuple(ids),
            case_positive=np.array([m.is_positive for m in matches]),
            case_score=np.array([m.case_score for m in matches], dtype=float),
            lesions_per_case=np.array([m.n_lesions for m in matches], dtype=float),
            lesion_case=lesion_case, lesion_hit=lesion_hit, lesion_diameter=lesion_diameter,
            event_case=event_case, event_tp=event_tp, group_end=last,
            group_score=event_score[last], fp_case=fp_case, fp_score=fp_score,
        )

    def n_lesions(self, w: np.ndarray) -> np.ndarray:
        return w @ self.lesions_per_case

    def curve(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted TP and FP counts at each distinct score, (B, groups) each."""
        if self.event_case.size == 0:
            return np.zeros((w.shape[0], 0)), np.zeros((w.shape[0], 0))
        ew = w[:, self.event_case]
        tp = np.cumsum(ew * self.event_tp, axis=1)[:, self.group_end]
        fp = np.cumsum(ew * ~self.event_tp, axis=1)[:, self.group_end]
        return tp, fp

    def sensitivity_at(self, w: np.ndarray, fp_rates: Sequence[float]) -> np.ndarray:
        """(B, rates): highest sensitivity with at most ``rate`` FPs per case."""
        tp, fp = self.curve(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens = np.concatenate([np.zeros((w.shape[0], 1)), tp], axis=1) / self.n_lesions(w)[:, None]
        fppc = fp / w.sum(axis=1)[:, None]  # cases in the replicate (patients may hold several)
        # FPs per case never decrease along the curve, so the points within a rate form a
        # prefix and its last point has the highest sensitivity.
        out = np.empty((w.shape[0], len(fp_rates)))
        rows = np.arange(w.shape[0])
        for j, rate in enumerate(fp_rates):
            out[:, j] = sens[rows, (fppc <= rate).sum(axis=1)]
        return out

    def at_threshold(self, w: np.ndarray, threshold: float, lesion_select=None) -> dict[str, np.ndarray]:
        kept = self.lesion_hit > threshold  # NaN (missed) compares False
        lesion_w = w[:, self.lesion_case]
        if lesion_select is not None:
            lesion_w = lesion_w * lesion_select
        n_lesions = lesion_w.sum(axis=1)
        detected = (lesion_w * kept).sum(axis=1)
        fp = (w[:, self.fp_case] * (self.fp_score > threshold)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"n_lesions": n_lesions, "n_detected": detected, "sensitivity": detected / n_lesions,
                    "n_fp": fp, "fp_per_case": fp / w.sum(axis=1)}

    def auc(self, w: np.ndarray) -> np.ndarray:
        pos, neg = self.case_positive, ~self.case_positive
        if not pos.any() or not neg.any():
            return np.full(w.shape[0], math.nan)
        s_pos, s_neg = self.case_score[pos], self.case_score[neg]
        wins = (s_pos[:, None] > s_neg[None, :]) + 0.5 * (s_pos[:, None] == s_neg[None, :])
        w_pos, w_neg = w[:, pos], w[:, neg]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.einsum("bi,ij,bj->b", w_pos, wins, w_neg) / (w_pos.sum(1) * w_neg.sum(1))


def _pooled(matches) -> _Pooled:
    return matches if isinstance(matches, _Pooled) else _Pooled.from_matches(matches)


def _ones(pooled: _Pooled) -> np.ndarray:
    return np.ones((1, pooled.n_cases))


def _check_fp_rates(fp_rates) -> tuple[float, ...]:
    rates = tuple(float(r) for r in fp_rates)
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise InputError(f"fp_rates must be positive finite numbers; got {fp_rates!r}")
    return rates


def _check_edges(edges_mm) -> tuple[float, ...]:
    edges = tuple(float(e) for e in edges_mm)
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise InputError(f"size band edges must be >= 0 and strictly increasing (mm), at least "
                         f"two; got {edges_mm!r}")
    return edges


# ---------------------------------------------------------------------------------------
# Public metrics (point estimates)
# ---------------------------------------------------------------------------------------


def froc_curve(matches: Sequence[CaseMatch]) -> pd.DataFrame:
    """The FROC curve: ``min_score`` (candidates scoring at least this are kept),
    ``n_tp`` (lesions detected), ``n_fp``, ``sensitivity``, ``fp_per_case``; first row
    ``min_score = inf`` (nothing kept), then one row per distinct score, decreasing."""
    pooled = _pooled(matches)
    tp, fp = pooled.curve(_ones(pooled))
    n_tp = np.concatenate([[0.0], tp[0]])
    n_fp = np.concatenate([[0.0], fp[0]])
    n_lesions = pooled.lesions_per_case.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = n_tp / n_lesions
    return pd.DataFrame({
        "min_score": np.concatenate([[math.inf], pooled.group_score]),
        "n_tp": n_tp.astype(np.int64), "n_fp": n_fp.astype(np.int64),
        "sensitivity": sensitivity, "fp_per_case": n_fp / pooled.n_cases,
    })


def sensitivity_at_fp_rates(matches: Sequence[CaseMatch], fp_rates: Sequence[float] = FP_RATES) -> dict[float, float]:
    """Highest lesion sensitivity with at most ``rate`` false positives per case, per rate."""
    pooled = _pooled(matches)
    rates = _check_fp_rates(fp_rates)
    values = pooled.sensitivity_at(_ones(pooled), rates)[0]
    return {rate: float(v) for rate, v in zip(rates, values)}


def cpm(matches: Sequence[CaseMatch], fp_rates: Sequence[float] = FP_RATES) -> float:
    """Competition performance metric: mean sensitivity at ``fp_rates``."""
    return float(np.mean(list(sensitivity_at_fp_rates(matches, fp_rates).values())))


def threshold_at_fp_rate(matches: Sequence[CaseMatch], fp_rate: float) -> float:
    """The operating threshold (keep ``score > threshold``) that reaches the sensitivity
    at ``fp_rate`` with the fewest false positives: just below the ``min_score`` of the
    first FROC point of that sensitivity within the rate; ``inf`` when none."""
    (rate,) = _check_fp_rates([fp_rate])
    curve = froc_curve(matches)
    within = curve[curve["fp_per_case"] <= rate]
    best = within[within["n_tp"] == within["n_tp"].max()].iloc[0]
    if math.isinf(best["min_score"]):
        return math.inf
    return float(np.nextafter(best["min_score"], -math.inf))


def operating_point(matches: Sequence[CaseMatch], threshold: float) -> dict[str, float]:
    """Counts and rates with the candidates scoring strictly above ``threshold`` kept."""
    pooled = _pooled(matches)
    values = pooled.at_threshold(_ones(pooled), float(threshold))
    result = {key: float(v[0]) for key, v in values.items()}
    result.update(n_cases=float(pooled.n_cases), threshold=float(threshold))
    return result


def _band_masks(pooled: _Pooled, edges) -> list[np.ndarray]:
    d = pooled.lesion_diameter
    return [(d >= lo) & (d < hi) for lo, hi in zip(edges[:-1], edges[1:])]


def sensitivity_by_size(matches: Sequence[CaseMatch], threshold: float, edges_mm: Sequence[float]) -> pd.DataFrame:
    """Lesion sensitivity at the operating point per equivalent-diameter band
    ``[edges[i], edges[i+1])`` mm; lesions outside every band are left out."""
    pooled = _pooled(matches)
    edges = _check_edges(edges_mm)
    rows = []
    for (lo, hi), select in zip(zip(edges[:-1], edges[1:]), _band_masks(pooled, edges)):
        v = pooled.at_threshold(_ones(pooled), float(threshold), lesion_select=select)
        rows.append({"band": f"[{lo:g}, {hi:g}) mm", "min_mm": lo, "max_mm": hi,
                     "n_lesions": int(v["n_lesions"][0]), "n_detected": int(v["n_detected"][0]),
                     "sensitivity": float(v["sensitivity"][0])})
    return pd.DataFrame(rows)


def case_level_auc(matches: Sequence[CaseMatch]) -> float:
    """Case-level detection AUC: score = highest candidate score, positive = has a lesion."""
    pooled = _pooled(matches)
    return float(pooled.auc(_ones(pooled))[0])


# ---------------------------------------------------------------------------------------
# Everything with bootstrap intervals
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionEvaluation:
    """``summary``: metric, estimate, ci_lo, ci_hi (one row per metric); ``froc``: the
    curve; ``size_bands``: per band counts, sensitivity and interval (None without
    bands); ``settings``: what was computed how."""

    summary: pd.DataFrame
    froc: pd.DataFrame
    size_bands: pd.DataFrame | None
    settings: dict


def bootstrap_case_weights(case_positive, n_boot: int, seed: int, patient_ids=None) -> np.ndarray:
    """(n_boot, n_cases) multiplicities of a stratified patient bootstrap: within the
    lesion-bearing patients and within the others, as many patients drawn with
    replacement as there are (a multinomial draw of how often each patient appears);
    every case weighs what its patient does. ``patient_ids`` (one per case; None = each
    case its own patient) groups cases; a patient is lesion-bearing when any case is."""
    case_positive = np.asarray(case_positive, dtype=bool)
    if patient_ids is None:
        patient_of_case = np.arange(case_positive.size)
    else:
        patient_ids = list(patient_ids)
        if len(patient_ids) != case_positive.size:
            raise InputError(f"{len(patient_ids)} patient ids for {case_positive.size} cases")
        first = {}
        patient_of_case = np.array([first.setdefault(p, len(first)) for p in patient_ids])
    patient_positive = np.zeros(patient_of_case.max() + 1 if patient_of_case.size else 0, dtype=bool)
    np.logical_or.at(patient_positive, patient_of_case, case_positive)
    rng = np.random.default_rng(seed)
    weights = np.zeros((int(n_boot), patient_positive.size))
    for stratum in (True, False):
        columns = np.flatnonzero(patient_positive == stratum)
        if columns.size:
            uniform = np.full(columns.size, 1 / columns.size)
            weights[:, columns] = rng.multinomial(columns.size, uniform, size=int(n_boot))
    return weights[:, patient_of_case]


def _metric_rows(pooled: _Pooled, w: np.ndarray, threshold: float, rates, band_masks) -> dict[str, np.ndarray]:
    """All interval-bearing metrics for case weights ``w`` (B, n_cases): name -> (B,)."""
    at = pooled.at_threshold(w, threshold)
    sens_at = pooled.sensitivity_at(w, rates)
    values = {"lesion_sensitivity": at["sensitivity"], "fp_per_case": at["fp_per_case"]}
    for j, rate in enumerate(rates):
        values[f"sensitivity_at_{rate:g}_fp_per_case"] = sens_at[:, j]
    values["cpm"] = sens_at.mean(axis=1)
    values["case_auc"] = pooled.auc(w)
    for k, select in enumerate(band_masks):
        values[f"band_{k}"] = pooled.at_threshold(w, threshold, lesion_select=select)["sensitivity"]
    return values


def evaluate_detection(
    matches: Sequence[CaseMatch],
    *,
    threshold: float,
    fp_rates: Sequence[float] = FP_RATES,
    size_bands_mm: Sequence[float] | None = None,
    patient_ids: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
) -> DetectionEvaluation:
    """Lesion sensitivity and FPs per case at ``threshold``, sensitivity at ``fp_rates``,
    CPM, case-level AUC and (with ``size_bands_mm`` edges) sensitivity per size band,
    each with a percentile interval from ``n_boot`` stratified patient-bootstrap
    replicates (``seed``; ``n_boot = 0`` gives NaN intervals). ``patient_ids`` (one per
    match, in order) groups the cases of one patient; default: one case per patient. ``chunk`` replicates are computed at
    a time to bound memory."""
    pooled = _pooled(matches)
    rates = _check_fp_rates(fp_rates)
    edges = _check_edges(size_bands_mm) if size_bands_mm is not None else None
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1); got {level!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot must be a non-negative integer; got {n_boot!r}")
    threshold = float(threshold)
    masks = _band_masks(pooled, edges) if edges else []

    estimate = {k: float(v[0]) for k, v in _metric_rows(pooled, _ones(pooled), threshold, rates, masks).items()}
    lo = dict.fromkeys(estimate, math.nan)
    hi = dict.fromkeys(estimate, math.nan)
    if n_boot:
        weights = bootstrap_case_weights(pooled.case_positive, int(n_boot), seed, patient_ids)
        parts = [_metric_rows(pooled, weights[i:i + chunk], threshold, rates, masks)
                 for i in range(0, int(n_boot), chunk)]
        tail = 100 * (1 - level) / 2
        for key in estimate:
            values = np.concatenate([p[key] for p in parts])
            values = values[~np.isnan(values)]
            if values.size:
                lo[key], hi[key] = (float(x) for x in np.percentile(values, [tail, 100 - tail]))

    metric_names = [k for k in estimate if not k.startswith("band_")]
    summary = pd.DataFrame({"metric": metric_names, "estimate": [estimate[k] for k in metric_names],
                            "ci_lo": [lo[k] for k in metric_names], "ci_hi": [hi[k] for k in metric_names]})
    bands = None
    if edges:
        bands = sensitivity_by_size(pooled, threshold, edges)
        bands["ci_lo"] = [lo[f"band_{k}"] for k in range(len(masks))]
        bands["ci_hi"] = [hi[f"band_{k}"] for k in range(len(masks))]
    at = operating_point(pooled, threshold)
    settings = {
        "threshold": threshold, "fp_rates": list(rates), "size_bands_mm": list(edges) if edges else None,
        "n_boot": int(n_boot), "seed": int(seed), "level": float(level),
        "n_cases": pooled.n_cases, "n_positive_cases": int(pooled.case_positive.sum()),
        "n_lesions": int(pooled.lesions_per_case.sum()), "n_detected": int(at["n_detected"]),
        "n_fp": int(at["n_fp"]),
    }
    return DetectionEvaluation(summary=summary, froc=froc_curve(pooled), size_bands=bands, settings=settings)
