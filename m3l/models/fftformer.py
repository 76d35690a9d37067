"""FFTformer (Kong, Dong, Ge, Li, Pan: "Efficient Frequency Domain-based Transformers for High-Quality Image
Deblurring", CVPR 2023): motion deblurring.

A 3-level encoder-decoder in Restormer's shape (a 3x3 convolution in; at each level down a bilinear halving then a
3x3 convolution doubling the channels; up, a bilinear doubling then a 3x3 convolution halving them; refinement
blocks at the top; a 3x3 convolution out plus the input). Every block has a discriminative frequency-domain
feed-forward (DFFN: a 1x1 convolution, each 8x8 patch of each channel multiplied in the 2-D real FFT domain by a
learned ``8 x 5`` filter, a depthwise 3x3 convolution, a GELU gate, a 1x1 convolution); the decoder's and the
refinement's blocks also have frequency-domain self-attention (FSAS: q, k, v from a 1x1 and a depthwise 3x3
convolution, the correlation of q and k within each 8x8 patch computed as the product of their FFTs, layer-normed,
multiplying v, a 1x1 convolution). Each level's skip joins the decoder through a fusion block (1x1 convolution of
the two concatenated, a feed-forward-only block of expansion 2.66, 1x1 convolution, the two halves added). Layer
norms are over the channels of each pixel, with bias (eps 1e-5).

The image is padded at the bottom and right to a multiple of 32 (two halvings, then 8x8 patches) by reflection and
the result cropped back, as the authors' ``test.py`` does before and after their net; where an image is so small
that reflection would run past its far edge (a side of 16 or less; the authors' script fails there), the reflected
index is clamped to the first row or column.

State-dict keys are the authors' (``patch_embed.proj``, ``encoder_level1.<i>``, ``down1_2.body.1``, ...,
``decoder_level3.<i>.attn.to_hidden``, ``...ffn.fft`` of shape (hidden * 2, 1, 1, 8, 5) (m3l's: (hidden * 2, 1, 8, 5)), ``up3_2.body.1``,
``fuse2.att_channel``, ``refinement.<i>``, ``output``; ``reduce_chan_level2``, built but unused by their forward,
is kept so the files load strictly): the released file (``pretrain_model/fftformer_GoPro.pth`` in kkkls/FFTformer,
a bare state dict) loads unchanged, and :func:`is_fftformer` / :func:`convert_authors` give the architecture
(``net.pretrained=FILE``).

Exports (torch.export and ONNX, from torch 2.13: real FFTs included) with dynamic sizes from 33 pixels on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import GOPRO_TEST, Family, Weights, register
from m3l.models.common import crop

PATCH = 8          # the FFT patches of DFFN and FSAS
MULTIPLE = 4 * PATCH  # two halvings, then whole patches
FUSE_EXPANSION = 2.66  # the fusion blocks' feed-forward expansion (the authors' default, not their net's argument)


def reflect_pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """``x`` padded at the bottom and right to multiples of ``multiple`` by reflection (edge not repeated, as
    ``F.pad(mode="reflect")``), the reflected index clamped at 0 where the padding is longer than the image;
    returns the padded tensor and the size to crop back to. A gather (no branch on the size: torch.export)."""
    h, w = x.shape[-2:]

    def index(size: int) -> Tensor:
        length = (size + multiple - 1) // multiple * multiple
        return ((size - 1) - ((size - 1) - torch.arange(length, device=x.device)).abs()).clamp(min=0)

    return x.index_select(-2, index(h)).index_select(-1, index(w)), (h, w)


class LayerNorm(nn.Module):
    """Layer norm over the channels of each pixel of an ``(N, C, H, W)`` map, with bias, eps 1e-5 (the authors'
    ``LayerNorm(dim, 'WithBias')``; its parameters under ``body``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.LayerNorm(channels, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def patches(x: Tensor) -> Tensor:
    """``(N, C, H, W)`` as ``(N, C, 8, 8, L)``: its ``L`` 8x8 patches (H and W multiples of 8), row-major. By
    ``F.unfold`` (no reshape of H or W: torch.export keeps them symbolic)."""
    return F.unfold(x, PATCH, stride=PATCH).unflatten(1, (x.shape[1], PATCH, PATCH))


def unpatches(x: Tensor, size: tuple[int, int]) -> Tensor:
    """The inverse of :func:`patches` for an image of ``size``."""
    return F.fold(x.flatten(1, 3), size, PATCH, stride=PATCH)


def patch_fft(x: Tensor) -> Tensor:
    """The 2-D real FFT of each patch of :func:`patches`: ``(N, C, 8, 5, L)``."""
    return torch.fft.rfft2(x.float(), dim=(2, 3))


def patch_ifft(x: Tensor) -> Tensor:
    return torch.fft.irfft2(x, s=(PATCH, PATCH), dim=(2, 3))


class DFFN(nn.Module):
    """The discriminative frequency-domain feed-forward (hidden channels ``int(width * expansion)``)."""

    def __init__(self, width: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(width * expansion)
        self.project_in = nn.Conv2d(width, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        # the authors' (2 hidden, 1, 1, 8, 5) as (2 hidden, 1, 8, 5): a 4-D tensor, which the channels-last layout
        # of m3l's CPU inference takes (a 5-D one it refuses); :func:`convert_authors` reshapes their files' filters
        self.fft = nn.Parameter(torch.ones(2 * hidden, 1, PATCH, PATCH // 2 + 1))
        self.project_out = nn.Conv2d(hidden, width, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.project_in(x)
        x = unpatches(patch_ifft(patch_fft(patches(x)) * self.fft.permute(0, 2, 3, 1)), x.shape[-2:])
        gate, value = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class FSAS(nn.Module):
    """Frequency-domain self-attention: q, k, v of ``2 width`` channels each; q and k correlated per 8x8 patch
    through their FFTs."""

    def __init__(self, width: int, bias: bool):
        super().__init__()
        self.to_hidden = nn.Conv2d(width, 6 * width, 1, bias=bias)
        self.to_hidden_dw = nn.Conv2d(6 * width, 6 * width, 3, padding=1, groups=6 * width, bias=bias)
        self.project_out = nn.Conv2d(2 * width, width, 1, bias=bias)
        self.norm = LayerNorm(2 * width)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.to_hidden_dw(self.to_hidden(x)).chunk(3, dim=1)
        correlation = unpatches(patch_ifft(patch_fft(patches(q)) * patch_fft(patches(k))), q.shape[-2:])
        return self.project_out(v * self.norm(correlation))


class Block(nn.Module):
    """``x + FSAS(norm(x))`` (with ``attention``), then ``x + DFFN(norm(x))`` (the authors' TransformerBlock)."""

    def __init__(self, width: int, expansion: float, bias: bool = False, attention: bool = False):
        super().__init__()
        self.att = attention
        if attention:
            self.norm1 = LayerNorm(width)
            self.attn = FSAS(width, bias)
        self.norm2 = LayerNorm(width)
        self.ffn = DFFN(width, expansion, bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.att:
            x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Fuse(nn.Module):
    """A skip (``width`` channels) and the decoder's features fused: 1x1 conv, a feed-forward block, 1x1 conv,
    the two halves added."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.conv = nn.Conv2d(2 * width, 2 * width, 1)
        self.att_channel = Block(2 * width, FUSE_EXPANSION)
        self.conv2 = nn.Conv2d(2 * width, 2 * width, 1)

    def forward(self, decoded: Tensor, skip: Tensor) -> Tensor:
        x = self.conv2(self.att_channel(self.conv(torch.cat((decoded, skip), dim=1))))
        first, second = x.split((self.width, self.width), dim=1)
        return first + second


class Resample(nn.Module):
    """Bilinear resizing by ``scale`` (no corner alignment), then a 3x3 convolution (parameters ``body.1``)."""

    def __init__(self, width: int, out: int, scale: float):
        super().__init__()
        self.scale = scale
        self.body = nn.ModuleList([nn.Identity(), nn.Conv2d(width, out, 3, padding=1, bias=False)])

    def forward(self, x: Tensor) -> Tensor:
        if self.scale < 1:  # bilinear halving of an even size without corner alignment: the mean of 2x2 blocks
            return self.body[1](F.avg_pool2d(x, 2))
        return self.body[1](F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, width: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FFTformer(nn.Module):
    """FFTformer; arguments (the authors' names in brackets):

    channels (``inp_channels``, ``out_channels``): image channels (3 in the released net).
    width (``dim``): channels at the top level (2x, 4x below).
    blocks (``num_blocks``): blocks at levels 1, 2, 3, in the encoder and in the decoder alike (the authors'
        default has a fourth entry, unused).
    refinement_blocks (``num_refinement_blocks``): blocks after the decoder.
    expansion (``ffn_expansion_factor``): the feed-forward expansion (3).
    bias: biases in the blocks' convolutions (False).
    """

    def __init__(self, channels: int = 3, width: int = 48, blocks=(6, 6, 12), refinement_blocks: int = 4,
                 expansion: float = 3.0, bias: bool = False):
        super().__init__()
        blocks = [int(b) for b in blocks]
        if len(blocks) != 3:
            raise ValueError(f"FFTformer: blocks={blocks} has {len(blocks)} entries; give 3 (levels 1, 2, 3)")

        def stage(c: int, count: int, attention: bool) -> nn.Sequential:
            return nn.Sequential(*(Block(c, expansion, bias, attention) for _ in range(count)))

        self.patch_embed = PatchEmbed(channels, width, bias)
        self.encoder_level1 = stage(width, blocks[0], False)
        self.down1_2 = Resample(width, 2 * width, 0.5)
        self.encoder_level2 = stage(2 * width, blocks[1], False)
        self.down2_3 = Resample(2 * width, 4 * width, 0.5)
        self.encoder_level3 = stage(4 * width, blocks[2], False)
        self.decoder_level3 = stage(4 * width, blocks[2], True)
        self.up3_2 = Resample(4 * width, 2 * width, 2.0)
        self.reduce_chan_level2 = nn.Conv2d(4 * width, 2 * width, 1, bias=bias)  # in the authors' net, unused
        self.decoder_level2 = stage(2 * width, blocks[1], True)
        self.up2_1 = Resample(2 * width, width, 2.0)
        self.decoder_level1 = stage(width, blocks[0], True)
        self.refinement = stage(width, refinement_blocks, True)
        self.fuse2 = Fuse(2 * width)
        self.fuse1 = Fuse(width)
        self.output = nn.Conv2d(width, channels, 3, padding=1, bias=bias)
        self.multiple = MULTIPLE

    def forward(self, x: Tensor) -> Tensor:
        x, size = reflect_pad(x, MULTIPLE)
        level1 = self.encoder_level1(self.patch_embed(x))
        level2 = self.encoder_level2(self.down1_2(level1))
        y = self.decoder_level3(self.encoder_level3(self.down2_3(level2)))
        y = self.decoder_level2(self.fuse2(self.up3_2(y), level2))
        y = self.refinement(self.decoder_level1(self.fuse1(self.up2_1(y), level1)))
        return crop(self.output(y) + x, size)


# The authors' released file (kkkls/FFTformer: pretrain_model/fftformer_GoPro.pth, a bare state dict).

def is_fftformer(raw: dict) -> bool:
    state = unwrap(raw)
    return "patch_embed.proj.weight" in state and "fuse1.conv.weight" in state and any(
        k.endswith(".ffn.fft") for k in state)


def count(state: dict, stage: str) -> int:
    j = 0
    while f"{stage}.{j}.norm2.body.weight" in state:
        j += 1
    return j


def net_args_of(state: dict) -> dict:
    """The :class:`FFTformer` arguments a state dict in the authors' layout implies."""
    embed = state["patch_embed.proj.weight"]
    if embed.dim() != 4:
        raise M3LError(f"fftformer: patch_embed.proj.weight has shape {tuple(embed.shape)}, not a convolution's")
    width = int(embed.shape[0])
    hidden = {}  # a level's feed-forward hidden channels: int(its width * expansion)
    for level, stages in ((1, ("encoder_level1", "decoder_level1", "refinement")),
                          (2, ("encoder_level2", "decoder_level2")), (3, ("encoder_level3", "decoder_level3"))):
        key = next((f"{s}.0.ffn.project_in.weight" for s in stages if f"{s}.0.ffn.project_in.weight" in state), None)
        if key is not None:
            hidden[width * 2 ** (level - 1)] = int(state[key].shape[0]) // 2
    if not hidden:
        raise M3LError("fftformer: the file has no block encoder_level1.0, decoder_level1.0 or refinement.0; is it "
                       "complete?")
    widest = max(hidden)
    candidates = [round(hidden[widest] / widest, 2), hidden[widest] / widest, 2.66, 3.0]  # the plainest first
    expansion = next((e for e in candidates if all(int(c * e) == h for c, h in hidden.items())), None)
    if expansion is None:
        raise M3LError(f"fftformer: the feed-forward widths {sorted(hidden.values())} fit no one expansion of the "
                       f"levels' {sorted(hidden)} channels")
    first = "encoder_level1.0" if "encoder_level1.0.ffn.project_in.weight" in state else None
    first = first or next(f"{s}.0" for s in ("decoder_level1", "refinement", "encoder_level2", "decoder_level2",
                                             "encoder_level3", "decoder_level3")
                          if f"{s}.0.ffn.project_in.weight" in state)
    return {"channels": int(embed.shape[1]), "width": width,
            "blocks": [count(state, f"encoder_level{i}") for i in (1, 2, 3)],
            "refinement_blocks": count(state, "refinement"), "expansion": expansion,
            "bias": f"{first}.ffn.project_in.bias" in state}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape."""
    state = {k: v.flatten(1, 2) if k.endswith(".ffn.fft") and v.dim() == 5 else v for k, v in unwrap(raw).items()}
    net_args = net_args_of(state)
    with torch.device("meta"):
        keys = FFTformer(**net_args).state_dict().keys()
    return check_fits(state, {k: k for k in keys}, FFTformer, net_args, "fftformer"), net_args


LAYOUTS = (Layout(name="fftformer", detect=is_fftformer, convert=convert_authors,
                  description="the FFTformer authors' file: fftformer_GoPro.pth"),)


# Weights entry (Kong et al. 2023): the GoPro net, in the repository itself. The paper's Table 1 (GoPro and HIDE,
# tested with the GoPro net; PSNR / SSIM on RGB, no crop; the authors' test.py pads by reflection to 32).
SOURCE = "Kong et al. 2023 (kkkls/FFTformer, pretrain_model/fftformer_GoPro.pth; MIT licence)"
ARCH = {"channels": 3, "width": 48, "blocks": [6, 6, 12], "refinement_blocks": 4, "expansion": 3.0, "bias": False}

WEIGHTS = (
    Weights(model="fftformer", variant="gopro",
            url="https://github.com/kkkls/FFTformer/raw/main/pretrain_model/fftformer_GoPro.pth", sha256=None,
            net=ARCH, layout="fftformer",
            metrics={"gopro/gopro_blur/psnr": 34.21, "gopro/gopro_blur/ssim": 0.969}, protocol=GOPRO_TEST,
            source=SOURCE + "; the paper's Table 1 (GoPro 34.21 dB / 0.969, HIDE 31.62 dB; also on paperswithcode); "
                   "HIDE's input/ target/ pairs: data.input=/input/ data.target=/target/ data.test_sets={hide: DIR}"),
)

FAMILY = register(Family(
    "fftformer", FFTformer, tiny={"width": 4, "blocks": [1, 1, 1], "refinement_blocks": 1, "expansion": 1.0},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""FFTformer (Kong et al. 2023), motion deblurring of RGB images. ``pretrained=True``: ``gopro`` (GoPro
    34.21 dB / 0.969)."""))
