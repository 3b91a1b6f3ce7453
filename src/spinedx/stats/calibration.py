"""Calibration of predicted probabilities: reliability curves, calibration intercept and
slope, Brier score, with patient-level bootstrap or analytic intervals.

With outcome ``y`` (0/1), predicted probability ``p`` and ``x = logit(p)``:

* Calibration intercept ("calibration-in-the-large", Cox 1958; Van Calster et al. 2016,
  J Clin Epidemiol 74:167-176): ``alpha`` in ``logit P(y = 1) = alpha + x`` (x an offset,
  slope fixed at 1). 0 when predictions are right on average; > 0 when they are too low.
* Calibration slope: ``beta`` in ``logit P(y = 1) = a + beta x``. 1 when ideal; < 1 when
  predictions are too extreme (over-fitting), > 1 when too moderate.
  Both are maximum-likelihood logistic fits (Newton-Raphson) with Wald standard errors
  from the observed information.
* Brier score ``B = mean((p - y)^2)``; scaled Brier ``1 - B / (ybar (1 - ybar))``, the
  improvement over predicting the prevalence ``ybar`` for everyone (Steyerberg et al.
  2010, Epidemiology 21:128-138).
* Multi-class Brier score (Brier 1950): ``mean_i sum_k (p_ik - y_ik)^2`` over N classes
  (``y_ik`` = 1 for the true class), between 0 and 2; the sum of the N one-vs-rest Brier
  scores (:func:`multiclass_brier`).
* Reliability curve: cases grouped into bins of predicted probability, each bin's mean
  prediction against its observed fraction with a Wilson interval. Bins follow
  scikit-learn's ``calibration_curve``: quantile edges (or equal widths), empty bins
  dropped.
* Smoothed curve: LOWESS of y on p (statsmodels) without robustness iterations, as
  Harrell's ``val.prob`` does: with a binary outcome every point would look like an
  outlier to the robust reweighting.

Probabilities of exactly 0 or 1 have an infinite logit; they are clipped to
``[eps, 1 - eps]`` (``eps = 1e-8``) for the intercept and slope only.

Images of one patient are not independent, so intervals come from a bootstrap that
resamples patients (``clusters``) with all their images, without stratifying by outcome
(the prevalence varies between replicates, as calibration-in-the-large should). A
replicate is a vector of patient multiplicities, so each statistic is the same fit with
frequency weights; replicates where a fit is undefined (one class drawn, separation) are
dropped and counted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spinedx.errors import InputError
from spinedx.stats.binary import wilson_interval

__all__ = ["EPS", "brier_score", "calibration_intercept", "calibration_slope",
           "calibration_summary", "multiclass_brier", "reliability_curve", "scaled_brier_score",
           "smoothed_calibration"]

EPS = 1e-8
_MAX_ITERATIONS = 100
_TOLERANCE = 1e-10


def _validated(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    if labels.ndim != 1 or probs.shape != labels.shape:
        raise InputError(f"labels and probs must be 1-D of equal length, got shapes "
                         f"{labels.shape} and {probs.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must all be 0 or 1 (1 = positive case)")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise InputError("probs must be finite probabilities in [0, 1]")
    if labels.size == 0:
        raise InputError("calibration needs at least one case")
    return labels.astype(float), probs


def _logit(probs: np.ndarray) -> np.ndarray:
    clipped = np.clip(probs, EPS, 1 - EPS)
    return np.log(clipped) - np.log1p(-clipped)


def _expit(eta: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * eta))  # overflow-free logistic function


def brier_score(labels, probs) -> float:
    """Mean squared difference between probability and outcome."""
    labels, probs = _validated(labels, probs)
    return float(np.mean((probs - labels) ** 2))


def scaled_brier_score(labels, probs) -> float:
    """``1 - Brier / (ybar (1 - ybar))``; NaN when only one class is present."""
    labels, probs = _validated(labels, probs)
    prevalence = labels.mean()
    reference = prevalence * (1 - prevalence)
    return float(1 - np.mean((probs - labels) ** 2) / reference) if reference > 0 else math.nan


def _fit_intercept(y: np.ndarray, offset: np.ndarray, weights: np.ndarray):
    """MLE of alpha in logit P = alpha + offset for each row of ``weights`` (B, N):
    estimates (B,) and Wald standard errors (B,); NaN without both outcomes.

    The score ``sum w (y - expit(alpha + offset))`` falls strictly in alpha, so Newton's
    step is kept inside a bracket of the root and replaced by bisection when it leaves
    it: plain Newton overshoots when the predictions are far off (|alpha| > ~5).
    """
    b = weights.shape[0]
    has_positive = (weights * y > 0).any(axis=1)
    has_negative = (weights * (1 - y) > 0).any(axis=1)
    defined = has_positive & has_negative
    # |offset| <= logit(1 - EPS) ~ 18.4, so the root lies well inside +-60.
    lower, upper = np.full(b, -60.0), np.full(b, 60.0)
    alpha = np.zeros(b)
    converged = ~defined
    for _ in range(_MAX_ITERATIONS):
        mu = _expit(alpha[:, None] + offset[None, :])
        score = (weights * (y - mu)).sum(axis=1)
        information = (weights * mu * (1 - mu)).sum(axis=1)
        lower = np.where(score > 0, alpha, lower)
        upper = np.where(score <= 0, alpha, upper)
        with np.errstate(divide="ignore", invalid="ignore"):
            proposal = alpha + score / information
        inside = np.isfinite(proposal) & (proposal > lower) & (proposal < upper)
        proposal = np.where(inside, proposal, (lower + upper) / 2)
        step = np.where(converged, 0.0, proposal - alpha)
        alpha = alpha + step
        converged |= np.abs(step) < _TOLERANCE
        if converged.all():
            break
    mu = _expit(alpha[:, None] + offset[None, :])
    information = (weights * mu * (1 - mu)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = 1 / np.sqrt(information)
    bad = ~defined | ~converged
    return np.where(bad, np.nan, alpha), np.where(bad, np.nan, se)


def _log_likelihood(y, x, weights, a, beta):
    eta = a[:, None] + beta[:, None] * x[None, :]
    return (weights * (y * eta - np.logaddexp(0.0, eta))).sum(axis=1)


def _fit_slope(y: np.ndarray, x: np.ndarray, weights: np.ndarray):
    """MLE of (a, beta) in logit P = a + beta x for each row of ``weights`` (B, N):
    (intercepts, slopes, slope standard errors), NaN where the MLE does not exist
    (separation, one outcome). Newton-Raphson with step halving: the log-likelihood is
    concave, so halving until it does not decrease makes every step an ascent."""
    b = weights.shape[0]
    defined = ~_separated(y, x, weights)
    # Start from the null model (a = logit of the prevalence, beta = 0), as glm's IRLS.
    prevalence = np.clip((weights * y).sum(axis=1) / weights.sum(axis=1), 1e-3, 1 - 1e-3)
    a, beta = np.log(prevalence / (1 - prevalence)), np.zeros(b)
    converged = ~defined
    current = _log_likelihood(y, x, weights, a, beta)
    for _ in range(_MAX_ITERATIONS):
        mu = _expit(a[:, None] + beta[:, None] * x[None, :])
        residual = weights * (y - mu)
        w = weights * mu * (1 - mu)
        g0, g1 = residual.sum(axis=1), (residual * x).sum(axis=1)
        h00, h01, h11 = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
        determinant = h00 * h11 - h01 * h01
        with np.errstate(divide="ignore", invalid="ignore"):
            step_a = (h11 * g0 - h01 * g1) / determinant
            step_b = (h00 * g1 - h01 * g0) / determinant
        usable = np.isfinite(step_a) & np.isfinite(step_b) & ~converged
        step_a, step_b = np.where(usable, step_a, 0.0), np.where(usable, step_b, 0.0)
        for _halving in range(40):
            proposed = _log_likelihood(y, x, weights, a + step_a, beta + step_b)
            worse = proposed < current - 1e-12 * np.abs(current)
            if not worse.any():
                break
            step_a, step_b = np.where(worse, step_a / 2, step_a), np.where(worse, step_b / 2, step_b)
        a, beta, current = a + step_a, beta + step_b, np.maximum(current, proposed)
        converged |= np.maximum(np.abs(step_a), np.abs(step_b)) < _TOLERANCE
        if converged.all():
            break
    mu = _expit(a[:, None] + beta[:, None] * x[None, :])
    w = weights * mu * (1 - mu)
    h00, h01, h11 = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(h00 / (h00 * h11 - h01 * h01))
    bad = ~defined | ~converged
    return (np.where(bad, np.nan, a), np.where(bad, np.nan, beta), np.where(bad, np.nan, se))


def _separated(y: np.ndarray, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights``: whether the logistic MLE of (a, beta) fails to exist,
    i.e. the drawn x of the two outcomes do not overlap (complete or quasi-complete
    separation, including one outcome absent). Newton's iterations may then stop at an
    arbitrary large slope where the fitted probabilities saturate in floating point."""
    drawn = weights > 0
    positive, negative = drawn & (y == 1), drawn & (y == 0)
    max_negative = np.where(negative, x, -np.inf).max(axis=1)
    min_positive = np.where(positive, x, np.inf).min(axis=1)
    max_positive = np.where(positive, x, -np.inf).max(axis=1)
    min_negative = np.where(negative, x, np.inf).min(axis=1)
    return ~((max_negative > min_positive) & (max_positive > min_negative))


