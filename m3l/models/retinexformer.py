"""RetinexFormer (Cai, Bian, Lin, Wang, Timofte, Zhang: "Retinexformer: One-stage Retinex-based Transformer for
Low-light Image Enhancement", ICCV 2023; arXiv 2303.06705), low-light enhancement.

One or more stages, each a one-stage Retinex framework: an illumination estimator (the image and its channel mean,
a 1x1 convolution to ``width`` features, a 5x5 convolution grouped by input channel, a 1x1 convolution back to the
image's channels) gives illumination features and a light-up map; the lit-up image ``x * map + x`` goes through a
2-level U-Net of illumination-guided attention blocks (IGAB) whose attention is across channels (a ``d x d`` map per
head of ``width`` channels, queries and keys L2-normalised over the pixels, a learned scale per head), its values
multiplied by the illumination features (taken down the U by their own 4x4 stride-2 convolutions), plus a position
embedding (two depth-wise 3x3 convolutions with a GELU) of the values; each block then a pre-norm feed-forward
(1x1 to 4x, depth-wise 3x3, 1x1 back, GELUs). Down: 4x4 stride-2 convolutions; up: 2x2 transposed convolutions, the
skip concatenated and fused by a 1x1 convolution; the stage adds its output to the lit-up image. ``blocks`` counts
the blocks of level 0 (encoder and decoder), level 1 (encoder and decoder) and the bottleneck. Every released net
has one stage, width 40, blocks ``[1, 2, 2]``: 1,605,701 parameters (the paper's 1.61M).

The authors' test script (``Enhancement/test_from_dataset.py``) pads the image at the bottom and right to a
multiple of 4 by reflection (``F.pad(..., 'reflect')``) and crops the result; so does :class:`RetinexFormer`'s
forward (an image no larger than 4 pixels is padded by repeating its edge, where reflection cannot). Their script
splits images of 3000 pixels or more into two interlaced halves; m3l runs whole images (use tiling for huge ones).

The authors' nets take RGB only (the estimator's input is 3 channels and their mean); m3l's takes ``channels`` and
their mean (1 for gray), the same net for 3. State-dict keys are the authors' (``body.<stage>.estimator.conv1``,
``body.<stage>.denoiser.encoder_layers.<level>.0.blocks.<i>.0.to_q``, ``...blocks.<i>.1.fn.net.0``, ...), so their
BasicSR files (``{"params": ...}``: ``LOL_v1.pth``, ``LOL_v2_real.pth``, ...) load unchanged; :func:`is_retinexformer`
/ :func:`convert_authors` recognise them and give the architecture (``net.pretrained=FILE``), and :data:`WEIGHTS`
lists them (the registry's table).

Published numbers: the paper's Table 1, plain PSNR / SSIM (the authors' default test; their ``--GT_mean`` option
rescales the output to the ground truth's mean gray level, as KinD / LLFlow do, giving 27.18 / 27.71 / 29.04 dB on
LOL-v1 / v2-real / v2-synthetic in their README: not what m3l measures, and not recorded as the entries' numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import Family, Weights, register
from m3l.models.common import crop, pad_to_multiple

MULTIPLE = 4  # the authors' test script pads to a multiple of 4: two 2x downsamplings


class Estimator(nn.Module):
    """The illumination estimator: ``(features, map)`` of an image (the image and its channel mean in)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        if width % (channels + 1):
            raise ValueError(f"RetinexFormer: width={width} is not a multiple of channels + 1 = {channels + 1} "
                             f"(the estimator's grouped convolution)")
        self.conv1 = nn.Conv2d(channels + 1, width, 1)
        self.depth_conv = nn.Conv2d(width, width, 5, padding=2, groups=channels + 1)
        self.conv2 = nn.Conv2d(width, channels, 1)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.depth_conv(self.conv1(torch.cat((image, image.mean(dim=1, keepdim=True)), dim=1)))
        return features, self.conv2(features)


