"""DRUNet (Zhang, Li, Zuo, Zhang, Van Gool, Timofte: "Plug-and-Play Image Restoration with Deep
Denoiser Prior", IEEE TPAMI 2021; the DPIR denoiser).

A 4-level U-Net of residual blocks (no batch norm, no biases, ReLU): the image concatenated with a
noise-level map (``sigma`` on the [0, 1] scale, from ``batch["side"]["sigma"]``); at each level
``blocks`` residual blocks, then a 2x2 stride-2 convolution down; 2x2 transposed convolutions up; skips
are added. Widths 64-128-256-512, 4 blocks: 32,638,656 parameters gray, 32,640,960 color (the paper's "32.64M").
Sizes that are not multiples of 8 are padded by replication and cropped back (KAIR's ``test_pad``).
It is the authors' network (``UNetRes`` of cszn/KAIR and cszn/DPIR, ``models/network_unet.py``, with
the noise level map as its last input plane); their files load through ``net.pretrained=PATH`` (see
m3l/layouts/drunet.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from m3l.models.common import ResBlock, crop, level_map, pad_to_multiple


def stage(width: int, blocks: int, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(width, bias) for _ in range(blocks)])


class UNetEncoder(nn.Module):
    """Head conv, then per level ``blocks`` residual blocks and a stride-2 down conv; returns the skips."""

    def __init__(self, in_channels: int, widths=(64, 128, 256, 512), blocks: int = 4, bias: bool = False):
        super().__init__()
        self.head = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=bias)
        self.downs = nn.ModuleList(
            nn.Sequential(stage(a, blocks, bias), nn.Conv2d(a, b, 2, stride=2, bias=bias))
            for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = [self.head(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        return skips  # full resolution first, deepest last


class DRUNet(nn.Module):
    def __init__(self, channels: int = 1, widths=(64, 128, 256, 512), blocks: int = 4, bias: bool = False):
        super().__init__()
        widths = tuple(widths)
        self.encoder = UNetEncoder(channels + 1, widths, blocks, bias)
        self.body = stage(widths[-1], blocks, bias)
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=bias), stage(a, blocks, bias))
            for a, b in reversed(list(zip(widths[:-1], widths[1:]))))
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1, bias=bias)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        skips = self.encoder(torch.cat([x, level_map(sigma, x)], 1))
        y = self.body(skips[-1])
        for up, skip in zip(self.ups, reversed(skips[1:])):
            y = up(y + skip)
        return crop(self.tail(y + skips[0]), (h, w))
