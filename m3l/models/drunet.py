"""DRUNet (Zhang, Li, Zuo, Zhang, Van Gool, Timofte: "Plug-and-Play Image Restoration with Deep
Denoiser Prior", IEEE TPAMI 2021; the DPIR denoiser).

A 4-level U-Net of residual blocks (no batch norm, no biases, ReLU): the image concatenated with a
noise-level map (``sigma`` on the [0, 1] scale, from ``batch["side"]["sigma"]``); at each level
``blocks`` residual blocks, then a 2x2 stride-2 convolution down; 2x2 transposed convolutions up; skips
are added. Widths 64-128-256-512, 4 blocks: 32,638,656 parameters gray, 32,640,960 color (the paper's "32.64M").
Sizes that are not multiples of 8 are padded by replication and cropped back (KAIR's ``test_pad``).
It is the authors' network (``UNetRes`` of cszn/KAIR and cszn/DPIR, ``models/network_unet.py``, with
the noise level map as its last input plane); their files load through ``net.pretrained=PATH`` (their
layout, below the net).

The released weights (KAIR's ``drunet_gray.pth``, ``drunet_color.pth``) are below the net: their layout and
weights entries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from m3l.models.common import ResBlock, crop, level_map, pad_to_multiple

from m3l.models._layouts import Layout, check_fits, encoder, layers, net_args_of, residual, strip_prefix
from m3l.models._registry import COLOR_DENOISING, GRAY_DENOISING, Family, Weights, noise, register, rows


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


# Released layouts.
#
# KAIR's DRUNet layout (``drunet_gray.pth``, ``drunet_color.pth`` of cszn/DPIR and cszn/KAIR).
#
# The authors' ``UNetRes`` keys: ``m_head``; ``m_down<l>.<i>.res.{0,2}`` (``blocks`` residual blocks) then
# ``m_down<l>.<blocks>`` (the 2x2 stride-2 conv), l = 1..3; ``m_body.<i>.res.{0,2}``; ``m_up<l>.0`` (the 2x2
# transposed conv) then ``m_up<l>.<1..blocks>.res.{0,2}``; ``m_tail``. The input is the image and the noise
# level map (``channels + 1`` planes), as in :class:`m3l.models.drunet.DRUNet`; the released files have no
# biases. DPIR's ``drunet_deblocking_color.pth`` / ``_grayscale.pth`` are in this layout too, but their level
# map is ``1 - quality / 100`` of the JPEG input, not a noise level.
# The U-Net names and :func:`~m3l.models._layouts.check_fits` are shared with FBCNN (m3l/models/_layouts.py).

def is_kair_drunet(raw: dict) -> bool:
    return "m_head.weight" in raw and "m_tail.weight" in raw and ("m_body.0.res.0.weight" in raw
                                                                   or "m_body.res.0.weight" in raw)


def convert_kair(raw: dict) -> tuple[dict, dict]:
    state = strip_prefix(raw)
    bias = "m_head.bias" in state
    net_args = {"channels": int(state["m_head.weight"].shape[1]) - 1, **net_args_of(state, "kair_drunet", "m_body"),
                "bias": bias}
    blocks, params = net_args["blocks"], ("weight", "bias") if bias else ("weight",)
    names = encoder(blocks, params) | residual("m_body", 0, "body", blocks, params, alone=True)
    for level in (3, 2, 1):  # m3l's ups run from the bottom: ups.0 is the authors' m_up3
        names |= layers(f"m_up{level}.0", f"ups.{3 - level}.0", params)
        names |= residual(f"m_up{level}", 1, f"ups.{3 - level}.1", blocks, params)
    names |= layers("m_tail", "tail", params)
    return check_fits(state, names, DRUNet, net_args, "kair_drunet"), net_args


LAYOUTS = (Layout(name="kair_drunet", detect=is_kair_drunet, convert=convert_kair,
                  description="KAIR's DRUNet: drunet_gray.pth, drunet_color.pth"),)


# Weights entries (DPIR, Zhang et al. 2021): noise-level map input, blind over sigma 0-50.
KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SOURCE = "Zhang et al. 2021 (cszn/DPIR, cszn/KAIR; MIT licence)"
ARCH = {"widths": [64, 128, 256, 512], "blocks": 4, "bias": False}

WEIGHTS = (
    Weights(model="drunet", variant="gray", url=KAIR + "drunet_gray.pth", sha256=None, net={"channels": 1, **ARCH},
            layout="kair_drunet", protocol=GRAY_DENOISING, source=SOURCE,
            metrics=rows({"set12": noise((33.25, 30.94, 27.90)), "bsd68": noise((31.91, 29.48, 26.59))})),
    Weights(model="drunet", variant="color", url=KAIR + "drunet_color.pth", sha256=None, net={"channels": 3, **ARCH},
            layout="kair_drunet", metrics=rows({"cbsd68": noise((34.30, 31.69, 28.51))}), protocol=COLOR_DENOISING,
            source=SOURCE),
)

FAMILY = register(Family(
    "drunet", DRUNet, tiny={"widths": [4, 8], "blocks": 1}, layouts=LAYOUTS, weights=WEIGHTS,
    doc="""DRUNet (Zhang et al. 2021, DPIR), ``net(x, sigma)``. ``pretrained=True``: KAIR's ``drunet_gray.pth``
    (Set12 33.25 / 30.94 / 27.90 dB); ``variant="color"``."""))
