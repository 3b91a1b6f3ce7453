"""A stage reads only the config sections its rule passes: another section is an error
naming the stage and the section, never a silent schema default."""

from __future__ import annotations

import json

import pytest

from spinedx import config as configuration
from spinedx.cli import main


def test_a_section_the_rule_did_not_pass_is_an_error_naming_stage_and_section():
    stage = configuration.for_stage("evaluation", settings={"decision": {"threshold": 0.3}})
    assert stage["decision"]["threshold"] == 0.3 and "evaluation" not in stage
    with pytest.raises(configuration.ConfigError) as error:
        stage["evaluation"]
    assert "stage evaluation" in str(error.value) and "'evaluation'" in str(error.value)
    with pytest.raises(configuration.ConfigError):  # no silent default through .get either
        stage.get("evaluation", {})


def test_passed_sections_are_validated_and_completed_by_the_schema():
    stage = configuration.for_stage("splits", settings={"splits": {"n_folds": 3}})
    assert stage["splits"] == {"n_folds": 3, "seed": 42, "scheme": "kfold", "ratios": [7, 1, 2], "repeats": 1}
    with pytest.raises(configuration.ConfigError, match="splits/n_folds"):
        configuration.for_stage("splits", settings={"splits": {"n_folds": 1}})


def test_cross_section_checks_judge_only_the_passed_sections():
    # gradcam.target_layers names a backbone: checked against `backbones` only when both travel.
    layers = {"gradcam": {"target_layers": {"inception_v3": "Mixed_7c"}}}
    assert configuration.for_stage("gradcam", settings=layers)["gradcam"]["target_layers"]
    with pytest.raises(configuration.ConfigError, match="not in backbones"):
        configuration.for_stage("gradcam", settings={**layers, "backbones": ["resnet10t"]})


def test_a_config_file_or_no_option_gives_every_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training: {epochs: 3}\n")
    stage = configuration.for_stage("training", path, {"splits": {"n_folds": 4}})
    assert stage["training"]["epochs"] == 3 and stage["splits"]["n_folds"] == 4 and stage["decision"]
    assert configuration.for_stage("config")["evaluation"]["bootstrap_replicates"] == 2000


def test_the_command_stops_with_exit_2_when_its_rule_forgot_a_section(tmp_path, capsys):
    # The splits stage reads `classes` and `splits`; a rule passing only `splits` would
    # otherwise run on the default classes instead of the study's.
    cases = tmp_path / "cases.csv"
    cases.write_text("patient_id,diagnosis,cohort\n" + "".join(
        f"P{i},{['meningioma', 'glioma'][i % 2]},internal\n" for i in range(10)))
    out = tmp_path / "folds.tsv"
    code = main(["splits", "--settings", json.dumps({"splits": {"n_folds": 2, "seed": 1}}),
                 "--cases", str(cases), "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and "stage splits read config section 'classes'" in error and not out.exists()
    settings = {"splits": {"n_folds": 2, "seed": 1}, "classes": ["meningioma", "glioma"]}
    assert main(["splits", "--settings", json.dumps(settings), "--cases", str(cases), "--out", str(out)]) == 0
    assert out.exists()