def calibration_intercept(labels, probs) -> dict[str, float]:
    """Calibration-in-the-large ``alpha`` (logit(p) as offset) and its Wald se."""
    labels, probs = _validated(labels, probs)
    alpha, se = _fit_intercept(labels, _logit(probs), np.ones((1, labels.size)))
    return {"intercept": float(alpha[0]), "intercept_se": float(se[0])}


def calibration_slope(labels, probs) -> dict[str, float]:
    """Calibration slope ``beta`` of logit(p), its Wald se, and that model's intercept."""
    labels, probs = _validated(labels, probs)
    a, beta, se = _fit_slope(labels, _logit(probs), np.ones((1, labels.size)))
    return {"slope": float(beta[0]), "slope_se": float(se[0]),
            "slope_model_intercept": float(a[0])}


def reliability_curve(labels, probs, n_bins: int = 10, strategy: str = "quantile",
                      level: float = 0.95) -> pd.DataFrame:
    """Binned reliability table: one row per non-empty bin with ``bin, lower, upper, n,
    n_positive, mean_predicted, observed, observed_lo, observed_hi`` (Wilson interval).

    ``strategy="quantile"``: edges at the quantiles of ``probs`` (bins of about equal
    size); ``"uniform"``: equal-width bins on [0, 1]. A case goes to the bin found by
    ``searchsorted`` on the inner edges (as scikit-learn's ``calibration_curve``).
    """
    labels, probs = _validated(labels, probs)
    if int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "quantile":
        edges = np.percentile(probs, np.linspace(0, 1, int(n_bins) + 1) * 100)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    else:
        raise InputError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    bin_of = np.searchsorted(edges[1:-1], probs)
    rows = []
    for index in np.unique(bin_of):
        member = bin_of == index
        n, positives = int(member.sum()), int(labels[member].sum())
        lo, hi = wilson_interval(positives, n, level)
        rows.append({"bin": int(index), "lower": float(edges[index]),
                     "upper": float(edges[index + 1]), "n": n, "n_positive": positives,
                     "mean_predicted": float(probs[member].mean()),
                     "observed": positives / n, "observed_lo": lo, "observed_hi": hi})
    return pd.DataFrame(rows)


