import json

import pytest
import yaml

from spinedx import config as configuration
from conftest import REPO


def test_defaults_fill_every_section():
    config = configuration.resolve({})
    assert config["training"]["epochs"] == 15 and config["splits"]["n_folds"] == 5
    assert config["classes"][-1] == "schwannoma"  # the positive class is last


@pytest.mark.parametrize("name", ["config/config.yaml", "config/paper.yaml", ".test/config.yaml",
                                  ".test/binary_holdout.yaml", ".test/vertebral_ct_holdout.yaml"])
def test_shipped_configs_are_valid(name):
    configuration.load(REPO / name)


def test_snakemake_validation_fills_the_same_defaults():
    from snakemake.utils import validate
    config = {}
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert config == configuration.resolve({})


def test_invalid_values_are_reported_with_their_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"training": {"epochs": 0, "lr": "fast"}}))
    with pytest.raises(configuration.ConfigError) as error:
        configuration.load(path)
    message = str(error.value)
    assert str(path) in message and "training/epochs" in message and "training/lr" in message


def test_unknown_keys_are_refused():
    with pytest.raises(configuration.ConfigError, match="Additional properties"):
        configuration.resolve({"trainng": {}})


def test_folder_mapped_to_two_sequences_is_refused():
    with pytest.raises(configuration.ConfigError, match="mapped to both"):
        configuration.resolve({"sequences": {"T1": ["a"], "T2": ["A"]}})


def test_settings_json_holds_only_the_named_sections():
    config = configuration.resolve({})
    assert set(json.loads(configuration.settings_json(config, "training", "splits"))) == {"training", "splits"}
