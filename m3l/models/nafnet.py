"""NAFNet (Chen, Chu, Zhang, Sun: "Simple Baselines for Image Restoration", ECCV 2022).

A U-Net of NAFBlocks, without nonlinear activations: LayerNorm over channels, 1x1 conv, 3x3 depthwise
conv, SimpleGate (split the channels in two and multiply the halves), simplified channel attention
(global average pooling, 1x1 conv, multiply), 1x1 conv, each branch added with a learned per-channel
scale (zero at start); then a feed-forward branch (1x1, SimpleGate, 1x1). 2x2 stride-2 convs down, 1x1
conv + pixel shuffle up, skips added, global residual. GoPro deblurring (the paper's 33.69 dB): width
32, encoder blocks 1-1-1-28, 1 middle block, decoder blocks 1-1-1-1 (17.11M parameters); SIDD: width 32,
encoder 2-2-4-8, middle 12, decoder 2-2-2-2.

TLC (Chu et al., "Improving Image Restoration by Revisiting Global Information Aggregation", ECCV 2022):
a net trained on patches sees global statistics of a patch; on a full image, ``tlc_size`` (e.g. 384, 1.5
times the 256 training patches) replaces the global pooling at evaluation time by a local average over
windows of that many image pixels (``tlc_size / 2**level`` features), the windows clamped at the borders.
The published GoPro number uses it. Sizes are zero-padded to a multiple of ``2**levels`` and cropped back.

The authors' released weights are below the net: their layout and weights entries.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._blocks import LayerNorm2d
from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import GOPRO_TEST, SIDD_TEST, Family, Weights, register
from m3l.models.common import crop, pad_to_multiple


def simple_gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return a * b


def local_mean(x: Tensor, window: int) -> Tensor:
    """Mean over ``window x window`` neighbourhoods (windows inside the image, clamped at the borders);
    the global mean when the image is not larger than the window.

    Box sums from running sums (in float64, exact enough at any image size), one side after the other: each
    pixel's window starts at ``clamp(i - (k - 1) // 2, 0, size - k)``, ``k = min(window, size)``. No branch on
    the size, so ``torch.export`` keeps height and width dynamic.
    """
    if window <= 0:
        return x.mean((-2, -1), keepdim=True)
    sums = x.double()
    for dim in (-2, -1):
        size = x.shape[dim]
        k = torch.sym_min(window, size)
        start = (torch.arange(size, device=x.device) - (k - 1) // 2).clamp(0, size - k)
        running = F.pad(sums.cumsum(dim), (0, 0, 1, 0) if dim == -2 else (1, 0))  # running[j]: sum of the first j
        sums = (running.index_select(dim, start + k) - running.index_select(dim, start)) / k
    return sums.to(x.dtype)


class NAFBlock(nn.Module):
    def __init__(self, width: int, expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        dw = width * expand
        self.norm1, self.norm2 = LayerNorm2d(width), LayerNorm2d(width)
        self.conv1 = nn.Conv2d(width, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.attention = nn.Conv2d(dw // 2, dw // 2, 1)  # simplified channel attention
        self.conv3 = nn.Conv2d(dw // 2, width, 1)
        self.ffn_in = nn.Conv2d(width, width * ffn_expand, 1)
        self.ffn_out = nn.Conv2d(width * ffn_expand // 2, width, 1)
        self.beta = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.tlc_window = 0  # features; set by NAFNet.forward at evaluation when TLC is on

    def forward(self, x: Tensor) -> Tensor:
        y = simple_gate(self.conv2(self.conv1(self.norm1(x))))
        pooled = local_mean(y, self.tlc_window) if self.tlc_window else y.mean((-2, -1), keepdim=True)
        y = self.conv3(y * self.attention(pooled))
        x = x + self.beta * y
        y = self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))
        return x + self.gamma * y


class NAFNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 32, encoder_blocks=(1, 1, 1, 28), middle_blocks: int = 1,
                 decoder_blocks=(1, 1, 1, 1), tlc_size: int | None = None):
        super().__init__()
        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        c = width
        for n in encoder_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        for n in decoder_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        self.ending = nn.Conv2d(width, channels, 3, padding=1)
        self.levels, self.tlc_size = len(encoder_blocks), tlc_size
        self.multiple = 2**self.levels  # sizes are padded to a multiple of it

    def _set_tlc(self, on: bool) -> None:
        stages = [*self.encoders, self.middle, *reversed(self.decoders)]
        levels = [*range(self.levels), self.levels, *range(self.levels)]
        for stage, level in zip(stages, levels):
            for block in stage:
                block.tlc_window = max(1, self.tlc_size // 2**level) if on else 0

    def forward(self, x: Tensor) -> Tensor:
        self._set_tlc(bool(self.tlc_size) and not self.training)
        inp, (h, w) = pad_to_multiple(x, self.multiple, mode="constant")
        y, skips = self.intro(inp), []
        for encoder, down in zip(self.encoders, self.downs):
            y = encoder(y)
            skips.append(y)
            y = down(y)
        y = self.middle(y)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            y = decoder(up(y) + skip)
        return crop(self.ending(y) + inp, (h, w))


# Released layouts.
#
# The NAFNet authors' layout (megvii-research/NAFNet: ``NAFNet-GoPro-width32.pth``, ``-width64``,
# ``NAFNet-SIDD-width32.pth``, ``-width64``, ``NAFNet-REDS-width64.pth``).
#
# BasicSR files: ``{"params": state_dict}`` (see m3l.checkpoint.state_dict_of for ``params_ema``). The authors'
# ``NAFNet`` keys: ``intro``; ``encoders.<i>.<j>`` (NAFBlocks) and ``downs.<i>`` per level; ``middle_blks.<j>``;
# ``ups.<i>.0`` (the 1x1 conv before the pixel shuffle) and ``decoders.<i>.<j>``; ``ending``. A NAFBlock:
# ``norm1``, ``conv1``, ``conv2`` (depthwise), ``sca.1`` (the simplified channel attention's conv after
# the global pooling), ``conv3``, ``norm2``, ``conv4``, ``conv5`` (the feed-forward branch), ``beta``, ``gamma``.
# They are :class:`m3l.models.nafnet.NAFNet`'s, but ``middle_blks`` is ``middle``, ``sca.1`` is ``attention``,
# ``conv4`` / ``conv5`` are ``ffn_in`` / ``ffn_out``.
#
# The file fixes width, channels and the block counts. The authors test their GoPro (and REDS) files with
# ``NAFNetLocal`` (TLC, ``train_size`` 256: ``net.tlc_size=384``), the SIDD ones with plain ``NAFNet``: TLC
# is a test-time setting, not in the file, so it is left to the net config.

# A NAFBlock's parameters: the authors' name, m3l's.
BLOCK = {"norm1": "norm1", "conv1": "conv1", "conv2": "conv2", "sca.1": "attention", "conv3": "conv3",
         "norm2": "norm2", "conv4": "ffn_in", "conv5": "ffn_out"}


def is_nafnet(raw: dict) -> bool:
    state = unwrap(raw)
    return "intro.weight" in state and "ending.weight" in state and any(".sca.1.weight" in k for k in state)


def count(state: dict, stage: str) -> int:
    """How many blocks ``<stage>.<j>.*`` the file has."""
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(stage)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def block_names(authors: str, m3l: str) -> dict[str, str]:
    names = {f"{authors}.{a}.{p}": f"{m3l}.{b}.{p}" for a, b in BLOCK.items() for p in ("weight", "bias")}
    return names | {f"{authors}.{p}": f"{m3l}.{p}" for p in ("beta", "gamma")}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = unwrap(raw)
    levels = count(state, "downs")
    if levels != count(state, "ups"):
        raise M3LError(f"basicsr_nafnet: the file has {levels} downsamplings (downs.<i>) but {count(state, 'ups')} "
                       f"upsamplings (ups.<i>); is it complete?")
    net_args = {"channels": int(state["intro.weight"].shape[1]), "width": int(state["intro.weight"].shape[0]),
                "encoder_blocks": [count(state, f"encoders.{i}") for i in range(levels)],
                "middle_blocks": count(state, "middle_blks"),
                "decoder_blocks": [count(state, f"decoders.{i}") for i in range(levels)]}
    names = {f"{layer}.{p}": f"{layer}.{p}" for layer in ("intro", "ending") for p in ("weight", "bias")}
    for i in range(levels):
        names |= {f"downs.{i}.{p}": f"downs.{i}.{p}" for p in ("weight", "bias")} | {f"ups.{i}.0.weight": f"ups.{i}.0.weight"}
        for j in range(net_args["encoder_blocks"][i]):
            names |= block_names(f"encoders.{i}.{j}", f"encoders.{i}.{j}")
        for j in range(net_args["decoder_blocks"][i]):
            names |= block_names(f"decoders.{i}.{j}", f"decoders.{i}.{j}")
    for j in range(net_args["middle_blocks"]):
        names |= block_names(f"middle_blks.{j}", f"middle.{j}")
    return check_fits(state, names, NAFNet, net_args, "basicsr_nafnet"), net_args


LAYOUTS = (Layout(name="basicsr_nafnet", detect=is_nafnet, convert=convert_authors,
                  description="the NAFNet authors' BasicSR files: NAFNet-GoPro-width32.pth, NAFNet-SIDD-width64.pth"),)


# Weights entries (Chen et al. 2022): BasicSR files ({"params": ...}), only on Google Drive.
GDRIVE = "https://drive.google.com/uc?export=download&id="
SOURCE = "Chen et al. 2022 (megvii-research/NAFNet, Google Drive; MIT licence)"
GOPRO = {"channels": 3, "encoder_blocks": [1, 1, 1, 28], "middle_blocks": 1, "decoder_blocks": [1, 1, 1, 1]}
SIDD = {"channels": 3, "encoder_blocks": [2, 2, 4, 8], "middle_blocks": 12, "decoder_blocks": [2, 2, 2, 2]}

# Tested as the authors do: GoPro's 1111 test pairs (blur/ sharp/, degradation gopro_blur), SIDD's 1280 validation
# blocks as PNG pairs (the standard set `sidd`: input/ target/, degradation real).
PROTOCOL = {"GoPro": (GOPRO_TEST, "gopro_blur"), "SIDD": (SIDD_TEST, "real")}

WEIGHTS = tuple(
    Weights(model="nafnet", variant=f"{data.lower()}_width{width}", url=GDRIVE + drive, file=f"NAFNet-{data}-width{width}.pth",
            sha256=None, net={**(GOPRO if data == "GoPro" else SIDD), "width": width}, layout="basicsr_nafnet",
            metrics={f"{data.lower()}/{PROTOCOL[data][1]}/psnr": psnr, f"{data.lower()}/{PROTOCOL[data][1]}/ssim": ssim},
            protocol=PROTOCOL[data][0], source=SOURCE)
    for data, width, drive, psnr, ssim in [
        ("GoPro", 32, "1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj", 32.8705, 0.9606),
        ("GoPro", 64, "1S0PVRbyTakYY9a82kujgZLbMihfNBLfC", 33.7103, 0.9668),
        ("SIDD", 32, "1lsByk21Xw-6aW7epCwOQxvm6HYCQZPHZ", 39.9672, 0.9599),
        ("SIDD", 64, "14Fht1QQJ2gMlk4N1ERCRuElg8JfjrWWR", 40.3045, 0.9614)])

FAMILY = register(Family(
    "nafnet", NAFNet, tiny={"width": 4, "encoder_blocks": [1], "middle_blocks": 1, "decoder_blocks": [1]},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""NAFNet (Chen et al. 2022), deblurring and real-noise denoising. ``pretrained=True``: NAFNet-GoPro-width32
    (deblurring, GoPro 32.87 dB);
    ``variant``: ``gopro_width64``, ``sidd_width32``, ``sidd_width64`` (denoising)."""))