def smoothed_calibration(labels, probs, frac: float = 2 / 3, grid=None) -> pd.DataFrame:
    """LOWESS calibration curve: ``predicted`` (the sorted probabilities, or ``grid``)
    and the smoothed ``observed`` fraction there (statsmodels, no robustness steps)."""
    from statsmodels.nonparametric.smoothers_lowess import lowess  # slow import: on use

    labels, probs = _validated(labels, probs)
    if not 0 < frac <= 1:
        raise InputError(f"frac must lie in (0, 1], got {frac}")
    if grid is None:
        fitted = lowess(labels, probs, frac=frac, it=0, return_sorted=True)
        return pd.DataFrame({"predicted": fitted[:, 0], "observed": fitted[:, 1]})
    grid = np.asarray(grid, dtype=float)
    observed = lowess(labels, probs, frac=frac, it=0, xvals=grid)
    return pd.DataFrame({"predicted": grid, "observed": observed})


def _bootstrap_weights(clusters, n_boot: int, seed, chunk: int):
    """Yield (B_chunk, N) frequency weights: each replicate draws the clusters with
    replacement, and an observation's weight is how often its cluster was drawn."""
    codes, _ = pd.factorize(pd.Series(clusters), use_na_sentinel=False)
    n_clusters = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    remaining = n_boot
    while remaining > 0:
        size = min(chunk, remaining)
        counts = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=size)
        yield counts[:, codes].astype(float)
        remaining -= size


