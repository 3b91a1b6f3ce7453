"""Study configuration: one JSON schema (with defaults and descriptions) for everything.

The schema file is ``workflow/schemas/config.schema.yaml``; the package reaches it through
a symlink so the Snakemake workflow and the ``spinedx`` command validate against the same
file and fill the same defaults.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


def _validator_filling_defaults():
    """A Draft 2020-12 validator that writes schema defaults into the instance.

    Same behaviour as ``snakemake.utils.validate(set_default=True)``: defaults of nested
    objects are filled after the object default itself was inserted.
    """
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def resolve(config: dict | None, source: str = "config") -> dict:
    """Validate ``config`` and return a copy with every default filled in."""
    resolved = copy.deepcopy(config or {})
    validator = _validator_filling_defaults()(load_schema())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.path)) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    # A second pass fills defaults of objects that were themselves inserted as defaults.
    validator.validate(resolved)
    check_semantics(resolved, source)
    return resolved


def check_semantics(config: dict, source: str = "config") -> None:
    """Cross-field rules the schema cannot express."""
    folders: dict[str, str] = {}
    for sequence, names in config["sequences"].items():
        for name in names:
            key = name.lower()
            if key in folders and folders[key] != sequence:
                raise ConfigError(
                    f"{source}: sequence folder name {name!r} is mapped to both "
                    f"{folders[key]!r} and {sequence!r}; give each folder one sequence"
                )
            folders[key] = sequence
    if len(set(config["classes"])) != len(config["classes"]):
        raise ConfigError(f"{source}: classes must be distinct, got {config['classes']}")
    named = [("training.pretrained", b) for b in config["training"]["pretrained"]]
    named += [("gradcam.target_layers", b) for b in config["gradcam"]["target_layers"]]
    if config["figures"]["final_backbone"] is not None:
        named.append(("figures.final_backbone", config["figures"]["final_backbone"]))
    for key, backbone in named:
        if backbone not in config["backbones"]:
            raise ConfigError(f"{source}: {key} names {backbone!r}, which is not in backbones")


def load(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Read a YAML config file (optional), apply overrides and resolve defaults."""
    config: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read configuration: {error}") from error
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: a configuration must be a mapping of keys")
    if overrides:
        config = deep_merge(config, overrides)
    return resolve(config, str(path) if path else "config")


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_json(config: dict, *sections: str) -> str:
    """The config sections one stage needs, as canonical JSON.

    Rules pass this as a param, so Snakemake reruns a stage exactly when a setting it
    uses changes, and never because an unrelated section changed.
    """
    return json.dumps({name: config[name] for name in sections}, sort_keys=True)
