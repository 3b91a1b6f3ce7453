"""Input modes of volume studies and the models they give.

A volume study (config ``data.format: volume``) trains one model per input mode and
network: modes 2d and 2.5d feed slices to the timm ``backbones``, mode 3d feeds the
sub-volume to the MONAI ``networks_3d``. Each model is named ``<mode>_<network>``
(:func:`spinedx.paths.volume_model_name`) and takes the place a backbone has in a labelme study:
model folders, prediction tables, evaluation tables and figures list models under the
``backbone`` column, so 2d, 2.5d and 3d are compared on the same folds and cases by the
same stages. A labelme study's models are its backbones.

Light on purpose (no numpy, no torch): the workflow imports it to build the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping

from spinedx import paths

MODES = ("2d", "2.5d", "3d")
#: Input modes whose models are timm backbones (2-D images); the others are 3-D networks.
SLICE_MODES = ("2d", "2.5d")
#: Config sections a model-running stage of a volume study reads besides its own.
VOLUME_SECTIONS = ("data", "input_modes", "networks_3d")


def volume_study(config: Mapping) -> bool:
    """True for ``data.format: volume``; a stage whose rule did not pass ``data`` (labelme
    studies pass it to model stages only when volumes are read) is a labelme stage."""
    return "data" in config and config["data"]["format"] == "volume"


def model_names(config: Mapping) -> list[str]:
    """The study's models in order: the backbones (labelme), or every input mode x its
    networks (volumes: ``input_modes`` in order, each with ``backbones`` or ``networks_3d``)."""
    if not volume_study(config):
        return list(config["backbones"])
    return [paths.volume_model_name(mode, network) for mode in config["input_modes"]
            for network in (config["networks_3d"] if mode == "3d" else config["backbones"])]


def model_mode(name: str) -> tuple[str, str]:
    """(mode, network) of a volume model name; ValueError for anything else."""
    mode, network = paths.split_volume_model_name(name)
    if mode not in MODES:
        raise ValueError(f"{name!r}: unknown input mode {mode!r}; modes are {list(MODES)}")
    return mode, network


def released_settings(models: list[str], config: Mapping) -> dict:
    """The config values a bundle records for its ``models`` (names), so that audit mode
    rebuilds exactly these names: labelme ``backbones``; volume studies also the input
    modes and 3-D networks, restricted to the released models."""
    if not volume_study(config):
        return {"backbones": list(models)}
    parsed = [model_mode(name) for name in models]
    return {
        "backbones": list(dict.fromkeys(network for mode, network in parsed if mode != "3d"))
        or list(config["backbones"]),
        "networks_3d": list(dict.fromkeys(network for mode, network in parsed if mode == "3d"))
        or list(config["networks_3d"]),
        "input_modes": [mode for mode in config["input_modes"] if mode in {m for m, _ in parsed}],
    }
