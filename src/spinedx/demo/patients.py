"""Who a demo cohort's patients are: their identifiers, the order of their classes, and
the patient folders an earlier run of the same demo wrote.

One owner of the demo's patient naming (``<prefix><number:03d>``, e.g. ``DEMO-I001``)
for every built-in study; light (numpy only), so the planners the workflow imports stay
cheap.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

#: The reference-shaped demos (spine, vertebral CT, brain metastases): cohort name, the
#: settings key of its size, and the identifier prefix, in writing order.
TWO_COHORTS = (("internal", "n_internal", "DEMO-I"), ("external", "n_external", "DEMO-E"))


def patient_id(prefix: str, number: int) -> str:
    """The identifier of the ``number``-th patient (from 1) of a cohort."""
    return f"{prefix}{number:03d}"


def id_pattern(prefixes: Iterable[str]) -> re.Pattern:
    """Matches a patient folder of these prefixes (and nothing a user would name so)."""
    return re.compile("(?:" + "|".join(re.escape(prefix) for prefix in prefixes) + r")\d{3,}")


def cohort_size(count) -> int:
    """A cohort's size from its setting: a number, or a mapping class -> number."""
    return sum(int(n) for n in count.values()) if isinstance(count, Mapping) else int(count)


def two_cohort_ids(settings: Mapping) -> list[str]:
    """Every identifier of a demo with internal and external cohorts, in writing order."""
    return [patient_id(prefix, number) for _, key, prefix in TWO_COHORTS
            for number in range(1, cohort_size(settings[key]) + 1)]


def shuffled_classes(counts: Mapping[str, int], classes: Iterable[str], rng: np.random.Generator) -> list[str]:
    """``counts[c]`` copies of each class, shuffled so that identifier order says nothing
    about the class (one ``rng.permutation`` draw per cohort: the cohorts' files depend on it)."""
    ordered = [name for name in classes for _ in range(int(counts.get(name, 0)))]
    return [ordered[i] for i in rng.permutation(len(ordered))]


def two_cohort_folders() -> re.Pattern:
    """Matches the patient folders of a demo with internal and external cohorts."""
    return id_pattern(prefix for _, _, prefix in TWO_COHORTS)


def remove_earlier_patients(images_dir, pattern: re.Pattern) -> None:
    """Delete the patient folders an earlier run of this demo wrote under ``images_dir``
    (folders whose whole name matches ``pattern``), so no stale file survives into the new
    cohort; nothing else is touched."""
    images_dir = Path(images_dir)
    if images_dir.is_dir():
        for old in images_dir.iterdir():
            if old.is_dir() and pattern.fullmatch(old.name):
                shutil.rmtree(old)
