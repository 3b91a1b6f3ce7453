"""The report captions of the paired comparisons and decision curves describe the analysis
that the study's shape runs: the caption picks its text by the rule (calibration vs
multiclass_calibration) or command (comparisons vs multiclass_comparisons) that made the
file, as workflow/rules/common.smk decides them, not by a second copy of that decision."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2
import pytest
import yaml

from conftest import REPO
from spinedx.config import resolve

REPORT = REPO / "workflow/report"


def render(caption: str, config_file: str | None, rule: str, command: str) -> str:
    config = resolve(yaml.safe_load((REPO / config_file).read_text()) if config_file else {})
    snakemake = SimpleNamespace(config=config, rule=rule, params=SimpleNamespace(command=command))
    return jinja2.Environment().from_string((REPORT / caption).read_text()).render(snakemake=snakemake)


# (config, rule of the decision curves, comparisons command, expected headings / phrases)
SHAPES = [
    (None, "calibration", "comparisons",
     ["**Decision curves.**", "**Paired comparisons.**", "within each cohort"]),
    (".test/binary_holdout.yaml", "multiclass_calibration", "multiclass_comparisons",
     ["**Decision curves (one-vs-rest per class).**", "the positive class, ependymoma",
      "**Paired comparisons.**", "A two-class study of another shape than the reference"]),
    (".test/vertebral_ct_holdout.yaml", "multiclass_calibration", "multiclass_comparisons",
     ["**Decision curves (one-vs-rest per class).**", "the positive class, malignant",
      "**Paired comparisons.**", "A two-class study of another shape than the reference"]),
    (".test/ismf.yaml", "multiclass_calibration", "multiclass_comparisons",
     ["**Decision curves (one-vs-rest per class).**", "every class", "**Paired comparisons (N classes).**"]),
    (".test/canine.yaml", "multiclass_calibration", "image_comparisons",
     ["**Decision curves on images", "**Paired comparisons on images.**"]),
]


@pytest.mark.parametrize("config_file, rule, command, expected", SHAPES, ids=lambda v: str(v)[:24])
def test_captions_follow_the_rule_that_made_the_file(config_file, rule, command, expected):
    text = render("decision_curve.rst", config_file, rule, command) + render(
        "paired_comparisons.rst", config_file, rule, command)
    for phrase in expected:
        assert phrase in text, phrase
    if config_file is None:  # the reference shape: its own wording only
        assert "another shape" not in text and "one-vs-rest" not in text
