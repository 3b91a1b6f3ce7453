"""Import ``spinedx.models.<name>`` for the tests, also while ``spinedx/models.py`` is still a
module rather than a package (issue 12 turns it into ``spinedx/models/``; then the
plain import succeeds and the fallback below is never used; delete this file then)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def models_module(name: str):
    full = f"spinedx.models.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError:
        if full in sys.modules:
            return sys.modules[full]
        spec = importlib.util.spec_from_file_location(full, SRC / "spinedx" / "models" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        return module
