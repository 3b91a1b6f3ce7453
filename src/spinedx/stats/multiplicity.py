"""Multiplicity corrections of a family of p-values (family-wise error rate).

For ``m`` p-values sorted ascending ``p_(1) <= ... <= p_(m)``:

* Bonferroni: ``min(1, m p_i)``.
* Holm (1979, Scand J Statist 6:65-70), step-down: ``p~_(k) = max_{j <= k} min(1,
  (m - j + 1) p_(j))``; it controls the family-wise error rate like Bonferroni under any
  dependence and is never less powerful.

NaN p-values (untestable comparisons) are left NaN and not counted in ``m``.
"""

from __future__ import annotations

import numpy as np

from spinedx.errors import InputError

__all__ = ["METHODS", "adjust_pvalues"]

METHODS = ("holm", "bonferroni")


def adjust_pvalues(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted p-values in the input order (see the module docstring)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    p_values = np.asarray(p_values, dtype=float)
    if p_values.ndim != 1:
        raise InputError("p-values must be a 1-D sequence")
    tested = ~np.isnan(p_values)
    if ((p_values[tested] < 0) | (p_values[tested] > 1)).any():
        raise InputError("p-values must lie in [0, 1]")
    adjusted = np.full(p_values.shape, np.nan)
    p = p_values[tested]
    m = p.size
    if m == 0:
        return adjusted
    if method == "bonferroni":
        result = np.minimum(1.0, m * p)
    else:
        order = np.argsort(p, kind="mergesort")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        result = np.empty(m)
        result[order] = np.minimum(1.0, stepped)
    adjusted[tested] = result
    return adjusted
