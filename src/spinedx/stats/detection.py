"""Detection evaluation around :mod:`spinedx.stats.froc`: matchings stored as tables and
read back, and the comparison of a model with readers at the readers' operating points.

**Tables.** A study's matchings are stored as two tables (one row per candidate or mark,
one row per lesion; :meth:`CaseMatch.candidates_table` and
:meth:`CaseMatch.lesions_table` columns, ``case_id`` being the patient); every case of
the cohort counts, also one with neither candidates nor lesions, so the list of cases
comes separately. :func:`matches_from_tables` rebuilds the :class:`CaseMatch` objects.

**Readers.** A reader's operating point keeps every mark (a reader's confidence orders
their marks but the reader said "lesion" to each): lesion sensitivity and false positives
per case as in :func:`spinedx.stats.froc.operating_point`. The model is compared at the
same false-positive rate: its FROC sensitivity with at most the reader's false positives
per case (:func:`spinedx.stats.froc.sensitivity_at_fp_rates`, no interpolation). The
difference model - reader gets a percentile interval from the stratified patient
bootstrap of :func:`spinedx.stats.froc.bootstrap_case_weights`, both read on the same
replicate (paired; the reader's rate is recomputed in each replicate, so the interval
includes the uncertainty of the matched operating point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.froc import (
    DUPLICATE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    CaseMatch,
    _pooled,
    bootstrap_case_weights,
)

OUTCOME_CODES = {"true_positive": TRUE_POSITIVE, "false_positive": FALSE_POSITIVE, "duplicate": DUPLICATE}
CANDIDATE_COLUMNS = ["case_id", "candidate", "score", "outcome", "lesion", "iou"]
LESION_COLUMNS = ["case_id", "lesion", "equivalent_diameter_mm", "detected_by_score"]


def matches_from_tables(case_ids: Sequence[str], candidates: pd.DataFrame, lesions: pd.DataFrame,
                        source="matches") -> list[CaseMatch]:
    """The :class:`CaseMatch` of every case in ``case_ids`` (in that order) from the
    candidate and lesion tables (columns of :data:`CANDIDATE_COLUMNS`,
    :data:`LESION_COLUMNS`; other columns are ignored)."""
    for name, table, columns in (("candidates", candidates, CANDIDATE_COLUMNS), ("lesions", lesions, LESION_COLUMNS)):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"{source}: the {name} table lacks {missing}; rerun the stage that wrote it")
    case_ids = [str(c) for c in case_ids]
    unknown = (set(candidates["case_id"].astype(str)) | set(lesions["case_id"].astype(str))) - set(case_ids)
    if unknown:
        raise InputError(f"{source}: cases {sorted(unknown)[:5]} are not in the cohort's cases table")
    bad = set(candidates["outcome"]) - set(OUTCOME_CODES)
    if bad:
        raise InputError(f"{source}: unknown candidate outcome(s) {sorted(bad)}")
    by_case = {case: rows.sort_values("candidate") for case, rows in candidates.groupby(candidates["case_id"].astype(str))}
    lesions_by_case = {case: rows.sort_values("lesion") for case, rows in lesions.groupby(lesions["case_id"].astype(str))}
    empty_c, empty_l = candidates.iloc[0:0], lesions.iloc[0:0]
    matches = []
    for case in case_ids:
        rows = by_case.get(case, empty_c)
        lesion_rows = lesions_by_case.get(case, empty_l)
        matches.append(CaseMatch(
            case_id=case,
            candidate_scores=rows["score"].to_numpy(dtype=float),
            candidate_outcome=rows["outcome"].map(OUTCOME_CODES).to_numpy(dtype=np.int8),
            candidate_lesion=rows["lesion"].to_numpy(dtype=np.int64),
            candidate_overlap=rows["iou"].to_numpy(dtype=float),
            lesion_hit_score=lesion_rows["detected_by_score"].to_numpy(dtype=float),
            lesion_diameter_mm=lesion_rows["equivalent_diameter_mm"].to_numpy(dtype=float),
        ))
    return matches


def _check_same_cases(model, reader, name: str) -> None:
    if model.case_ids != reader.case_ids:
        raise InputError(f"reader {name}: the reader's cases differ from the model's (compare them on the "
                         "same cases, in the same order)")
    if not np.array_equal(model.lesions_per_case, reader.lesions_per_case):
        raise InputError(f"reader {name}: the reader's cases hold other lesions than the model's")


def _model_sensitivity_at(model, w: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Per row of ``w``: the model's highest FROC sensitivity with at most ``rates[row]``
    false positives per case (the rule of froc.sensitivity_at_fp_rates, one rate per row)."""
    tp, fp = model.curve(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.concatenate([np.zeros((w.shape[0], 1)), tp], axis=1) / model.n_lesions(w)[:, None]
    fp_per_case = fp / w.sum(axis=1)[:, None]
    index = (fp_per_case <= rates[:, None]).sum(axis=1)
    return sensitivity[np.arange(w.shape[0]), index]


def compare_with_readers(
    model_matches: Sequence[CaseMatch],
    readers: Mapping[str, Sequence[CaseMatch]],
    *,
    patient_ids: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per reader: the reader's lesion sensitivity and false positives per case
    (all marks kept), the model's sensitivity at the reader's false-positive rate, and
    the difference model - reader, each with a percentile interval (see the module
    docstring; ``n_boot = 0`` gives NaN intervals)."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1); got {level!r}")
    model = _pooled(model_matches)
    weights = np.ones((1, model.n_cases))
    if n_boot:
        weights = np.concatenate([weights, bootstrap_case_weights(model.case_positive, int(n_boot), seed, patient_ids)])
    tail = 100 * (1 - level) / 2
    rows = []
    for name, matches in readers.items():
        reader = _pooled(matches)
        _check_same_cases(model, reader, name)
        at = reader.at_threshold(weights, -math.inf)
        values = {"reader_sensitivity": at["sensitivity"], "reader_fp_per_case": at["fp_per_case"]}
        values["model_sensitivity"] = _model_sensitivity_at(model, weights, at["fp_per_case"])
        values["difference"] = values["model_sensitivity"] - values["reader_sensitivity"]
        row = {"reader": name, "n_cases": model.n_cases, "n_lesions": int(model.lesions_per_case.sum()),
               "n_marks": int(sum(m.candidate_scores.size for m in matches)),
               "n_detected": int(at["n_detected"][0]), "n_fp": int(at["n_fp"][0])}
        for key, series in values.items():
            row[key] = float(series[0])
            replicates = series[1:][~np.isnan(series[1:])]
            low, high = (np.percentile(replicates, [tail, 100 - tail]) if replicates.size else (math.nan, math.nan))
            row[f"{key}_lo"], row[f"{key}_hi"] = float(low), float(high)
        rows.append(row)
    return pd.DataFrame(rows)
