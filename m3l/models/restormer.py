"""Restormer (Zamir, Arora, Khan, Hayat, Khan, Yang: "Restormer: Efficient Transformer for
High-Resolution Image Restoration", CVPR 2022).

A 4-level U-Net of transformer blocks: multi-Dconv head transposed attention (attention across
channels, not pixels, so its cost is linear in the image size: 1x1 + 3x3 depthwise convs make q, k, v,
which are L2-normalized over the pixels, with a learned temperature per head) and a gated-Dconv
feed-forward network (1x1, 3x3 depthwise, GELU gate, 1x1); pixel-unshuffle down, pixel-shuffle up,
skips concatenated and reduced by 1x1 convs (but at the top level), refinement blocks, global
residual. Widths 48-96-192-384, blocks 4-6-6-8, heads 1-2-4-8, 4 refinement blocks, expansion 2.66:
26,126,644 parameters in color (the paper's "26.13M"). Sizes are padded to a multiple of 8 by
reflection and cropped back, as the authors' test scripts do outside their net.

``layer_norm``: the authors' option file's ``LayerNorm_type``: ``with_bias`` (centred, scaled and shifted:
motion and defocus deblurring, deraining) or ``bias_free`` (divided by the channels' standard deviation,
neither centred nor shifted, no bias: their Gaussian and real denoising models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.models.common import crop, pad_to_multiple
from m3l.models.nafnet import LayerNorm2d


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA)."""

    def __init__(self, width: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Sequential(nn.Conv2d(width, 3 * width, 1, bias=bias),
                                 nn.Conv2d(3 * width, 3 * width, 3, padding=1, groups=3 * width, bias=bias))
        self.out = nn.Conv2d(width, width, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = (t.reshape(n, self.heads, c // self.heads, h * w) for t in self.qkv(x).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)  # channels x channels
        return self.out((attention @ v).reshape(n, c, h, w))


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN)."""

    def __init__(self, width: int, expansion: float = 2.66, bias: bool = False):
        super().__init__()
        hidden = int(width * expansion)
        self.inp = nn.Sequential(nn.Conv2d(width, 2 * hidden, 1, bias=bias),
                                 nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias))
        self.out = nn.Conv2d(hidden, width, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.inp(x).chunk(2, dim=1)
        return self.out(F.gelu(a) * b)


class BiasFreeLayerNorm2d(nn.Module):
    """Restormer's ``BiasFree`` layer norm over the channels of each pixel: ``x / std(x) * weight``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(channels)), eps

    def forward(self, x: Tensor) -> Tensor:
        return x / (x.var(1, keepdim=True, unbiased=False) + self.eps).sqrt() * self.weight[:, None, None]


LAYER_NORMS = {"with_bias": LayerNorm2d, "bias_free": BiasFreeLayerNorm2d}


class TransformerBlock(nn.Module):
    def __init__(self, width: int, heads: int, expansion: float = 2.66, bias: bool = False,
                 layer_norm: str = "with_bias"):
        super().__init__()
        norm = LAYER_NORMS[layer_norm]
        self.norm1, self.norm2 = norm(width, eps=1e-5), norm(width, eps=1e-5)
        self.attention, self.ffn = Attention(width, heads, bias), FeedForward(width, expansion, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def blocks(width: int, n: int, heads: int, expansion: float, layer_norm: str) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(width, heads, expansion, layer_norm=layer_norm) for _ in range(n)])


class Restormer(nn.Module):
    def __init__(self, channels: int = 3, width: int = 48, num_blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8),
                 refinement_blocks: int = 4, expansion: float = 2.66, layer_norm: str = "with_bias"):
        super().__init__()
        if layer_norm not in LAYER_NORMS:
            raise ValueError(f"Restormer: layer_norm={layer_norm!r}; use one of {', '.join(LAYER_NORMS)}")
        levels = len(num_blocks)
        widths = [width * 2**i for i in range(levels)]
        self.embed = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(blocks(c, n, h, expansion, layer_norm) for c, n, h in zip(widths, num_blocks, heads))
        self.downs = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))
                                   for c in widths[:-1])
        self.ups, self.reduces, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(levels - 1)):  # decoder levels, deepest first
            c = widths[level]
            self.ups.append(nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, padding=1, bias=False), nn.PixelShuffle(2)))
            top = level == 0  # the top level keeps the 2c concatenation (no reduction)
            self.reduces.append(nn.Identity() if top else nn.Conv2d(2 * c, c, 1, bias=False))
            self.decoders.append(blocks(2 * c if top else c, num_blocks[level], heads[level], expansion, layer_norm))
        self.refinement = blocks(2 * width, refinement_blocks, heads[0], expansion, layer_norm)
        self.output = nn.Conv2d(2 * width, channels, 3, padding=1, bias=False)
        self.multiple = 2 ** (levels - 1)

    def forward(self, x: Tensor) -> Tensor:
        inp, (h, w) = pad_to_multiple(x, self.multiple, mode="reflect" if min(x.shape[-2:]) > self.multiple else "replicate")
        y, skips = self.embed(inp), []
        for i, encoder in enumerate(self.encoders):
            y = encoder(y)
            if i < len(self.downs):
                skips.append(y)
                y = self.downs[i](y)
        for up, reduce, decoder, skip in zip(self.ups, self.reduces, self.decoders, reversed(skips)):
            y = decoder(reduce(torch.cat([up(y), skip], 1)))
        return crop(self.output(self.refinement(y)) + inp, (h, w))