class ChannelAttention(nn.Module):
    """Illumination-guided multi-head self-attention across channels (the authors' ``IG_MSA``) on ``(N, H, W, C)``
    maps: each head's ``d x d`` attention between its key and query channels (each L2-normalised over the pixels,
    times a learned scale), applied to its values times the illumination features; plus a position embedding of
    the values (depth-wise 3x3, GELU, depth-wise 3x3)."""

    def __init__(self, width: int, head_dim: int):
        super().__init__()
        self.heads = width // head_dim
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(width, width, bias=False)
        self.to_v = nn.Linear(width, width, bias=False)
        self.rescale = nn.Parameter(torch.ones(self.heads, 1, 1))
        self.proj = nn.Linear(width, width)
        self.pos_emb = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False, groups=width), nn.GELU(),
                                     nn.Conv2d(width, width, 3, padding=1, bias=False, groups=width))

    def forward(self, x: Tensor, light: Tensor) -> Tensor:
        values = self.to_v(x)

        def heads(t: Tensor) -> Tensor:  # (N, H, W, C) -> (N, heads, d, H*W)
            return t.flatten(1, 2).transpose(1, 2).unflatten(1, (self.heads, -1))

        q = F.normalize(heads(self.to_q(x)), dim=-1)
        k = F.normalize(heads(self.to_k(x)), dim=-1)
        attention = (k @ q.transpose(-2, -1) * self.rescale).softmax(dim=-1)
        out = (attention @ heads(values * light)).flatten(1, 2).transpose(1, 2)  # N, H*W, C
        out = self.proj(out).unflatten(1, x.shape[1:3])
        return out + self.pos_emb(values.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PreNorm(nn.Module):
    """A layer norm, then ``fn`` (the authors' names: ``norm``, ``fn``)."""

    def __init__(self, width: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    """On ``(N, H, W, C)``: 1x1 convolution to 4x channels, GELU, depth-wise 3x3, GELU, 1x1 back (no biases)."""

    def __init__(self, width: int, expansion: int = 4):
        super().__init__()
        hidden = width * expansion
        self.net = nn.Sequential(nn.Conv2d(width, hidden, 1, bias=False), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1, bias=False, groups=hidden), nn.GELU(),
                                 nn.Conv2d(hidden, width, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class IGAB(nn.Module):
    """``count`` illumination-guided attention blocks on ``(N, C, H, W)``: attention (no norm before it), then a
    pre-norm feed-forward, both residual."""

    def __init__(self, width: int, head_dim: int, count: int):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleList((ChannelAttention(width, head_dim),
                                                   PreNorm(width, FeedForward(width)))) for _ in range(count))

    def forward(self, x: Tensor, light: Tensor) -> Tensor:
        x, light = x.permute(0, 2, 3, 1), light.permute(0, 2, 3, 1)
        for attention, feed_forward in self.blocks:
            x = attention(x, light) + x
            x = feed_forward(x) + x
        return x.permute(0, 3, 1, 2)


class Denoiser(nn.Module):
    """The 2-level U-Net of :class:`IGAB` blocks (the authors' ``Denoiser``): heads of ``width`` channels."""

    def __init__(self, channels: int, width: int, blocks):
        super().__init__()
        self.embedding = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.encoder_layers = nn.ModuleList()
        c = width
        for level in range(2):
            self.encoder_layers.append(nn.ModuleList((IGAB(c, width, blocks[level]),
                                                      nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False),
                                                      nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False))))
            c *= 2
        self.bottleneck = IGAB(c, width, blocks[2])
        self.decoder_layers = nn.ModuleList()
        for level in (1, 0):
            self.decoder_layers.append(nn.ModuleList((nn.ConvTranspose2d(c, c // 2, 2, stride=2),
                                                      nn.Conv2d(c, c // 2, 1, bias=False),
                                                      IGAB(c // 2, width, blocks[level]))))
            c //= 2
        self.mapping = nn.Conv2d(width, channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor, light: Tensor) -> Tensor:
        features, skips = self.embedding(x), []
        for blocks, down, light_down in self.encoder_layers:
            features = blocks(features, light)
            skips.append((features, light))
            features, light = down(features), light_down(light)
        features = self.bottleneck(features, light)
        for up, fuse, blocks in self.decoder_layers:
            skip, light = skips.pop()
            features = blocks(fuse(torch.cat((up(features), skip), dim=1)), light)
        return self.mapping(features) + x


class Stage(nn.Module):
    """One stage: estimate the illumination, light the image up (``x * map + x``), restore it."""

    def __init__(self, channels: int, width: int, blocks):
        super().__init__()
        self.estimator = Estimator(channels, width)
        self.denoiser = Denoiser(channels, width, blocks)

    def forward(self, x: Tensor) -> Tensor:
        light, lit = self.estimator(x)
        return self.denoiser(x * lit + x, light)


class RetinexFormer(nn.Module):
    """RetinexFormer; arguments (the authors' names in brackets):

    channels (``in_channels`` = ``out_channels``): image channels (the authors' nets: 3, RGB); ``width`` must be a
        multiple of ``channels + 1``.
    width (``n_feat``): channels at the top level (2x, 4x below); attention heads of ``width`` channels (1, 2, 4).
    stages (``stage``): stages in sequence (1 in every released net; the class's default in their code is 3).
    blocks (``num_blocks``): attention blocks of level 0, level 1 (encoder and decoder alike) and the bottleneck.
    """

    def __init__(self, channels: int = 3, width: int = 40, stages: int = 1, blocks=(1, 2, 2)):
        super().__init__()
        blocks = [int(b) for b in blocks]
        if len(blocks) != 3:
            raise ValueError(f"RetinexFormer: blocks={blocks} has {len(blocks)} entries; give 3 (level 0, level 1, "
                             f"bottleneck)")
        self.body = nn.Sequential(*(Stage(channels, width, blocks) for _ in range(stages)))
        self.multiple = MULTIPLE

    def forward(self, x: Tensor) -> Tensor:
        mode = "reflect" if min(x.shape[-2:]) > MULTIPLE else "replicate"
        x, size = pad_to_multiple(x, MULTIPLE, mode=mode)
        return crop(self.body(x), size)


# The authors' released files (BasicSR's {"params": ...}): recognised by their keys.

HEAD = "body.0.estimator.conv1.weight"
EMBEDDING = "body.0.denoiser.embedding.weight"


def is_retinexformer(raw: dict) -> bool:
    """The authors' RetinexFormer state dict: an estimator and a denoiser in ``body.0``."""
    state = unwrap(raw)
    return HEAD in state and EMBEDDING in state


def count(state: dict, prefix: str, suffix: str) -> int:
    """How many ``<prefix><i><suffix>`` keys, ``i`` from 0, the file has."""
    found = 0
    while f"{prefix}{found}{suffix}" in state:
        found += 1
    return found


def net_args_of(state: dict) -> dict:
    """The :class:`RetinexFormer` arguments a state dict in the authors' layout implies."""
    embedding = state[EMBEDDING]
    if embedding.dim() != 4:
        raise M3LError(f"retinexformer: {EMBEDDING} has shape {tuple(embedding.shape)}, not a convolution's")
    width, channels = int(embedding.shape[0]), int(embedding.shape[1])
    if width % (channels + 1):
        raise M3LError(f"retinexformer: {EMBEDDING} has {width} channels, not a multiple of {channels + 1} (the "
                       f"estimator's groups); is the file complete?")
    denoiser = "body.0.denoiser."
    return {"channels": channels, "width": width, "stages": count(state, "body.", ".estimator.conv1.weight"),
            "blocks": [count(state, f"{denoiser}encoder_layers.0.0.blocks.", ".0.rescale"),
                       count(state, f"{denoiser}encoder_layers.1.0.blocks.", ".0.rescale"),
                       count(state, f"{denoiser}bottleneck.blocks.", ".0.rescale")]}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape."""
    state = unwrap(raw)
    net_args = net_args_of(state)
    return check_same_keys(state, RetinexFormer, net_args, "retinexformer"), net_args


LAYOUTS = (Layout(name="retinexformer", detect=is_retinexformer, convert=convert_authors,
                  description="the RetinexFormer authors' BasicSR files: LOL_v1.pth, LOL_v2_real.pth, FiveK.pth"),)


# Weights entries (Cai et al. 2023): BasicSR files ({"params": ...}) in the authors' Google Drive folder (the README's
# "Testing" section; also Baidu Disk). Their option files (Options/RetinexFormer_*.yml) build every released net
# with stage 1, n_feat 40, num_blocks [1, 2, 2]. Numbers: the paper's Table 1 (also the README's results figure),
# plain PSNR / SSIM on the whole test images, no GT-mean rescaling and no self-ensemble.
FOLDER = "https://drive.google.com/drive/folders/1ynK5hfQachzc8y96ZumhkPPDXzHJwaQV"
GDRIVE = "https://drive.google.com/uc?export=download&id="
SOURCE = "Cai et al. 2023 (caiyuanhao1998/Retinexformer, Google Drive; MIT licence)"
ARCH = {"channels": 3, "width": 40, "stages": 1, "blocks": [1, 2, 2]}
LOL = {  # variant: (set, its low / normal folder names, PSNR, SSIM)
    "lol_v1": ("lol_v1", "low", "high", 25.16, 0.845, "LOL_v1.pth"),
    "lol_v2_real": ("lol_v2_real", "Low", "Normal", 22.80, 0.840, "LOL_v2_real.pth"),
    "lol_v2_synthetic": ("lol_v2_synthetic", "Low", "Normal", 25.67, 0.930, "LOL_v2_synthetic.pth"),
}


def protocol(name: str, low: str, normal: str) -> tuple:
    """``m3l.run.test`` overrides measuring one LOL net: its set's pairs (``<low>/`` inputs, ``<normal>/`` targets,
    same names), plain PSNR / SSIM on RGB."""
    return ("data=lowlight", f"data.input=/{low}/", f"data.target=/{normal}/",
            f"data.test_sets={{{name}:{{data_root}}/{name}}}")


def lol(variant: str) -> Weights:
    name, low, normal, psnr, ssim, file = LOL[variant]
    return Weights(model="retinexformer", variant=variant, url=FOLDER, file=file, sha256=None, net=dict(ARCH),
                   layout="retinexformer", protocol=protocol(name, low, normal),
                   metrics={f"{name}/lowlight/psnr": psnr, f"{name}/lowlight/ssim": ssim},
                   source=f"{SOURCE}; trained on {name}'s training pairs; the paper's Table 1 (plain, no GT mean). "
                          f"The file is in the authors' Drive folder (no direct link published): download "
                          f"{file} by hand and pass net.pretrained=FILE")


def other(variant: str, file: str, url: str, what: str) -> Weights:
    return Weights(model="retinexformer", variant=variant, url=url, file=file, sha256=None, net=dict(ARCH),
                   layout="retinexformer", source=f"{SOURCE}; {what}")


UNVERIFIED = "the paper's Table 1 gives {} (read from the paper as published, not re-checked against its text here); "
NOT_HERE = "a set m3l has no protocol for (the authors' .npy frame folders)"
WEIGHTS = (
    *(lol(v) for v in LOL),
    other("sid", "SID.pth", FOLDER, UNVERIFIED.format("24.44 dB / 0.680") + NOT_HERE),
    other("smid", "SMID.pth", FOLDER, UNVERIFIED.format("29.15 dB / 0.815") + NOT_HERE),
    other("sdsd_indoor", "SDSD_indoor.pth", FOLDER, UNVERIFIED.format("29.77 dB / 0.896") + NOT_HERE),
    other("sdsd_outdoor", "SDSD_outdoor.pth", FOLDER, UNVERIFIED.format("29.84 dB / 0.877") + NOT_HERE),
    other("fivek", "FiveK.pth", GDRIVE + "1oxvPPfhbOwZURTFenWnFp3H3Lakkqw3t",
          "MIT-Adobe FiveK (expert C retouching, the authors' sRGB pairs); the paper's Table 2 number is not "
          "recorded (not verified here)"),
    other("ntire", "NTIRE.pth", GDRIVE + "1K-QR-A_CPe6iAgjE6_04Q20DkkVwaVta",
          "the NTIRE 2024 low-light challenge net (README: 24.61 dB on the challenge's test set, with self-ensemble)"),
)

FAMILY = register(Family(
    "retinexformer", RetinexFormer, tiny={"width": 4, "blocks": [1, 1, 1]},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""RetinexFormer (Cai et al. 2023), low-light enhancement, RGB. ``pretrained=True``: ``lol_v1`` (LOL-v1
    25.16 dB); ``variant``: ``lol_v2_real`` (22.80 dB), ``lol_v2_synthetic`` (25.67 dB), ``sid``, ``smid``,
    ``sdsd_indoor``, ``sdsd_outdoor``, ``fivek``, ``ntire``."""))
