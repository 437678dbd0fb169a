"""U^2-Net (Qin et al. 2020) and its small variant U^2-Net-p.

A U of residual U-blocks. An RSU-L block is itself a small U-Net of height
``L``: an input convolution, an encoder of ``L - 1`` convolutions with a
2x2 max-pooling between them, a bottom convolution with dilation 2, a decoder
that mirrors the encoder (bilinear up-sampling, concatenation with the
encoder's features) and a residual connection from the input convolution to
the output. RSU-4F replaces pooling by growing dilations (1, 2, 4, bottom 8),
for the coarsest stages where there is too little resolution left to pool.

The outer U has six stages (RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F, RSU-4F) with a
max-pooling between them, and a decoder of five stages (RSU-4F, RSU-4, RSU-5,
RSU-6, RSU-7). Each decoder stage and the last encoder stage give a side
output (3x3 convolution), up-sampled to the input size; a 1x1 convolution of
the six fuses them. Training supervises all seven (see
:func:`napari_unet.core.training.losses.deep_supervision`).

Size rule: padded convolutions, so the output has the input's size; five
poolings (the outer U, then the RSU blocks, never go below 1/32), so the
input side must be a multiple of 32.

The full network has 44 M parameters; U^2-Net-p (every stage 16 channels
inside, 64 out) has 1.1 M, a 4.6 MB model file (float32, with the
batch-norm statistics).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .unet import next_multiple, same_size_output

Variant = Literal["full", "small"]

# (height, dilated, mid channels, out channels) of the encoder stages 1..6 and
# decoder stages 5..1; a stage's input channels follow from the U.
_STAGES: dict[str, tuple[list[tuple[int, bool, int, int]], list[tuple[int, bool, int, int]]]] = {
    "full": (
        [(7, False, 32, 64), (6, False, 32, 128), (5, False, 64, 256), (4, False, 128, 512), (4, True, 256, 512),
         (4, True, 256, 512)],
        [(4, True, 256, 512), (4, False, 128, 256), (5, False, 64, 128), (6, False, 32, 64), (7, False, 16, 64)],
    ),
    "small": (
        [(7, False, 16, 64), (6, False, 16, 64), (5, False, 16, 64), (4, False, 16, 64), (4, True, 16, 64),
         (4, True, 16, 64)],
        [(4, True, 16, 64), (4, False, 16, 64), (5, False, 16, 64), (6, False, 16, 64), (7, False, 16, 64)],
    ),
}


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution (padded to keep the size), batch-norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly resized to the spatial size of ``ref`` (unchanged when it already fits)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels: RSU-L, or RSU-LF with ``dilated=True``.

    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H, W)``; for
    RSU-L, ``H`` and ``W`` must be multiples of ``2**(height - 2)``.
    """

    def __init__(self, height: int, in_channels: int, mid_channels: int, out_channels: int, *, dilated: bool = False):
        super().__init__()
        if height < 2:
            raise ValueError(f"an RSU block needs a height of at least 2, got {height}")
        self.dilated = dilated
        levels = height - 1
        dilations = [2**i if dilated else 1 for i in range(levels)]
        self.inp = conv_bn_relu(in_channels, out_channels)
        self.encoder = nn.ModuleList(
            conv_bn_relu(out_channels if i == 0 else mid_channels, mid_channels, d) for i, d in enumerate(dilations)
        )
        self.bottom = conv_bn_relu(mid_channels, mid_channels, 2**levels if dilated else 2)
        self.decoder = nn.ModuleList(
            conv_bn_relu(2 * mid_channels, out_channels if i == 0 else mid_channels, d) for i, d in enumerate(dilations)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.inp(x)
        skips = []
        h = residual
        for i, conv in enumerate(self.encoder):
            if i and not self.dilated:
                h = F.max_pool2d(h, 2)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(reversed(self.decoder), reversed(skips)):
            h = conv(torch.cat([_resize_to(h, skip), skip], dim=1))
        return h + residual


class U2Net(nn.Module):
    """U^2-Net (``variant="full"``) or U^2-Net-p (``variant="small"``).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input image and of the output logits (1 for a
        foreground probability through the sigmoid, as in the paper).
    variant : {"full", "small"}

    Input ``(B, in_channels, n, n)`` with ``n`` a multiple of 32; ``forward``
    gives the fused ``(B, out_channels, n, n)`` logits and
    :meth:`forward_with_sides` also the six side outputs.
    """

    size_multiple = 32
    margin = 0

    def __init__(self, in_channels: int, out_channels: int, *, variant: Variant = "small"):
        super().__init__()
        if variant not in _STAGES:
            raise ValueError(f"variant must be one of {', '.join(_STAGES)}, got {variant!r}")
        encoder_specs, decoder_specs = _STAGES[variant]
        self.encoder = nn.ModuleList()
        channels = in_channels
        encoder_out = []
        for height, dilated, mid, out in encoder_specs:
            self.encoder.append(RSU(height, channels, mid, out, dilated=dilated))
            channels = out
            encoder_out.append(out)
        self.decoder = nn.ModuleList()
        side_channels = [channels]  # the last encoder stage gives the coarsest side output
        for (height, dilated, mid, out), skip in zip(decoder_specs, reversed(encoder_out[:-1])):
            self.decoder.append(RSU(height, channels + skip, mid, out, dilated=dilated))
            channels = out
            side_channels.append(out)
        self.sides = nn.ModuleList(nn.Conv2d(c, out_channels, 3, padding=1) for c in side_channels)
        self.fuse = nn.Conv2d(len(side_channels) * out_channels, out_channels, 1)

    def finest_layers(self, levels: int = 2) -> tuple[str, ...]:
        """Name prefixes of the parameters of the ``levels`` finest decoder stages, of their side outputs and of
        the fusion: the layers that turn features into each pixel's classes."""
        n = len(self.decoder)
        first = max(0, n - levels)
        return (tuple(f"decoder.{i}." for i in range(first, n)) + tuple(f"sides.{i + 1}." for i in range(first, n))
                + ("fuse.",))

    def output_size(self, n: int) -> int:
        """Side of the output for an input of side ``n`` (``n``); ValueError if not a multiple of 32."""
        return same_size_output(n, self.size_multiple)

    def valid_input_size(self, n: int) -> int:
        """The smallest input side ``>= n`` that this network accepts."""
        return next_multiple(n, self.size_multiple)

    def forward_with_sides(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Side output logits (coarsest first, each ``(B, out_channels, n, n)``) and the fused logits."""
        features = []
        h = x
        for i, stage in enumerate(self.encoder):
            if i:
                h = F.max_pool2d(h, 2)
            h = stage(h)
            features.append(h)
        decoded = [h]
        for stage, skip in zip(self.decoder, reversed(features[:-1])):
            h = stage(torch.cat([_resize_to(h, skip), skip], dim=1))
            decoded.append(h)
        sides = [_resize_to(side(d), x) for side, d in zip(self.sides, decoded)]
        return sides, self.fuse(torch.cat(sides, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_sides(x)[1]
