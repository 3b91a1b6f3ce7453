"""The models of volume studies: timm backbones on 2d/2.5d slices, MONAI 3-D classifiers on
sub-volumes, their inputs (normalisation, training augmentation) and checkpoints.

A model is named ``<mode>_<network>`` (:func:`spinedx.paths.volume_model_name`). Modes 2d and
2.5d are timm backbones (:func:`spinedx.models.backbones.build_model`) with one input
channel per intensity channel (x (2k + 1) slices in 2.5d). Mode 3d takes a network of
:data:`NETWORKS_3D` from MONAI (``monai.networks.nets``); none is written here.

Training augmentation: slices get the 2-D pipeline's batched rotation, zoom and flip
(:func:`spinedx.imaging.augmentation.augment`; in 2.5d the neighbour channels move
together). Sub-volumes get MONAI's transforms, one draw per sub-volume from a seed the
job's generator gives each batch: ``RandAffine`` rotation about the superior-inferior axis
(uniform in +- training.rotation_degrees), ``RandZoom`` (isotropic, uniform in
[1, training.max_scale], centre kept) and ``RandFlip`` of the patient's left and right
(p = 0.5, when training.hflip).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spinedx.errors import InputError
from spinedx.imaging.augmentation import augment
from spinedx.input_modes import SLICE_MODES, model_mode
from spinedx.models.backbones import build_model
from spinedx.models.device import Acceleration, softmax_in_batches

#: name -> what it is (config networks_3d).
NETWORKS_3D = {
    "resnet10": "monai.networks.nets.resnet10 (basic blocks [1, 1, 1, 1], 7^3 stem of stride 2)",
    "resnet18": "monai.networks.nets.resnet18 (basic blocks [2, 2, 2, 2], 7^3 stem of stride 2)",
    "resnet34": "monai.networks.nets.resnet34 (basic blocks [3, 4, 6, 3], 7^3 stem of stride 2)",
    "densenet121": "monai.networks.nets.DenseNet121",
    "classifier": "monai.networks.nets.Classifier (residual units of 8, 16, 32, 64 channels, each of stride 2 "
                  "while the grid keeps 2 voxels a side)",
}
#: Modules that only rescale or gate a feature map (the CAM of the layer before is the
#: same) or pool it (the classifier's head): never Grad-CAM's layer.
_PASS_THROUGH = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
                 nn.LayerNorm, nn.ReLU, nn.PReLU, nn.SiLU, nn.GELU, nn.Identity, nn.Dropout, nn.Dropout3d,
                 nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                 nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)


def build_network_3d(name: str, in_channels: int, n_classes: int, input_shape) -> nn.Module:
    """A MONAI 3-D classifier of :data:`NETWORKS_3D` (``input_shape``: (D, H, W) voxels)."""
    from monai.networks import nets  # only 3d models need MONAI

    if name in ("resnet10", "resnet18", "resnet34"):
        # MONAI's default stem (stride 1, MedicalNet's) costs 8x the compute at the input's
        # resolution; stride 2 is the 2-D ResNets' stem.
        return getattr(nets, name)(spatial_dims=3, n_input_channels=in_channels, num_classes=n_classes,
                                   conv1_t_stride=2)
    if name == "densenet121":
        return nets.DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=n_classes)
    if name == "classifier":
        # Each unit halves the grid while its output keeps at least 2 voxels a side (the
        # instance norms need more than one voxel).
        strides, side = [], min(int(n) for n in input_shape)
        for _ in range(4):
            strides.append(2 if side // 2 >= 2 else 1)
            side //= strides[-1]
        return nets.Classifier(in_shape=(in_channels, *input_shape), classes=n_classes,
                               channels=(8, 16, 32, 64), strides=strides)
    raise InputError(f"unknown 3-D network {name!r} (config networks_3d); choose one of {sorted(NETWORKS_3D)}")


def normalise(batch: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Recipe channels in [0, 1] -> the network's input scale (config training mean/std)."""
    return (batch - mean) / std


class SubVolumeAugmentation:
    """MONAI's random rotation, zoom and flip of (C, D, H, W) sub-volumes."""

    def __init__(self, settings: dict, device: torch.device) -> None:
        from monai.transforms import Compose, RandAffine, RandFlip, RandZoom

        angle = math.radians(settings["rotation_degrees"])
        steps = [RandAffine(prob=1.0, rotate_range=((-angle, angle), 0.0, 0.0), mode="bilinear",
                            padding_mode="zeros", device=device),
                 RandZoom(prob=1.0, min_zoom=1.0, max_zoom=float(settings["max_scale"]), mode="trilinear",
                          keep_size=True)]
        if settings["hflip"]:
            steps.append(RandFlip(prob=0.5, spatial_axis=2))
        self.transform = Compose(steps)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self.transform.set_random_state(seed=seed)
        # MONAI returns MetaTensors; the model gets plain tensors.
        return torch.stack([_plain(self.transform(volume)) for volume in batch])


