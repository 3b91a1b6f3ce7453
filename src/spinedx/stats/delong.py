"""DeLong's nonparametric AUCs, their (co)variances and tests (one row per case).

For one reading (modality, model, reader) with ``m`` positive scores ``X_i`` and ``n``
negative scores ``Y_j`` (higher = more likely positive), DeLong, DeLong & Clarke-Pearson
(1988) write the empirical AUC (the Mann-Whitney statistic, ties count 1/2) through its
*structural components* (placement values)::

    psi(x, y) = 1 if x > y, 1/2 if x == y, 0 if x < y
    V10(X_i)  = 1/n * sum_j psi(X_i, Y_j)     (one per positive case)
    V01(Y_j)  = 1/m * sum_i psi(X_i, Y_j)     (one per negative case)
    AUC       = mean_i V10(X_i) = mean_j V01(Y_j)

For ``k`` readings of the *same* cases, with ``S10`` and ``S01`` the k x k sample
covariance matrices (denominators m - 1 and n - 1) of the V10 and V01 vectors::

    Cov(AUC) = S10 / m + S01 / n

The components are computed with midranks (Sun & Xu 2014, IEEE Signal Processing Letters
21:1389-1393) in O(N log N) per reading instead of the O(m n) pair matrix::

    V10(X_i) = (R_all(X_i) - R_pos(X_i)) / n
    V01(Y_j) = 1 - (R_all(Y_j) - R_neg(Y_j)) / m

where ``R_all`` is the midrank among all cases of the reading and ``R_pos`` / ``R_neg``
the midrank within the positives / negatives.

A contrast ``L`` of correlated AUCs is tested with ``z = L theta / sqrt(L S L')`` (one
row), or ``chi2 = (L theta)' (L S L')^-1 (L theta)`` with rank(L) degrees of freedom;
independent samples (unpaired) add their variances.

Cases must be independent: pass one row per patient (e.g. case-level predictions), not
several images of one patient; use the patient-level bootstrap otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from spinedx.errors import InputError

__all__ = [
    "StructuralComponents",
    "auc_confidence_interval",
    "delong_contrast_test",
    "delong_covariance",
    "paired_delong_test",
    "structural_components",
    "unpaired_delong_test",
]


@dataclass(frozen=True)
class StructuralComponents:
    """DeLong placement values of ``k`` readings of the same cases.

    ``v10``: (k, m), one column per positive case in input order; ``v01``: (k, n), one
    column per negative case; ``auc``: (k,).
    """

    v10: np.ndarray
    v01: np.ndarray
    auc: np.ndarray

    @property
    def n_positive(self) -> int:
        return self.v10.shape[1]

    @property
    def n_negative(self) -> int:
        return self.v01.shape[1]

    def covariance(self) -> np.ndarray:
        """``S10 / m + S01 / n`` (k x k), DeLong et al. (1988) eq. for the AUC covariance;
        NaN with fewer than 2 positive or 2 negative cases (no sample covariance)."""
        k = self.auc.size
        if self.n_positive < 2 or self.n_negative < 2:
            return np.full((k, k), np.nan)
        s10 = np.atleast_2d(np.cov(self.v10, ddof=1))
        s01 = np.atleast_2d(np.cov(self.v01, ddof=1))
        return s10 / self.n_positive + s01 / self.n_negative


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis; tied values share the mean of their ranks."""
    order = np.argsort(values, axis=-1, kind="mergesort")
    ranks = np.empty(values.shape, dtype=float)
    for row, (sorted_index, row_values) in enumerate(zip(order, values)):
        sorted_values = row_values[sorted_index]
        # Positions where a new value starts; each run of ties gets the mean rank of its run.
        starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
        ends = np.r_[starts[1:], sorted_values.size]
        run_rank = (starts + ends + 1) / 2  # mean of 1-based ranks starts+1 .. ends
        ranks[row, sorted_index] = np.repeat(run_rank, ends - starts)
    return ranks


