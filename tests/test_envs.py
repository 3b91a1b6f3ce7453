"""Conda environments for cluster users agree with the pinned pip requirements."""

import re

import yaml

from conftest import REPO


def pinned_requirements():
    pins = {}
    for line in (REPO / "envs/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_every_conda_env_pins_the_same_versions():
    pins = pinned_requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = [d for d in spec["dependencies"] if isinstance(d, dict)]
        assert pip, f"{env.name}: no pip section"
        for requirement in pip[0]["pip"]:
            name, _, version = requirement.partition("==")
            assert version, f"{env.name}: {requirement} is not pinned"
            assert pins.get(name.lower()) == version, f"{env.name}: {requirement} != requirements.txt"


def test_every_rule_names_an_existing_env():
    for rule_file in (REPO / "workflow/rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*"([^"]+)"', rule_file.read_text()):
            assert (rule_file.parent / env).resolve().is_file(), f"{rule_file.name}: {env}"


def test_torch_pair_is_pinned_together():
    pins = pinned_requirements()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
