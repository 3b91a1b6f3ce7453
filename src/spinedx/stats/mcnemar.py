"""Paired sensitivities and specificities: McNemar's exact test and Newcombe's interval.

Two tests (models, readers, conditions) decide on the same cases. Among the positive
cases (for sensitivity) or the negative cases (for specificity), each case is correct or
not under each test; the paired 2x2 table is::

                    B correct   B wrong
    A correct           a          b
    A wrong             c          d          n = a + b + c + d

Proportions correct ``p_A = (a + b) / n`` and ``p_B = (a + c) / n``; their difference
``p_A - p_B = (b - c) / n`` depends on the discordant pairs only.

* McNemar's exact (conditional) test: under H0 the ``b + c`` discordant pairs split
  Binomial(b + c, 1/2); two-sided ``p = min(1, 2 P(X <= min(b, c)))``, and p = 1 without
  discordant pairs (McNemar 1947; the exact form as in Fagerland, Lydersen & Laake 2013,
  BMC Med Res Methodol 13:91).
* Interval of the difference: Newcombe's (1998, Stat Med 17:2635-2650) method 10, the
  square-and-add combination of the two Wilson intervals ``(l_A, u_A)``, ``(l_B, u_B)``
  with the correlation ``phi`` of the table::

      lower = D - sqrt((p_A - l_A)^2 - 2 phi (p_A - l_A)(u_B - p_B) + (u_B - p_B)^2)
      upper = D + sqrt((p_B - l_B)^2 - 2 phi (p_B - l_B)(u_A - p_A) + (u_A - p_A)^2)

  where ``phi = C / sqrt((a+b)(c+d)(a+c)(b+d))`` with ``C = ad - bc - n/2`` when
  ``ad - bc > n/2``, ``C = 0`` when ``0 <= ad - bc <= n/2``, ``C = ad - bc`` when it is
  negative, and phi = 0 when a margin is empty. It stays inside [-1, 1] and keeps its
  coverage where the Wald interval fails (small n, proportions near 1).
"""

from __future__ import annotations

import math

import numpy as np

from spinedx.errors import InputError
from spinedx.stats.binary import wilson_interval

__all__ = ["mcnemar_exact_p", "newcombe_paired_interval", "paired_accuracy",
           "paired_proportions", "paired_table"]


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p from the discordant counts ``b`` (A right, B wrong) and
    ``c`` (A wrong, B right): ``min(1, 2 * P(Binomial(b + c, 1/2) <= min(b, c)))``."""
    for name, value in (("b", b), ("c", c)):
        if int(value) != value or value < 0:
            raise InputError(f"{name} must be a non-negative integer count, got {value!r}")
    b, c = int(b), int(c)
    if b + c == 0:
        return 1.0
    from scipy import special  # binomial tail; kept out of the module import

    return min(1.0, 2.0 * float(special.bdtr(min(b, c), b + c, 0.5)))


def newcombe_paired_interval(a: int, b: int, c: int, d: int,
                             level: float = 0.95) -> tuple[float, float]:
    """Newcombe's (1998) method-10 interval of ``(a + b)/n - (a + c)/n`` for the paired
    table ``[[a, b], [c, d]]`` (see the module docstring); (nan, nan) when n == 0."""
    counts = (a, b, c, d)
    if any(int(x) != x or x < 0 for x in counts):
        raise InputError(f"paired counts must be non-negative integers, got {counts}")
    a, b, c, d = (int(x) for x in counts)
    n = a + b + c + d
    if n == 0:
        return (math.nan, math.nan)
    p_a, p_b = (a + b) / n, (a + c) / n
    l_a, u_a = wilson_interval(a + b, n, level)
    l_b, u_b = wilson_interval(a + c, n, level)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        phi = 0.0
    else:
        cross = a * d - b * c
        # Newcombe's continuity correction shrinks positive correlation by n/2.
        corrected = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = corrected / math.sqrt(margins)
    difference = p_a - p_b
    lower = difference - math.sqrt(max(
        (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2, 0.0))
    upper = difference + math.sqrt(max(
        (p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2, 0.0))
    return (lower, upper)


def paired_table(correct_a, correct_b) -> tuple[int, int, int, int]:
    """Counts (a, b, c, d) of the paired 2x2 table of two boolean "correct" vectors."""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise InputError("paired outcomes must be 1-D of equal length (one entry per case)")
    return (int(np.sum(correct_a & correct_b)), int(np.sum(correct_a & ~correct_b)),
            int(np.sum(~correct_a & correct_b)), int(np.sum(~correct_a & ~correct_b)))


def paired_proportions(correct_a, correct_b, level: float = 0.95) -> dict:
    """Compare two paired proportions of "correct" (same cases, two tests).

    Returns ``n, a, b, c, d, estimate_a, estimate_b, difference (A - B), ci_lo, ci_hi``
    (Newcombe method 10) and ``p`` (exact McNemar); estimates are NaN when n == 0.
    """
    a, b, c, d = paired_table(correct_a, correct_b)
    n = a + b + c + d
    lo, hi = newcombe_paired_interval(a, b, c, d, level)
    estimate_a = (a + b) / n if n else math.nan
    estimate_b = (a + c) / n if n else math.nan
    return {"n": n, "a": a, "b": b, "c": c, "d": d, "estimate_a": estimate_a,
            "estimate_b": estimate_b, "difference": estimate_a - estimate_b,
            "ci_lo": lo, "ci_hi": hi, "p": mcnemar_exact_p(b, c) if n else math.nan}


def paired_accuracy(labels, calls_a, calls_b, level: float = 0.95) -> dict[str, dict]:
    """Paired sensitivity (on the positive cases) and specificity (on the negative cases)
    of two sets of binary decisions on the same cases (1 = called positive).

    Returns ``{"sensitivity": ..., "specificity": ...}``, each as
    :func:`paired_proportions`.
    """
    labels = np.asarray(labels)
    calls_a, calls_b = np.asarray(calls_a), np.asarray(calls_b)
    if not (labels.shape == calls_a.shape == calls_b.shape) or labels.ndim != 1:
        raise InputError("labels and both decision vectors must be 1-D of equal length")
    for name, values in (("labels", labels), ("calls_a", calls_a), ("calls_b", calls_b)):
        if not np.isin(values, (0, 1)).all():
            raise InputError(f"{name} must all be 0 or 1 (or booleans)")
    is_positive = labels.astype(bool)
    calls_a, calls_b = calls_a.astype(bool), calls_b.astype(bool)
    return {
        "sensitivity": paired_proportions(calls_a[is_positive], calls_b[is_positive], level),
        "specificity": paired_proportions(~calls_a[~is_positive], ~calls_b[~is_positive], level),
    }