def _validated(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if labels.ndim != 1 or scores.ndim != 2 or scores.shape[1] != labels.size:
        raise InputError(
            f"labels must be 1-D and scores (N,) or (k, N) with N = len(labels); got shapes "
            f"{labels.shape} and {np.shape(scores)}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must all be 0 or 1 (1 = positive case)")
    if not np.isfinite(scores).all():
        raise InputError("scores must all be finite (a NaN would rank arbitrarily)")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise InputError(
            "DeLong's AUC needs both positive and negative cases; "
            f"got {int(labels.sum())} positive of {labels.size}"
        )
    return labels, scores


def structural_components(labels, scores) -> StructuralComponents:
    """Placement values (V10, V01) and AUCs of ``scores`` ((N,) or (k, N)) against
    ``labels`` (N,), 1 = positive; ties count 1/2. Sun & Xu's (2014) midrank form."""
    is_positive, scores = _validated(labels, scores)
    positives, negatives = scores[:, is_positive], scores[:, ~is_positive]
    m, n = positives.shape[1], negatives.shape[1]
    rank_all = _midranks(scores)
    v10 = (rank_all[:, is_positive] - _midranks(positives)) / n
    v01 = 1.0 - (rank_all[:, ~is_positive] - _midranks(negatives)) / m
    return StructuralComponents(v10=v10, v01=v01, auc=v10.mean(axis=1))


def delong_covariance(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k) for ``k`` readings of the same
    cases (``scores`` (k, N)); for one reading, a (1,) AUC and its (1, 1) variance."""
    components = structural_components(labels, scores)
    return components.auc, components.covariance()


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _two_sided_normal_p(z: float) -> float:
    if math.isnan(z):
        return math.nan
    return 2 * NormalDist().cdf(-abs(z))


def auc_confidence_interval(labels, scores, level: float = 0.95) -> dict[str, float]:
    """AUC with its DeLong standard error and Wald interval ``AUC +- z * se`` clipped to
    [0, 1] (the interval pROC's ``ci.auc(method="delong")`` reports)."""
    z = _check_level(level)
    auc, covariance = delong_covariance(labels, np.asarray(scores, dtype=float).reshape(1, -1))
    se = math.sqrt(max(covariance[0, 0], 0.0)) if not np.isnan(covariance[0, 0]) else math.nan
    estimate = float(auc[0])
    # np.clip keeps a NaN bound NaN (the builtin min/max would not).
    lo, hi = np.clip([estimate - z * se, estimate + z * se], 0.0, 1.0)
    return {"auc": estimate, "se": se, "auc_lo": float(lo), "auc_hi": float(hi)}


def paired_delong_test(labels, scores_a, scores_b, level: float = 0.95) -> dict[str, float]:
    """DeLong's test of two correlated AUCs (both scores on the same cases).

    ``z = (AUC_a - AUC_b) / sqrt(V_a + V_b - 2 C_ab)``, two-sided normal p, and the Wald
    interval of the difference ``AUC_a - AUC_b``. Identical scores give z = 0, p = 1.
    """
    zq = _check_level(level)
    auc, covariance = delong_covariance(labels, np.vstack([np.asarray(scores_a, float),
                                                          np.asarray(scores_b, float)]))
    difference = float(auc[0] - auc[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    # Identical readings have a difference of exactly 0 and a variance of 0 up to rounding.
    se = math.sqrt(max(variance, 0.0)) if not math.isnan(variance) else math.nan
    if math.isnan(se):
        z = math.nan
    elif se > 0:
        z = difference / se
    else:
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return {
        "auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": difference, "se": se,
        "z": z, "p": 1.0 if z == 0 else _two_sided_normal_p(z),  # NaN z gives NaN p
        "ci_lo": difference - zq * se, "ci_hi": difference + zq * se,
        "var_a": float(covariance[0, 0]), "var_b": float(covariance[1, 1]),
        "cov_ab": float(covariance[0, 1]),
    }


def unpaired_delong_test(labels_a, scores_a, labels_b, scores_b, level: float = 0.95,
                         distribution: str = "normal") -> dict[str, float]:
    """Compare AUCs of two independent samples of cases: ``(AUC_a - AUC_b) / sqrt(V_a + V_b)``.

    ``distribution="normal"``: standard normal reference (the large-sample test).
    ``distribution="t"``: Student t with pROC's (>= 1.9) Welch-Satterthwaite-type degrees
    of freedom ``(V_a + V_b)^2 / (V_a^2 / (N_a - 1) + V_b^2 / (N_b - 1))``, which is more
    conservative for small samples. The interval of the difference uses the same reference.
    """
    if distribution not in ("normal", "t"):
        raise InputError(f"distribution must be 'normal' or 't', got {distribution!r}")
    _check_level(level)
    auc_a, var_a = delong_covariance(labels_a, np.asarray(scores_a, float).reshape(1, -1))
    auc_b, var_b = delong_covariance(labels_b, np.asarray(scores_b, float).reshape(1, -1))
    var_a, var_b = float(var_a[0, 0]), float(var_b[0, 0])
    difference = float(auc_a[0] - auc_b[0])
    se = math.sqrt(var_a + var_b)
    statistic = difference / se if se > 0 else math.nan
    result = {"auc_a": float(auc_a[0]), "auc_b": float(auc_b[0]), "difference": difference,
              "se": se, "statistic": statistic, "var_a": var_a, "var_b": var_b}
    if distribution == "normal":
        quantile = NormalDist().inv_cdf(0.5 + level / 2)
        result.update(df=math.inf, p=_two_sided_normal_p(statistic))
    else:
        from scipy import special  # only this variant needs the t distribution

        n_a, n_b = np.asarray(labels_a).size, np.asarray(labels_b).size
        df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
        quantile = float(special.stdtrit(df, 0.5 + level / 2))
        result.update(df=float(df), p=float(2 * special.stdtr(df, -abs(statistic))))
    result.update(ci_lo=difference - quantile * se, ci_hi=difference + quantile * se)
    return result


def delong_contrast_test(labels, scores, contrast=None) -> dict:
    """Global test of ``L theta = 0`` for ``k`` correlated AUCs (DeLong et al. 1988).

    ``contrast`` L is (q, k); by default the k - 1 successive differences, i.e. the test
    that all k AUCs are equal. ``chi2 = (L theta)' (L S L')^+ (L theta)`` on rank(L S L')
    degrees of freedom.
    """
    from scipy import special  # chi-square tail; kept out of the module import

    auc, covariance = delong_covariance(labels, scores)
    k = auc.size
    if contrast is None:
        contrast = np.eye(k)[:-1] - np.eye(k)[1:]
    contrast = np.atleast_2d(np.asarray(contrast, dtype=float))
    if contrast.shape[1] != k:
        raise InputError(f"contrast must have {k} columns (one per reading), got {contrast.shape}")
    estimate = contrast @ auc
    middle = contrast @ covariance @ contrast.T
    if not np.isfinite(middle).all():  # fewer than 2 cases of a class: no covariance
        return {"auc": auc, "covariance": covariance, "estimate": estimate,
                "chi2": math.nan, "df": 0, "p": math.nan}
    df = int(np.linalg.matrix_rank(middle))
    chi2 = float(estimate @ np.linalg.pinv(middle) @ estimate) if df else math.nan
    p = float(special.chdtrc(df, chi2)) if df else math.nan
    return {"auc": auc, "covariance": covariance, "estimate": estimate,
            "chi2": chi2, "df": df, "p": p}
