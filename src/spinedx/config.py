"""Study configuration: one JSON schema (with defaults and descriptions) for everything.

The schema file is ``workflow/schemas/config.schema.yaml``; the package reaches it through
a symlink so the Snakemake workflow and the ``spinedx`` command validate against the same
file and fill the same defaults.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
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


def resolve(config: dict | None, source: str = "config", sections: Iterable[str] | None = None) -> dict:
    """Validate ``config`` and return a copy with every default filled in.

    ``sections``: the sections a stage was given (cross-section checks between them only);
    None: all of them.
    """
    resolved = copy.deepcopy(config or {})
    validator = _validator_filling_defaults()(load_schema())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.path)) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    # A second pass fills defaults of objects that were themselves inserted as defaults.
    validator.validate(resolved)
    check_semantics(resolved, source, sections)
    return resolved


def check_semantics(config: dict, source: str = "config", sections: Iterable[str] | None = None) -> None:
    """Cross-field rules the schema cannot express, between the given ``sections`` (None:
    all); a stage that was not given a section is not judged by its defaults."""
    given = set(config if sections is None else sections)
    if "sequences" in given:
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
    if "classes" in given and len(set(config["classes"])) != len(config["classes"]):
        raise ConfigError(f"{source}: classes must be distinct, got {config['classes']}")
    if {"classes", "calibration"} <= given:
        unknown = [c for c in config["calibration"]["dca_classes"] if c not in config["classes"]]
        if unknown:
            raise ConfigError(f"{source}: calibration.dca_classes {unknown} are not classes of the study "
                              f"({config['classes']}); name classes of `classes` or leave it empty (every class)")
    _check_study_shape(config, source, given)
    if {"sequences", "detection"} <= given:  # detection (issue 16): inputs, models, names
        from spinedx.detection_task import DetectionTask  # imports this module

        DetectionTask.from_config(config)
    if "backbones" not in given:
        return
    named = []
    if "training" in given:
        pretrained = config["training"]["pretrained"]
        named += [("training.pretrained", b) for b in (pretrained if isinstance(pretrained, dict) else ())]
    if "gradcam" in given:
        named += [("gradcam.target_layers", b) for b in config["gradcam"]["target_layers"]]
    if "figures" in given and config["figures"]["final_backbone"] is not None:
        named.append(("figures.final_backbone", config["figures"]["final_backbone"]))
    if "reader_study" in given and config["reader_study"].get("aiding_model") is not None:
        named.append(("reader_study.aiding_model", config["reader_study"]["aiding_model"]))
    known = set(config["backbones"])
    if {"data", "input_modes", "networks_3d"} <= given and config["data"]["format"] == "volume":
        # Volume studies: the final system is a model (<mode>_<network>); pretrained
        # weights and Grad-CAM layers may name a 3-D network too.
        from spinedx.input_modes import model_names

        known |= set(model_names(config)) | set(config["networks_3d"])
    for key, backbone in named:
        if backbone not in known:
            raise ConfigError(f"{source}: {key} names {backbone!r}, which is not in backbones")


def _check_study_shape(config: dict, source: str, given: set) -> None:
    """Label source, planes, fusion and hold-out ratios (issue 13), between given sections."""
    from spinedx.aggregation import ALL_INPUT  # light; imported here to keep config first in line

    classes = config["classes"] if "classes" in given else None
    if "labels" in given and classes is not None:
        labels = config["labels"]
        reference = labels["reference_class"]
        if reference is not None and reference not in classes:
            raise ConfigError(f"{source}: labels.reference_class {reference!r} is not one of classes {classes}")
        unknown = sorted(set(labels["shape_labels"]) - set(classes))
        if unknown:
            raise ConfigError(f"{source}: labels.shape_labels names {unknown}, which are not in classes {classes}")
        if labels["source"] == "annotation" and reference is None:
            raise ConfigError(f"{source}: labels.source annotation needs labels.reference_class: the class "
                              f"of an image without a lesion shape (one of {classes})")
        owners: dict[str, str] = {}
        for name in classes:
            for alias in labels["shape_labels"].get(name, [name]):
                key = alias.strip().lower()
                if owners.setdefault(key, name) != name:
                    raise ConfigError(f"{source}: shape label {alias!r} maps to both {owners[key]!r} and "
                                      f"{name!r} (labels.shape_labels); give each label one class")
    if {"labels", "preprocessing"} <= given and config["labels"]["source"] == "annotation" \
            and config["preprocessing"]["crop"] == "box":
        raise ConfigError(
            f"{source}: labels.source annotation needs preprocessing.crop: image. Only lesion images "
            "have a rectangle, so cropping to it would frame lesion images and reference images "
            "differently and the model could tell the label from the framing alone")
    if "planes" in given and "sequences" in given:
        for plane, members in config["planes"].items():
            if plane in config["sequences"] or plane == ALL_INPUT:
                raise ConfigError(f"{source}: plane {plane!r} has the name of a sequence or of {ALL_INPUT}; "
                                  "rename it in config `planes`")
            missing = sorted(set(members) - set(config["sequences"]))
            if missing:
                raise ConfigError(f"{source}: plane {plane!r} names {missing}, which are not in `sequences`")
    if "fusion" in given and config["fusion"]["enabled"]:
        fusion = config["fusion"]
        if not fusion["numeric"] and not fusion["categorical"]:
            raise ConfigError(f"{source}: fusion.enabled needs covariates (fusion.numeric and/or "
                              "fusion.categorical: columns of the cases table)")
        both = sorted(set(fusion["numeric"]) & set(fusion["categorical"]))
        if both:
            raise ConfigError(f"{source}: covariate(s) {both} are declared both fusion.numeric and "
                              "fusion.categorical")
        if "labels" in given and config["labels"]["source"] != "cases":
            raise ConfigError(f"{source}: fusion needs labels.source cases (covariates belong to patients, "
                              "the stacker combines case-level probabilities)")
    if "splits" in given and config["splits"]["scheme"] == "holdout":
        from spinedx.splitting import holdout_shares

        try:
            holdout_shares(config["splits"]["ratios"])
        except ValueError as error:
            raise ConfigError(f"{source}: splits.ratios: {error}") from None


def load(path: str | Path | None = None, overrides: dict | None = None,
         sections: Iterable[str] | None = None) -> dict:
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
    return resolve(config, str(path) if path else "config", sections)


@functools.cache
def _schema_defaults() -> dict:
    return resolve({})


def schema_defaults(name: str) -> dict:
    """The schema's defaults of one section (a copy): for library calls given part of a
    section, so that the schema stays the only place a default is written."""
    return copy.deepcopy(_schema_defaults()[name])


class StageConfig(Mapping):
    """The config sections one stage may read.

    A rule passes exactly the sections its stage uses (``--settings``, see
    :func:`settings_json`); reading any other section is an error naming the stage and
    the section, never a silent schema default in place of the user's value.
    """

    def __init__(self, sections: dict, stage: str) -> None:
        self._sections = sections
        self.stage = stage

    def __getitem__(self, name: str):
        if name not in self._sections:
            raise ConfigError(
                f"stage {self.stage} read config section {name!r}, which its rule did not pass; "
                f"add it to the rule's settings(...) in workflow/rules (passed: {sorted(self._sections)})"
            )
        return self._sections[name]

    def __contains__(self, name) -> bool:
        return name in self._sections

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def __len__(self) -> int:
        return len(self._sections)

    def __repr__(self) -> str:
        return f"StageConfig({self.stage!r}, {self._sections!r})"


def section(config: Mapping, name: str):
    """Config section ``name``; a :class:`ConfigError` (not a default) when it is absent."""
    try:
        return config[name]
    except KeyError:
        raise ConfigError(f"config section {name!r} is missing") from None


def for_stage(stage: str, path: str | Path | None = None, settings: dict | None = None) -> StageConfig:
    """The configuration stage ``stage`` may read.

    ``settings`` (the rules' ``--settings``, config sections as JSON) without a config file:
    exactly those sections, validated and completed by the schema. With a config file, or
    with neither (a person running ``spinedx <stage>`` by hand), every section.
    """
    if settings is not None and path is None:
        resolved = load(None, settings, sections=list(settings))
        return StageConfig({name: resolved[name] for name in settings}, stage)
    return StageConfig(load(path, settings), stage)


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_json(config: Mapping, *sections: str) -> str:
    """The config sections one stage needs, as JSON.

    Rules pass this as a param, so Snakemake reruns a stage exactly when a setting it
    uses changes, and never because an unrelated section changed. Sections are sorted by
    name (stable output); inside a section the config's own order is kept: the order of
    ``sequences`` is the study's (tables, figures, bundle list them in it).
    """
    return json.dumps({name: config[name] for name in sorted(sections)})


# --- training.pretrained: what it asks for (read by the workflow and by
# spinedx.models.pretrained, which fetches and records the weights) ---------------------

#: ``pretrained_request`` value for timm's published weights of a backbone.
PRETRAINED_HUB = "hub"


def pretrained_request(setting, backbone: str) -> str | None:
    """What ``training.pretrained`` (``true``/``false``, or per backbone ``true``/``false``
    /a file path) asks for ``backbone``: None (random initialisation),
    :data:`PRETRAINED_HUB` (timm's published weights) or a local file path."""
    value = setting.get(backbone, False) if isinstance(setting, dict) else setting
    if value is True:
        return PRETRAINED_HUB
    if value is False or value is None:
        return None
    return str(value)
