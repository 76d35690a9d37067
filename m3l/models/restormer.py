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

The authors' released weights are below the net: their layout and weights entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.models.common import crop, pad_to_multiple
from m3l.models.nafnet import LayerNorm2d

import re

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import COLOR_DENOISING, GOPRO_TEST, NOISE_TESTS, SIDD_TEST, Family, Weights, noise, register, rows


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


# Released layouts.
#
# The Restormer authors' layout (swz30/Restormer, v1.0 release: ``motion_deblurring.pth``,
# ``single_image_defocus_deblurring.pth``, ``deraining.pth``, ``real_denoising.pth``,
# ``gaussian_gray_denoising_blind.pth`` / ``_sigma15|25|50.pth``, ``gaussian_color_denoising_*.pth``).
#
# BasicSR files: ``{"params": state_dict}`` (m3l.checkpoint.state_dict_of). The authors' ``Restormer`` keys (their
# ``basicsr/models/archs/restormer_arch.py``): ``patch_embed.proj``; ``encoder_level1..3`` and ``latent``
# (transformer blocks); ``down1_2``, ``down2_3``, ``down3_4`` (``.body.0``, the conv before the pixel unshuffle);
# ``up4_3``, ``up3_2``, ``up2_1`` (``.body.0``); ``reduce_chan_level3``, ``reduce_chan_level2``;
# ``decoder_level3..1``; ``refinement``; ``output``. A block: ``norm1.body``, ``attn.{temperature, qkv,
# qkv_dwconv, project_out}``, ``norm2.body``, ``ffn.{project_in, dwconv, project_out}``. Layer norms with a
# ``bias`` are ``LayerNorm_type: WithBias`` (deblurring, deraining), without one ``BiasFree`` (the denoising
# models): ``layer_norm`` of :class:`m3l.models.restormer.Restormer`. The released files have no conv biases.
# The dual-pixel defocus model (6 input channels, ``skip_conv``, no global residual) is not supported.

EXPANSION = 2.66  # ffn_expansion_factor of every option file of the authors
# A transformer block's parameters: the authors' name, m3l's.
BLOCK = {"norm1.body.weight": "norm1.weight", "norm1.body.bias": "norm1.bias",
         "attn.temperature": "attention.temperature", "attn.qkv.weight": "attention.qkv.0.weight",
         "attn.qkv_dwconv.weight": "attention.qkv.1.weight", "attn.project_out.weight": "attention.out.weight",
         "norm2.body.weight": "norm2.weight", "norm2.body.bias": "norm2.bias",
         "ffn.project_in.weight": "ffn.inp.0.weight", "ffn.dwconv.weight": "ffn.inp.1.weight",
         "ffn.project_out.weight": "ffn.out.weight"}
ENCODERS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
DECODERS = ("decoder_level3", "decoder_level2", "decoder_level1")  # m3l's decoders run from the bottom


def is_restormer(raw: dict) -> bool:
    state = unwrap(raw)
    return "patch_embed.proj.weight" in state and "output.weight" in state


