"""The U-Net of Ronneberger et al. (2015) and its common padded variant.

One class covers both:

* ``padding=True`` (default): "same" 3x3 convolutions, so the output has the
  input's size; the input size must be a multiple of ``2**depth``.
* ``padding=False``: the paper's unpadded convolutions; every 3x3 convolution
  loses one pixel per side, skips are centre-cropped before concatenation, and
  a 572x572 input gives a 388x388 output at depth 4.

Size rule: the output of an input of side ``n`` is :meth:`UNet.output_size`;
the pixels lost on each side, the same for every valid ``n``, is
:attr:`UNet.margin`. The tiled predictor uses both, so it handles either
variant exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Sequential):
    """(3x3 conv, [batch-norm], ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: bool, batch_norm: bool):
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=int(padding), bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """Double the resolution, concatenate the (cropped) skip, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: bool, batch_norm: bool, upsampling: str):
        super().__init__()
        if upsampling == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, in_channels // 2, 1),
            )
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels, padding=padding, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = (skip.shape[-2] - x.shape[-2]) // 2
        dx = (skip.shape[-1] - x.shape[-1]) // 2
        if dy or dx:
            skip = skip[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net with ``depth`` poolings and ``width * 2**level`` channels per level.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input image and classes of the output logits.
    depth : int
        Number of 2x2 max-poolings (the paper uses 4).
    width : int
        Channels of the first level (the paper uses 64).
    padding : bool
        Padded ("same") convolutions; ``False`` gives the paper's valid ones.
    batch_norm : bool
        Batch-norm after each convolution (the paper has none).
    upsampling : {"bilinear", "transposed"}
        Bilinear up-sampling + 1x1 conv, or the paper's 2x2 up-convolution.

    Input ``(B, in_channels, n, n)``; output ``(B, out_channels, m, m)`` logits
    with ``m = output_size(n)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 4,
        width: int = 32,
        padding: bool = True,
        batch_norm: bool = True,
        upsampling: str = "bilinear",
    ):
        super().__init__()
        self.depth = depth
        self.padding = padding
        widths = [width * 2**level for level in range(depth + 1)]
        opts = dict(padding=padding, batch_norm=batch_norm)
        self.inc = DoubleConv(in_channels, widths[0], **opts)
        self.downs = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], **opts) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], upsampling=upsampling, **opts) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.apply(_he_init)

    @property
    def size_multiple(self) -> int:
        """Input sizes (and tile offsets) must be multiples of this."""
        return 2**self.depth

    def finest_layers(self, levels: int = 2) -> tuple[str, ...]:
        """Name prefixes of the parameters of the expanding path's ``levels`` finest levels (full resolution,
        half, ...) and of the head: the layers that turn features into each pixel's classes."""
        return tuple(f"ups.{i}." for i in range(max(0, self.depth - levels), self.depth)) + ("head.",)

    @property
    def margin(self) -> int:
        """Pixels lost on each side of the input (0 for padded convolutions)."""
        if self.padding:
            return 0
        n = self.valid_input_size(1)
        return (n - self.output_size(n)) // 2

    def output_size(self, n: int) -> int:
        """Side of the output for an input of side ``n``; ValueError if ``n`` does not fit."""
        if self.padding:
            return same_size_output(n, self.size_multiple)
        size = n - 4
        for _ in range(self.depth):
            if size <= 0 or size % 2:
                raise ValueError(f"input size {n} does not fit an unpadded U-Net of depth {self.depth}")
            size = size // 2 - 4
        if size <= 0:
            raise ValueError(f"input size {n} is too small for an unpadded U-Net of depth {self.depth}")
        for _ in range(self.depth):
            size = size * 2 - 4
        if size <= 0:  # a bottom smaller than 4 px shrinks to nothing on the way up
            raise ValueError(f"input size {n} is too small for an unpadded U-Net of depth {self.depth}")
        return size

    def valid_input_size(self, n: int) -> int:
        """The smallest input side ``>= n`` that this network accepts."""
        if self.padding:
            return next_multiple(n, self.size_multiple)
        while True:
            try:
                self.output_size(n)
                return n
            except ValueError:
                n += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def same_size_output(n: int, multiple: int) -> int:
    """Output side of a network that keeps the input size and pools down by ``multiple``."""
    if n % multiple:
        raise ValueError(f"input size must be a multiple of {multiple}, got {n}")
    return n


def next_multiple(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= n``."""
    return -(-n // multiple) * multiple


def _he_init(module: nn.Module) -> None:
    """He (Kaiming) normal initialisation, std = sqrt(2 / fan_in), as in the paper."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
