"""A DeepMedic-style dual-pathway 3D CNN (Kamnitsas et al., Medical Image Analysis 2017).

Two pathways of unpadded ("valid") 3x3x3 convolutions look at the same output voxels:

* the **normal pathway** at full resolution, on a patch of ``output + 2 * L`` voxels per
  axis (L = number of its layers);
* the **context pathway** on a larger region, average-pooled by ``subsample_factor``
  (f): ``output / f + 2 * Lc`` low-resolution voxels, i.e. ``output + 2 * Lc * f``
  full-resolution voxels; its output is upsampled by repetition (nearest neighbour)
  back to the full-resolution output grid.

Their feature maps are concatenated and passed through the "fully connected" layers
(1x1x1 convolutions) and a final 1x1x1 convolution that gives one logit per output
channel and voxel. Every hidden convolution is followed by batch normalisation and
PReLU, as in DeepMedic; ``fc_dropout`` drops inputs of the FC layers after the first and
of the classification layer (DeepMedic uses 0.5 there). Residual connections (``residual_layers``, 1-based as in DeepMedic's
configuration: layer k adds the input of layer k-1, centre-cropped, to its output; the
published BRATS model uses (4, 6, 8)) are optional and apply to both pathways.

The network takes ONE tensor, the full-resolution region around the output window:
``(batch, channels, *input_size)`` with ``input_size = output_size + 2 * input_margin``
per axis, and cuts both pathway inputs from it (``forward``), so it is called like any
other segmentation network (``model(x)``); only the output is smaller than the input.
Output sizes must be multiples of ``subsample_factor`` (``size_divisor``) so that the
context grid lines up with the output window. The paper's configuration (the defaults:
8 layers of 30-50 maps, f = 3, two FC layers of 150) maps a 57^3 region to a 9^3
output (normal input 25^3, context input 19^3), with a receptive field of 51 voxels.
Small widths (e.g. ``normal_widths=(8, 8, 12, 12)``, ``fc_widths=(16,)``) train on CPU.

Forward returns logits; ``torch.sigmoid`` gives lesion probabilities (one channel).
Plain torch, no other dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DeepMedic"]


def _centre_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    starts = [(have - want) // 2 for have, want in zip(x.shape[2:], size)]
    return x[(..., *(slice(s, s + n) for s, n in zip(starts, size)))]


def _add_residual(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """x + residual, the residual centre-cropped to x and added to the first channels
    it has (DeepMedic pads missing residual channels with zeros and drops extra ones)."""
    residual = _centre_crop(residual, x.shape[2:])
    n = min(x.shape[1], residual.shape[1])
    if n == x.shape[1]:
        return x + residual[:, :n]
    return torch.cat([x[:, :n] + residual[:, :n], x[:, n:]], dim=1)


class _Block(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0):
        layers = [nn.Dropout3d(dropout)] if dropout else []
        layers += [nn.Conv3d(in_channels, out_channels, kernel_size, bias=False),
                   nn.BatchNorm3d(out_channels), nn.PReLU(out_channels)]
        super().__init__(*layers)


class _Pathway(nn.Module):
    """Valid 3x3x3 convolutions with optional residual connections."""

    def __init__(self, in_channels: int, widths: Sequence[int], residual_layers: Sequence[int]):
        super().__init__()
        channels = [in_channels, *widths]
        self.layers = nn.ModuleList(_Block(a, b, 3) for a, b in zip(channels[:-1], channels[1:]))
        self.residual_layers = frozenset(residual_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = []
        for number, layer in enumerate(self.layers, start=1):
            inputs.append(x)
            x = layer(x)
            if number in self.residual_layers:
                x = _add_residual(x, inputs[number - 2])  # the input of layer number - 1
        return x


class DeepMedic(nn.Module):
    """Dual-pathway 3D CNN; see the module docstring.

    Bookkeeping (per axis, in voxels): ``input_margin`` is what the input region adds on
    each side of the output window, ``size_divisor`` what output sizes must be multiples
    of, ``receptive_field`` how many input voxels one output voxel can see;
    :meth:`input_size` and :meth:`output_size` convert between the two.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        *,
        normal_widths: Sequence[int] = (30, 30, 40, 40, 40, 40, 50, 50),
        context_widths: Sequence[int] | None = None,
        fc_widths: Sequence[int] = (150, 150),
        subsample_factor: int = 3,
        residual_layers: Sequence[int] = (),
        fc_dropout: float = 0.0,
    ):
        super().__init__()
        context_widths = tuple(normal_widths if context_widths is None else context_widths)
        normal_widths = tuple(normal_widths)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1; got {in_channels}, {out_channels}")
        if not normal_widths or not context_widths:
            raise ValueError("both pathways need at least one layer")
        if int(subsample_factor) != subsample_factor or subsample_factor < 1:
            raise ValueError(f"subsample_factor must be a positive integer; got {subsample_factor!r}")
        deepest = min(len(normal_widths), len(context_widths))
        if any(not 2 <= k <= deepest for k in residual_layers):
            raise ValueError(f"residual_layers must be layer numbers from 2 to {deepest}; got {tuple(residual_layers)}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.subsample_factor = int(subsample_factor)
        self.normal = _Pathway(in_channels, normal_widths, residual_layers)
        self.context = _Pathway(in_channels, context_widths, residual_layers)
        channels = [normal_widths[-1] + context_widths[-1], *fc_widths]
        self.fc = nn.Sequential(*(_Block(a, b, 1, fc_dropout if i else 0.0)
                                  for i, (a, b) in enumerate(zip(channels[:-1], channels[1:]))))
        self.classifier = nn.Sequential(*([nn.Dropout3d(fc_dropout)] if fc_dropout else []),
                                        nn.Conv3d(channels[-1], out_channels, 1))
        self._normal_margin = len(normal_widths)
        self._context_margin = len(context_widths) * self.subsample_factor
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                # He et al. initialisation, as DeepMedic ("Delving deep into rectifiers")
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # --- bookkeeping -------------------------------------------------------------------

    @property
    def input_margin(self) -> int:
        """Voxels the input region adds on each side of the output window."""
        return max(self._normal_margin, self._context_margin)

    @property
    def size_divisor(self) -> int:
        return self.subsample_factor

    @property
    def receptive_field(self) -> int:
        """Input voxels (per axis) that can influence one output voxel: the larger of the
        normal pathway's ``2 L + 1`` and the context pathway's ``(2 Lc + 1) f``."""
        f = self.subsample_factor
        return max(2 * self._normal_margin + 1, (2 * self._context_margin // f + 1) * f)

    def input_size(self, output_size: Sequence[int] | int) -> tuple[int, ...]:
        """Full-resolution input region for an output window (multiples of ``size_divisor``)."""
        sizes = (output_size,) * 3 if isinstance(output_size, int) else tuple(output_size)
        if any(s < 1 or s % self.subsample_factor for s in sizes):
            raise ValueError(f"output sizes must be positive multiples of {self.subsample_factor}; got {sizes}")
        return tuple(s + 2 * self.input_margin for s in sizes)

    def output_size(self, input_size: Sequence[int] | int) -> tuple[int, ...]:
        sizes = (input_size,) * 3 if isinstance(input_size, int) else tuple(input_size)
        out = tuple(s - 2 * self.input_margin for s in sizes)
        if any(o < 1 or o % self.subsample_factor for o in out):
            raise ValueError(
                f"input size {sizes} gives output {out}; the input must be 2 * {self.input_margin} voxels "
                f"larger than an output that is a positive multiple of {self.subsample_factor}")
        return out

    def pathway_sizes(self, output_size: Sequence[int] | int) -> dict[str, tuple[int, ...]]:
        """Sizes of the region, the normal input, the context input (low resolution) and
        the output for an output window."""
        region = self.input_size(output_size)
        output = self.output_size(region)
        f = self.subsample_factor
        return {
            "region": region,
            "normal_input": tuple(o + 2 * self._normal_margin for o in output),
            "context_input": tuple((o + 2 * self._context_margin) // f for o in output),
            "output": output,
        }

    # --- forward -----------------------------------------------------------------------

    def split(self, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two pathway inputs cut from a full-resolution region: the centre of the
        region, and a larger centre average-pooled by ``subsample_factor``."""
        output = self.output_size(region.shape[2:])
        normal = _centre_crop(region, [o + 2 * self._normal_margin for o in output])
        context = _centre_crop(region, [o + 2 * self._context_margin for o in output])
        if self.subsample_factor > 1:
            context = F.avg_pool3d(context, self.subsample_factor)
        return normal, context

    def forward(self, region: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, out_channels, *output_size(region.shape[2:]))``."""
        if region.ndim != 5 or region.shape[1] != self.in_channels:
            raise ValueError(f"expected (batch, {self.in_channels}, z, y, x); got {tuple(region.shape)}")
        normal, context = self.split(region)
        normal = self.normal(normal)
        context = self.context(context)
        if self.subsample_factor > 1:
            context = F.interpolate(context, scale_factor=self.subsample_factor, mode="nearest")
        return self.classifier(self.fc(torch.cat([normal, context], dim=1)))
