"""The statistics library imports fast: no torch, rpy2 or the slow optional libraries
(statsmodels, dcurves/lifelines, scikit-learn) until a function needs them."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["delong", "mcnemar", "multiplicity", "comparisons", "mrmc", "calibration",
           "decision_curve"]
HEAVY = ["torch", "rpy2", "statsmodels", "dcurves", "lifelines", "sklearn", "matplotlib"]


def test_statistics_modules_import_without_heavy_libraries():
    code = ("import sys\n"
            + "".join(f"import spinedx.stats.{name}\n" for name in MODULES)
            + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
