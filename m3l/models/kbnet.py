"""KBNet (Zhang, Li, Shi, He, Song, Wang, Qin, Li: "KBNet: Kernel Basis Network for Image Restoration", arXiv
2303.02881, 2023): the small variant ``KBNet_s``, the authors' real-noise (SIDD) denoiser.

A 4-level U-Net in NAFNet's shape (a 3x3 convolution in, encoder blocks then a 2x2 stride-2 convolution doubling
the channels at each level, middle blocks, a 1x1 convolution and a pixel shuffle halving them on the way up, skips
added, a 3x3 convolution out plus the input) whose blocks are multi-axis feature fusion (MFF) blocks: after a
channel layer norm, three branches multiplied together (a channel attention from the global mean, a 1x1 then
3x3 (``lightweight``) or grouped 5x5 convolution, and the kernel basis attention), a 1x1 convolution, a learned
per-channel scale, plus the input; then a gated feed-forward (1x1, split in halves multiplied, 1x1), scaled, plus.

Kernel basis attention (KBA): ``32`` learned kernel bases, each a grouped 3x3 convolution (groups of 4 channels)
with a bias; at each pixel a 1x1 / depthwise-convolution branch predicts 32 coefficients, the pixel's kernel is
the coefficients' mix of the bases, applied to the pixel's 3x3 neighbourhood (of a 1x1-then-depthwise-3x3
projection of the features), scaled and added to that projection.

The image is padded with zeros at the bottom and right to a multiple of ``2 ** levels`` (16) and the result
cropped back, as the authors' forward does (``check_image_size``); their SIDD test runs the 256x256 validation
blocks whole (no padding).

State-dict keys are the authors' (``intro``, ``encoders.<i>.<j>``, ``downs.<i>``, ``middle_blks.<j>``,
``ups.<i>.0``, ``decoders.<i>.<j>``, ``ending``; in a block ``w`` / ``b`` the kernel bases, ``norm1``, ``sca.1``,
``conv11.0`` / ``.1``, ``conv1``, ``conv21``, ``conv2.0`` / ``.2``, ``conv211``, ``conv3``, ``norm2``, ``conv4``,
``conv5``, ``ga1``, ``attgamma``, ``beta``, ``gamma``), so the released files load unchanged: the SIDD file is
``{"model": state_dict}``, the Gaussian ones ``{"net": {"module." + key: ...}}``; :func:`is_kbnet` /
:func:`convert_authors` recognise both and give the architecture (``net.pretrained=FILE``).

The authors release their files in OneDrive folders only (no direct link): download ``sidd.pth`` from the folder
linked in their ``Denoising/README.md`` and pass it as ``net.pretrained=FILE``, or put it in torch.hub's cache as
``kbnet_sidd.pth`` for ``net.pretrained=kbnet_sidd``::

    python -m m3l.run.correct model=kbnet net.pretrained=sidd.pth data.correct_dir=PHOTOS serializer.root_dir=OUT
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._blocks import LayerNorm2d
from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import SIDD_TEST, Family, Weights, register
from m3l.models.common import crop, pad_to_multiple

BASES = 32       # kernel bases of a KBA module (the authors' nset)
KERNEL = 3       # their size (k)
GROUP = 4        # channels of a group of the bases' grouped convolution (gc)


class Gate(nn.Module):
    """The channels split in two halves, multiplied (NAFNet's simple gate)."""

    def forward(self, x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


def kernel_basis_attention(x: Tensor, coefficients: Tensor, bases: Tensor, bias: Tensor, groups: int) -> Tensor:
    """Each pixel of ``x`` ``(N, C, H, W)`` convolved with its own 3x3 grouped kernel and bias: the mix of the
    ``bases`` ``(1, B, C * C / groups * 9)`` and ``bias`` ``(1, B, C)`` by the pixel's ``coefficients``
    ``(N, B, H, W)``.

    The pixels' 3x3 neighbourhoods (zero beyond the border; channel-major, then row, then column: ``F.unfold``'s
    order) are nine shifted slices of the padded map rather than ``F.unfold``, and height and width are never
    flattened together: torch.export then keeps them symbolic."""
    n, c, h, w = x.shape
    per_group = c // groups
    mix = coefficients.permute(0, 2, 3, 1)  # n, h, w, B
    kernels = (mix @ bases[0]).unflatten(-1, (groups, per_group, per_group * KERNEL ** 2))  # n, h, w, g, c/g, c/g*9
    padded = F.pad(x, (KERNEL // 2,) * 4)
    patches = torch.stack([padded[:, :, i:i + h, j:j + w] for i in range(KERNEL) for j in range(KERNEL)], dim=2)
    patches = patches.permute(0, 3, 4, 1, 2).reshape(n, h, w, groups, per_group * KERNEL ** 2, 1)
    out = (kernels @ patches).flatten(-3) + mix @ bias[0]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


class KBBlock(nn.Module):
    """The MFF block (the authors' ``KBBlock_s``) on ``width`` channels; ``ffn_scale``: the feed-forward's
    expansion (its hidden channels ``int(ffn_scale * width)``, gated to half); ``lightweight``: a depthwise 3x3
    rather than a grouped 5x5 convolution in the convolution branch."""

    def __init__(self, width: int, ffn_scale: float = 2.0, lightweight: bool = False):
        super().__init__()
        if width % GROUP:
            raise ValueError(f"KBNet: {width} channels are not groups of {GROUP} (width must be a multiple of 4)")
        self.groups = width // GROUP
        self.w = nn.Parameter(torch.empty(1, BASES, width * GROUP * KERNEL ** 2))
        self.b = nn.Parameter(torch.empty(1, BASES, width))
        nn.init.kaiming_uniform_(self.w, a=math.sqrt(5))
        bound = 1 / math.sqrt(BASES * self.w.shape[2])  # the fan-in torch gives w (the authors' init)
        nn.init.uniform_(self.b, -bound, bound)
        self.norm1 = LayerNorm2d(width)
        self.norm2 = LayerNorm2d(width)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width, 1))
        spatial = (nn.Conv2d(width, width, 3, padding=1, groups=width) if lightweight
                   else nn.Conv2d(width, width, 5, padding=2, groups=width // 4))
        self.conv11 = nn.Sequential(nn.Conv2d(width, width, 1), spatial)
        self.conv1 = nn.Conv2d(width, width, 1)
        self.conv21 = nn.Conv2d(width, width, 3, padding=1, groups=width)
        inner = min(width, 32)
        self.conv2 = nn.Sequential(nn.Conv2d(width, inner, 3, padding=1, groups=inner), Gate(),
                                   nn.Conv2d(inner // 2, BASES, 1))
        self.conv211 = nn.Conv2d(width, BASES, 1)
        self.conv3 = nn.Conv2d(width, width, 1)
        hidden = int(ffn_scale * width)
        self.conv4 = nn.Conv2d(width, hidden, 1)
        self.conv5 = nn.Conv2d(hidden // 2, width, 1)
        self.gate = Gate()
        self.ga1 = nn.Parameter(torch.full((1, width, 1, 1), 1e-2))
        self.attgamma = nn.Parameter(torch.full((1, BASES, 1, 1), 1e-2))
        self.beta = nn.Parameter(torch.full((1, width, 1, 1), 1e-2))
        self.gamma = nn.Parameter(torch.full((1, width, 1, 1), 1e-2))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        coefficients = self.conv2(y) * self.attgamma + self.conv211(y)
        projected = self.conv21(self.conv1(y))
        kba = kernel_basis_attention(projected, coefficients, self.w, self.b, self.groups) * self.ga1 + projected
        x = x + self.conv3(kba * self.conv11(y) * self.sca(y)) * self.beta
        return x + self.conv5(self.gate(self.conv4(self.norm2(x)))) * self.gamma


class KBNet(nn.Module):
    """KBNet_s; arguments (the authors' names in brackets):

    channels (``img_channel``): image channels, 1 gray or 3 RGB.
    width: channels at the top level (doubled at each level; each level's a multiple of 4).
    encoder_blocks (``enc_blk_nums``), middle_blocks (``middle_blk_num``), decoder_blocks (``dec_blk_nums``):
        MFF blocks at each level down, at the bottom, at each level up (as many levels down as up).
    ffn_scale: the feed-forward expansion (2; the SIDD net 1.5).
    lightweight: a depthwise 3x3 convolution in the blocks' convolution branch rather than a grouped 5x5
        (False; the SIDD net True).
    """

    def __init__(self, channels: int = 3, width: int = 64, encoder_blocks=(2, 2, 4, 8), middle_blocks: int = 12,
                 decoder_blocks=(2, 2, 2, 2), ffn_scale: float = 2.0, lightweight: bool = False):
        super().__init__()
        encoder_blocks, decoder_blocks = [int(b) for b in encoder_blocks], [int(b) for b in decoder_blocks]
        if len(encoder_blocks) != len(decoder_blocks):
            raise ValueError(f"KBNet: encoder_blocks={encoder_blocks} and decoder_blocks={decoder_blocks} give "
                             f"different numbers of levels")

        def blocks(c: int, count: int) -> nn.Sequential:
            return nn.Sequential(*(KBBlock(c, ffn_scale, lightweight) for _ in range(count)))

        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, channels, 3, padding=1)
        widths = [width * 2 ** i for i in range(len(encoder_blocks))]
        self.encoders = nn.ModuleList(blocks(c, count) for c, count in zip(widths, encoder_blocks))
        self.downs = nn.ModuleList(nn.Conv2d(c, 2 * c, 2, stride=2) for c in widths)
        self.middle_blks = blocks(2 * widths[-1] if widths else width, middle_blocks)
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1, bias=False), nn.PixelShuffle(2))
                                 for c in reversed(widths))
        self.decoders = nn.ModuleList(blocks(c, count) for c, count in zip(reversed(widths), decoder_blocks))
        self.multiple = 2 ** len(encoder_blocks)

    def forward(self, x: Tensor) -> Tensor:
        x, size = pad_to_multiple(x, self.multiple, mode="constant")
        y = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            y = encoder(y)
            skips.append(y)
            y = down(y)
        y = self.middle_blks(y)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            y = decoder(up(y) + skip)
        return crop(self.ending(y) + x, size)


# The authors' files (zhangyi-3/KBNet, OneDrive): recognised by their keys.

BLOCK_KEY = "attgamma"  # a parameter no other family's block has


def authors_state(raw: dict) -> dict:
    """The tensors of an authors' file: ``{"model": ...}`` (SIDD), ``{"net": {"module.*": ...}}`` (Gaussian), or a
    bare state dict."""
    for key in ("model", "net"):
        if isinstance(raw.get(key), dict):
            return unwrap(raw[key])
    return unwrap(raw)


def is_kbnet(raw: dict) -> bool:
    state = authors_state(raw)
    return "intro.weight" in state and "ending.weight" in state and any(k.endswith("." + BLOCK_KEY) for k in state)


def count(state: dict, stage: str) -> int:
    """How many blocks ``<stage>.<j>`` the file has."""
    j = 0
    while f"{stage}.{j}.{BLOCK_KEY}" in state:
        j += 1
    return j


def net_args_of(state: dict) -> dict:
    """The :class:`KBNet` arguments a state dict in the authors' layout implies."""
    intro = state["intro.weight"]
    if intro.dim() != 4:
        raise M3LError(f"kbnet: intro.weight has shape {tuple(intro.shape)}, not a convolution's")
    levels = 0
    while f"downs.{levels}.weight" in state:
        levels += 1
    width = int(intro.shape[0])
    first = next((f"{s}.0" for s in ("encoders.0", "middle_blks") if f"{s}.0.conv4.weight" in state), None)
    if first is None:
        raise M3LError("kbnet: the file has no block encoders.0.0 or middle_blks.0 (conv4.weight); is it complete?")
    hidden, c = state[f"{first}.conv4.weight"].shape[:2]
    spatial = state.get(f"{first}.conv11.1.weight")
    return {"channels": int(intro.shape[1]), "width": width,
            "encoder_blocks": [count(state, f"encoders.{i}") for i in range(levels)],
            "middle_blocks": count(state, "middle_blks"),
            "decoder_blocks": [count(state, f"decoders.{i}") for i in range(levels)],
            "ffn_scale": int(hidden) / int(c), "lightweight": spatial is not None and spatial.shape[-1] == 3}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape."""
    state = authors_state(raw)
    net_args = net_args_of(state)
    with torch.device("meta"):
        keys = KBNet(**net_args).state_dict().keys()
    return check_fits(state, {k: k for k in keys}, KBNet, net_args, "kbnet"), net_args


LAYOUTS = (Layout(name="kbnet", detect=is_kbnet, convert=convert_authors,
                  description="the KBNet authors' KBNet_s files: sidd.pth ({'model': ...}), gau_color_25.pth"),)


# Weights entry (Zhang et al. 2023): the SIDD net, tested by the authors on the 1280 SIDD validation blocks
# (256x256, whole, no padding; PSNR / SSIM on RGB: Denoising/test_real_denoising_sidd.py with Options/sidd.yml:
# KBNet_s, lightweight, ffn_scale 1.5). The file is in a OneDrive folder (no direct link): the URL is the folder's.
ONEDRIVE = ("https://mycuhk-my.sharepoint.com/:f:/g/personal/1155135732_link_cuhk_edu_hk/"
            "EofsV3eVcAxNlrW72JXqzRUBhkM1Mzw50pJ3BHlAyMYnVw?e=MeMB5H")
SIDD = {"channels": 3, "width": 64, "encoder_blocks": [2, 2, 4, 8], "middle_blocks": 12,
        "decoder_blocks": [2, 2, 2, 2], "ffn_scale": 1.5, "lightweight": True}

WEIGHTS = (
    Weights(model="kbnet", variant="sidd", url=ONEDRIVE, file="sidd.pth", sha256=None, net=SIDD, layout="kbnet",
            metrics={"sidd/real/psnr": 40.35, "sidd/real/ssim": 0.972}, protocol=SIDD_TEST,
            source="Zhang et al. 2023 (zhangyi-3/KBNet, OneDrive folder of Denoising/README.md: download sidd.pth by "
                   "hand; MIT licence); SIDD sRGB validation blocks, the paper's Table (PSNR 40.35 also on "
                   "paperswithcode; SSIM 0.972 from the paper, not re-checked here)"),
)

FAMILY = register(Family(
    "kbnet", KBNet, tiny={"width": 4, "encoder_blocks": [1], "middle_blocks": 1, "decoder_blocks": [1],
                          "ffn_scale": 1.5, "lightweight": True},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""KBNet (Zhang et al. 2023), KBNet_s, real-noise denoising. ``pretrained=True``: ``sidd``, real camera noise
    of RGB photos
    (SIDD 40.35 dB); the file is in the authors' OneDrive folder only: download ``sidd.pth`` by hand and pass
    ``pretrained="sidd.pth"``."""))