def calibration_summary(labels, probs, clusters=None, n_boot: int = 2000, seed=0,
                        level: float = 0.95) -> dict:
    """Brier, scaled Brier, calibration intercept and slope with intervals.

    With ``n_boot > 0``: percentile intervals from a bootstrap of ``clusters`` (patient
    ids, one per row; default each row its own cluster), reproducible for ``seed``.
    With ``n_boot == 0``: Wald intervals for intercept and slope and a normal interval
    for the Brier score (``sd((p - y)^2) / sqrt(n)``); scaled Brier gets none. Only
    valid when rows are independent (one per patient).

    Returns keys ``n, n_positive, brier, scaled_brier, intercept, intercept_se, slope,
    slope_se`` and ``<statistic>_lo`` / ``_hi`` for the four statistics, plus
    ``interval`` (how they were made) and ``n_boot_valid`` (replicates with every
    statistic defined).
    """
    labels, probs = _validated(labels, probs)
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise InputError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if clusters is None:
        clusters = np.arange(labels.size)
    elif len(clusters) != labels.size:
        raise InputError("clusters must give one patient id per row of labels")
    x = _logit(probs)
    squared_error = (probs - labels) ** 2
    summary = {"n": int(labels.size), "n_positive": int(labels.sum()),
               "brier": float(squared_error.mean()),
               "scaled_brier": scaled_brier_score(labels, probs)}
    summary.update(calibration_intercept(labels, probs))
    summary.update({key: value for key, value in calibration_slope(labels, probs).items()
                    if key != "slope_model_intercept"})

    from statistics import NormalDist

    if n_boot == 0:
        z = NormalDist().inv_cdf(0.5 + level / 2)
        brier_se = float(squared_error.std(ddof=1) / math.sqrt(labels.size)) if labels.size > 1 else math.nan
        for name, se in (("brier", brier_se), ("intercept", summary["intercept_se"]),
                         ("slope", summary["slope_se"])):
            summary[f"{name}_lo"] = summary[name] - z * se
            summary[f"{name}_hi"] = summary[name] + z * se
        summary["scaled_brier_lo"] = summary["scaled_brier_hi"] = math.nan
        summary.update(interval="wald", n_boot_valid=0)
        return summary

    replicates = {name: [] for name in ("brier", "scaled_brier", "intercept", "slope")}
    # Chunks bound the memory of the (replicates x rows) weight matrices to ~16 MB.
    chunk = max(1, int(2_000_000 // max(labels.size, 1)))
    for weights in _bootstrap_weights(clusters, int(n_boot), seed, chunk):
        total = weights.sum(axis=1)
        brier = (weights * squared_error).sum(axis=1) / total
        prevalence = (weights * labels).sum(axis=1) / total
        with np.errstate(divide="ignore", invalid="ignore"):
            reference = prevalence * (1 - prevalence)
            scaled = np.where(reference > 0, 1 - brier / reference, np.nan)
        replicates["brier"].append(brier)
        replicates["scaled_brier"].append(scaled)
        replicates["intercept"].append(_fit_intercept(labels, x, weights)[0])
        replicates["slope"].append(_fit_slope(labels, x, weights)[1])
    tail = 100 * (1 - level) / 2
    stacked = {name: np.concatenate(values) for name, values in replicates.items()}
    valid = np.all([np.isfinite(values) for values in stacked.values()], axis=0)
    for name, values in stacked.items():
        finite = values[np.isfinite(values)]
        lo, hi = (np.percentile(finite, [tail, 100 - tail]) if finite.size
                  else (math.nan, math.nan))
        summary[f"{name}_lo"], summary[f"{name}_hi"] = float(lo), float(hi)
    summary.update(interval=f"patient bootstrap (percentile, {int(n_boot)} replicates)",
                   n_boot_valid=int(valid.sum()))
    return summary


def multiclass_brier(labels, probs, clusters=None, n_boot: int = 2000, seed=0, level: float = 0.95) -> dict:
    """Multi-class Brier score of class indexes ``labels`` (n,) and probability rows
    ``probs`` (n, N), with a percentile interval of the bootstrap of ``clusters`` (the
    draws :func:`calibration_summary` makes): keys ``n, brier, brier_lo, brier_hi``."""
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise InputError(f"probs must be (n, classes) with one label per row, got {probs.shape} and {labels.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise InputError("probs must hold probabilities in [0, 1]")
    if labels.size == 0 or (labels < 0).any() or (labels >= probs.shape[1]).any():
        raise InputError(f"labels must be class indexes 0..{probs.shape[1] - 1}")
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1, got {level}")
    squared_error = ((probs - np.eye(probs.shape[1])[labels.astype(int)]) ** 2).sum(axis=1)
    summary = {"n": int(labels.size), "brier": float(squared_error.mean())}
    if clusters is None:
        clusters = np.arange(labels.size)
    replicates = []
    chunk = max(1, int(2_000_000 // labels.size))
    for weights in _bootstrap_weights(clusters, int(n_boot), seed, chunk):
        replicates.append((weights * squared_error).sum(axis=1) / weights.sum(axis=1))
    if replicates:
        tail = 100 * (1 - level) / 2
        lo, hi = np.percentile(np.concatenate(replicates), [tail, 100 - tail])
    else:
        lo = hi = math.nan
    summary.update(brier_lo=float(lo), brier_hi=float(hi))
    return summary
