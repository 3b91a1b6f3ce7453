"""The detection task (config ``task.type: detection``): which inputs and models a study
trains, resolved once from config ``sequences`` and ``detection``.

An **input** is a stack of co-registered sequences used as the channels of one network
(e.g. ``both`` = black blood + bright blood, ``bright_blood`` = bright blood alone); a
**model** is a named network with its patch geometry (config ``detection.models``, the
counterpart of ``backbones``). One fold model is trained per model x input x fold; a
model lists the inputs it is trained on (empty: all).

Light (standard library only): the workflow imports it to build the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spinedx.config import ConfigError, section

#: The input of every sequence when config ``detection.inputs`` is empty.
ALL_SEQUENCES_INPUT = "ALL"
#: The folder (or file stem) of a patient's lesion labels beside the sequence folders.
LESIONS_NAME = "lesions"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of config ``detection.models``."""

    name: str
    network: str
    options: dict
    patch: tuple[int, int, int]
    window: tuple[int, int, int]
    loss: str
    inputs: tuple[str, ...]

    def as_dict(self) -> dict:
        """Plain values (lists, not tuples): for YAML records and model cards."""
        return {"name": self.name, "network": self.network, "options": self.options, "patch": list(self.patch),
                "window": list(self.window), "loss": self.loss, "inputs": list(self.inputs)}


@dataclass(frozen=True)
class DetectionTask:
    """Sequences (channel order of the preprocessed volumes), inputs and models."""

    sequences: tuple[str, ...]
    inputs: dict[str, tuple[str, ...]]
    models: dict[str, ModelSpec]

    @classmethod
    def from_config(cls, config: Mapping) -> DetectionTask:
        """From config ``sequences`` and ``detection``; a ConfigError names a bad key."""
        sequences = tuple(section(config, "sequences"))
        detection = section(config, "detection")
        if LESIONS_NAME in {name.lower() for names in config["sequences"].values() for name in names}:
            raise ConfigError(f"config `sequences` maps a folder named {LESIONS_NAME!r}; that name holds "
                              "the lesion labels in a detection study: rename the sequence folder")
        inputs = {name: tuple(members) for name, members in detection["inputs"].items()}
        if not inputs:
            inputs = {ALL_SEQUENCES_INPUT: sequences}
        for name, members in inputs.items():
            unknown = [s for s in members if s not in sequences]
            if unknown:
                raise ConfigError(f"detection.inputs.{name} names {unknown}, which are not in config "
                                  f"`sequences` ({list(sequences)})")
        models = {}
        for name, spec in detection["models"].items():
            chosen = tuple(spec.get("inputs") or inputs)
            unknown = [i for i in chosen if i not in inputs]
            if unknown:
                raise ConfigError(f"detection.models.{name}.inputs names {unknown}, which are not in "
                                  f"detection.inputs ({list(inputs)})")
            models[name] = ModelSpec(name=name, network=spec["network"], options=dict(spec.get("options") or {}),
                                     patch=tuple(int(v) for v in spec["patch"]),
                                     window=tuple(int(v) for v in spec["window"]),
                                     loss=spec.get("loss", "bce"), inputs=chosen)
        if set(models) & set(inputs):
            raise ConfigError(f"detection: a model and an input share the name(s) {sorted(set(models) & set(inputs))}; "
                              "give them different names (they label the same tables)")
        return cls(sequences, inputs, models)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (model, input) trained, models in config order, then inputs."""
        return [(model, input_) for model, spec in self.models.items() for input_ in spec.inputs]

    def channels(self, input_: str) -> list[int]:
        """Indices of an input's sequences in the preprocessed volumes' channel order."""
        return [self.sequences.index(s) for s in self.inputs[input_]]


def is_detection(config: Mapping) -> bool:
    return section(config, "task")["type"] == "detection"