def count(state: dict, stage: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(stage)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def block_names(state: dict, authors: str, m3l: str, layer_norm: str) -> dict[str, str]:
    names = {}
    for j in range(count(state, authors)):
        names |= {f"{authors}.{j}.{a}": f"{m3l}.{j}.{b}" for a, b in BLOCK.items()
                  if layer_norm == "with_bias" or not a.endswith(".bias")}
    return names


def net_args_of(state: dict) -> dict:
    embed, output = state["patch_embed.proj.weight"], state["output.weight"]
    if "skip_conv.weight" in state or embed.shape[1] != output.shape[0]:
        raise M3LError(f"restormer: the file is a dual-pixel model ({embed.shape[1]} input planes, "
                       f"{output.shape[0]} output, skip_conv): m3l's Restormer restores single images; use "
                       f"single_image_defocus_deblurring.pth")
    if any(k.endswith(("qkv.bias", "project_in.bias", "reduce_chan_level2.bias")) for k in state):
        raise M3LError("restormer: the file has conv biases (bias: True in the authors' options); m3l's "
                       "Restormer has the released files' bias-free convolutions")
    width = int(embed.shape[0])
    try:
        heads = [int(state[f"{stage}.0.attn.temperature"].shape[0]) for stage in ENCODERS]
        hidden = int(state["encoder_level1.0.ffn.project_out.weight"].shape[1])
    except KeyError as error:
        raise M3LError(f"restormer: the file lacks key {error.args[0]} (every level has at least one block in "
                       f"the authors' Restormer); is the file complete?") from None
    expansion = EXPANSION if int(width * EXPANSION) == hidden else round(hidden / width, 4)
    return {"channels": int(embed.shape[1]), "width": width, "num_blocks": [count(state, s) for s in ENCODERS],
            "heads": heads, "refinement_blocks": count(state, "refinement"), "expansion": expansion,
            "layer_norm": "with_bias" if "encoder_level1.0.norm1.body.bias" in state else "bias_free"}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = unwrap(raw)
    net_args = net_args_of(state)
    norm = net_args["layer_norm"]
    names = {"patch_embed.proj.weight": "embed.weight", "output.weight": "output.weight"}
    for i, stage in enumerate(ENCODERS):
        names |= block_names(state, stage, f"encoders.{i}", norm)
    for i, stage in enumerate(DECODERS):
        names |= block_names(state, stage, f"decoders.{i}", norm)
    names |= block_names(state, "refinement", "refinement", norm)
    for i, (down, up) in enumerate(zip(("down1_2", "down2_3", "down3_4"), ("up4_3", "up3_2", "up2_1"))):
        names |= {f"{down}.body.0.weight": f"downs.{i}.0.weight", f"{up}.body.0.weight": f"ups.{i}.0.weight"}
    names |= {"reduce_chan_level3.weight": "reduces.0.weight", "reduce_chan_level2.weight": "reduces.1.weight"}
    return check_fits(state, names, Restormer, net_args, "restormer"), net_args


LAYOUTS = (Layout(name="restormer", detect=is_restormer, convert=convert_authors,
                  description="the Restormer authors' files: motion_deblurring.pth, real_denoising.pth, "
                              "gaussian_gray_denoising_blind.pth, deraining.pth, single_image_defocus_deblurring.pth"),)


# Weights entries (Zamir et al. 2022): {"params": ...} files of the repository's v1.0 release.
RELEASE = "https://github.com/swz30/Restormer/releases/download/v1.0/"
SOURCE = "Zamir et al. 2022 (swz30/Restormer; see the repository's licence)"
ARCH = {"width": 48, "num_blocks": [4, 6, 6, 8], "heads": [1, 2, 4, 8], "refinement_blocks": 4, "expansion": 2.66}
DENOISING = {**ARCH, "layer_norm": "bias_free"}  # LayerNorm_type: BiasFree in their options

WEIGHTS = (
    Weights(model="restormer", variant="motion_deblurring", url=RELEASE + "motion_deblurring.pth", sha256=None,
            net={"channels": 3, **ARCH}, layout="restormer", protocol=GOPRO_TEST,
            source=SOURCE + "; also HIDE 31.22 dB (its input/ target/ pairs: data.input=/input/ data.target=/target/)",
            metrics={"gopro/gopro_blur/psnr": 32.92, "gopro/gopro_blur/ssim": 0.961}),
    Weights(model="restormer", variant="real_denoising", url=RELEASE + "real_denoising.pth", sha256=None,
            net={"channels": 3, **DENOISING}, layout="restormer", source=SOURCE, protocol=SIDD_TEST,
            metrics={"sidd/real/psnr": 40.02, "sidd/real/ssim": 0.960}),
    Weights(model="restormer", variant="gaussian_gray_blind", url=RELEASE + "gaussian_gray_denoising_blind.pth",
            sha256=None, net={"channels": 1, **DENOISING}, layout="restormer", source=SOURCE,
            metrics=rows({"set12": noise((33.35, 31.04, 28.01)), "bsd68": noise((31.95, 29.51, 26.62))}),
            protocol=("data.channels=1", "data.test_sets={set12:{data_root}/set12,bsd68:{data_root}/bsd68}",
                      NOISE_TESTS)),  # preset=paper is Restormer's GoPro protocol
    Weights(model="restormer", variant="gaussian_color_blind", url=RELEASE + "gaussian_color_denoising_blind.pth",
            sha256=None, net={"channels": 3, **DENOISING}, layout="restormer", source=SOURCE, protocol=COLOR_DENOISING,
            metrics=rows({"cbsd68": noise((34.39, 31.78, 28.59))})),
    # Deraining (Rain13K training), Deraining/Options/Deraining_Restormer.yml: the paper's net, WithBias norms.
    # Their test.py pads to a multiple of 8 by reflection (as the net here), evaluate_PSNR_SSIM.m measures the
    # saved 8-bit PNGs on MATLAB rgb2ycbcr's Y, no crop: data=deraining. Paper Table 1, PSNR / SSIM.
    Weights(model="restormer", variant="deraining", url=RELEASE + "deraining.pth", sha256=None,
            net={"channels": 3, **ARCH}, layout="restormer",
            source=SOURCE + "; numbers: paper Table 1 (Y PSNR / SSIM; the PSNRs checked against a copy of the "
                   "table, the SSIMs as read from the paper, not re-checked)",
            metrics=rows({"test100": {"rain": (32.00, 0.923)}, "rain100h": {"rain": (31.46, 0.904)},
                          "rain100l": {"rain": (38.99, 0.978)}, "test2800": {"rain": (34.18, 0.944)},
                          "test1200": {"rain": (33.19, 0.926)}}, ("psnr", "ssim")),
            protocol=("data=deraining", "data.test_sets={" + ",".join(
                f"{s}:{{data_root}}/{s}" for s in ("test100", "rain100h", "rain100l", "test2800", "test1200")) + "}")),
    # Single-image defocus deblurring (DPDD, 8-bit), Defocus_Deblurring/Options/DefocusDeblur_Single_8bit_
    # Restormer.yml: the paper's net, WithBias norms, dual_pixel_task false (the dual-pixel file, 6 input
    # channels, is refused). test_single_image_defocus_deblur.py: the 76 DPDD test pairs inputC/ -> target/ read
    # as 8-bit, whole 1680x1120 images, RGB PSNR on the float output (here rounded to 8 bits first: a few
    # hundredths of a dB at most) and skimage's SSIM (7x7 uniform windows; m3l's is Wang's 11x11 Gaussian one, so
    # SSIM is not comparable to the third decimal). Paper Table 3, combined (indoor 28.87 / 0.882, outdoor
    # 23.24 / 0.743 are the authors' indoor_labels.npy / outdoor_labels.npy subsets of the same folder).
    Weights(model="restormer", variant="defocus_deblurring", url=RELEASE + "single_image_defocus_deblurring.pth",
            sha256=None, net={"channels": 3, **ARCH}, layout="restormer",
            source=SOURCE + "; numbers: paper Table 3, single-image, combined (as read from the paper, not re-checked)",
            metrics={"dpdd/defocus/psnr": 25.98, "dpdd/defocus/ssim": 0.811},
            protocol=("data=paired", "data.input=/inputC/", "data.target=/target/", "data.degradation=defocus",
                      "data.test_sets={dpdd:{data_root}/dpdd}")),
)

FAMILY = register(Family(
    "restormer", Restormer, tiny={"width": 4, "num_blocks": [1, 1], "heads": [1, 1], "refinement_blocks": 1},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""Restormer (Zamir et al. 2022), deblurring, deraining, defocus deblurring, real and Gaussian denoising.
    ``pretrained=True``: motion deblurring (GoPro 32.92 dB); ``variant``:
    ``real_denoising``, ``gaussian_gray_blind``, ``gaussian_color_blind``, ``deraining`` (Rain13K),
    ``defocus_deblurring`` (single-image, DPDD)."""))
