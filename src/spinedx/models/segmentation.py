"""3D lesion-segmentation networks behind one factory: MONAI's and the DeepMedic-style one.

Every network is built the same way, ``build_network(name, in_channels=<number of
sequences>, out_channels=1, **options)``, is called the same way, ``model(x)`` with
``x`` of shape ``(batch, in_channels, z, y, x)``, and returns logits (``torch.sigmoid``
gives the lesion probability). Every returned module carries two attributes that
patch extraction and sliding-window inference (``spinedx.imaging.patches``) use:

* ``input_margin``: voxels the input adds on each side of the output (0 for MONAI's
  padded networks, whose output has the input's size; > 0 for DeepMedic);
* ``size_divisor``: output (window) sizes should be multiples of it (2 ** number of
  poolings for the U-Nets, the subsampling factor for DeepMedic).

``options`` go to the network's constructor unchanged (MONAI's own defaults apply to
what is not given; for "unet" MONAI requires ``channels`` and ``strides``).
MONAI is imported only when a MONAI network is built.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["NETWORKS", "build_network"]

#: name -> what it is
NETWORKS: dict[str, str] = {
    "basic_unet": "monai.networks.nets.BasicUNet (4 poolings; options: features, act, norm, dropout, upsample)",
    "unet": "monai.networks.nets.UNet (options: channels, strides, num_res_units, ...)",
    "deepmedic": "spinedx.models.deepmedic.DeepMedic (options: normal_widths, context_widths, fc_widths, ...)",
}


def build_network(name: str, *, in_channels: int, out_channels: int = 1, **options) -> nn.Module:
    """A 3D network named in :data:`NETWORKS` with ``input_margin`` and ``size_divisor`` set."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}")
    if "spatial_dims" in options:
        raise ValueError("these networks are 3D only; do not pass spatial_dims")
    if name == "deepmedic":
        from spinedx.models.deepmedic import DeepMedic

        return DeepMedic(in_channels, out_channels, **options)
    if name == "basic_unet":
        from monai.networks.nets import BasicUNet

        network = BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
        divisor = 2 ** 4
    else:
        from monai.networks.nets import UNet

        network = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
        # a stride may be one number or one per axis: the largest one bounds every axis
        divisor = math.prod(int(s) if isinstance(s, int) else max(int(v) for v in s) for s in options["strides"])
    network.input_margin = 0
    network.size_divisor = divisor
    return network