def _plain(tensor) -> torch.Tensor:
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)


class VolumeInputs:
    """The model input of a batch of cached crops (float32 in [0, 1], on the device):
    augmented when training, then normalised."""

    def __init__(self, mode: str, settings: dict, device: torch.device) -> None:
        self.mode = mode
        self.settings = settings
        self.sub_volumes = SubVolumeAugmentation(settings, device) if mode == "3d" else None

    def __call__(self, batch: torch.Tensor, train: bool, generator: torch.Generator) -> torch.Tensor:
        batch = batch.float()
        if train:
            if self.sub_volumes is None:
                batch = augment(batch, generator, self.settings)
            else:
                batch = self.sub_volumes(batch, generator)
        return normalise(batch, self.settings["mean"], self.settings["std"])


@dataclass(frozen=True)
class VolumeJob:
    """One volume model (``<mode>_<network>``) of a study: how it is built, fed and saved."""

    name: str
    mode: str
    network: str

    @classmethod
    def of(cls, name: str) -> VolumeJob:
        try:
            mode, network = model_mode(name)
        except ValueError as error:
            raise InputError(f"{error} (a model of config input_modes x backbones/networks_3d)") from None
        return cls(name, mode, network)

    def acceleration(self, acceleration: Acceleration) -> Acceleration:
        """channels_last is a 4-D layout: 3d inputs keep their contiguous layout."""
        return dataclasses.replace(acceleration, channels_last=False) if self.mode == "3d" else acceleration

    def build(self, input_shape, n_classes: int, pretrained_file: str | None = None) -> nn.Module:
        """A fresh network for cached crops of ``input_shape`` (C, *spatial)."""
        in_channels, *spatial = (int(n) for n in input_shape)
        if self.mode in SLICE_MODES:
            return build_model(self.network, n_classes, in_channels, pretrained_file)
        return build_network_3d(self.network, in_channels, n_classes, spatial)

    def checkpoint_fields(self, input_shape, preprocessing: dict, recipe: dict) -> dict:
        """What a checkpoint of this model records besides the weights (plain types only)."""
        shape = [int(n) for n in input_shape]
        return {"mode": self.mode, "network": self.network, "in_chans": shape[0], "input_shape": shape,
                "image_size": shape[-1], "intensity_recipe": recipe,
                "preprocessing": {key: preprocessing[key] for key in
                                  ("spacing", "plane", "neighbours", "crop_mm", "max_slices")}}


def model_from_checkpoint(payload: dict, device: torch.device) -> nn.Module:
    """The network of a volume checkpoint (written by the training stage), in eval mode."""
    job = VolumeJob(payload["backbone"], payload["mode"], payload["network"])
    model = job.build(payload["input_shape"], payload["n_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def check_inputs(crops: torch.Tensor, checkpoint: dict, source) -> None:
    if list(crops.shape[1:]) != list(checkpoint["input_shape"]):
        raise InputError(f"{source}: crops of shape {list(crops.shape[1:])}, the model was trained on "
                         f"{checkpoint['input_shape']}; preprocess with the model's settings (its model card)")


@torch.no_grad()
def predict(model, crops: torch.Tensor, checkpoint: dict, batch_size: int,
            acceleration: Acceleration = Acceleration(), source="cache") -> np.ndarray:
    """Softmax probabilities (N x classes, float64) of cached crops, batched."""
    check_inputs(crops, checkpoint, source)
    return softmax_in_batches(model, crops, batch_size, acceleration, n_classes=checkpoint["n_classes"],
                              prepare=lambda batch: normalise(batch.float(), checkpoint["mean"], checkpoint["std"]))


def gradcam_layer(model: nn.Module, input_shape) -> tuple[nn.Module, str]:
    """The layer Grad-CAM weighs for a 3-D network: the last module (in forward order)
    with a 5-D output that is not a norm or activation (ResNet ``layer4``, DenseNet
    ``features``, Classifier ``net``)."""
    outputs: list[tuple[str, nn.Module]] = []
    hooks = [module.register_forward_hook(
        lambda m, i, o, name=name: outputs.append((name, m))
        if isinstance(o, torch.Tensor) and o.ndim == 5 and not isinstance(m, _PASS_THROUGH) else None)
        for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    if not outputs:
        raise InputError(f"{type(model).__name__}: no 3-D feature map for Grad-CAM")
    name, module = outputs[-1]
    return module, name
