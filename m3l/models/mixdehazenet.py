"""MixDehazeNet (Lu, Xiong, Xu, Chu: "MixDehazeNet: Mix Structure Block for Image Dehazing Network", IJCNN 2024;
arXiv 2305.17654), single-image dehazing.

A 3-level U-Net (widths ``widths``: level 0, 1, 2, then 1, 0 again on the way up) of mix structure blocks, each two
residual halves after a batch norm: (1) a 1x1 then a 5x5 convolution, then three parallel depth-wise convolutions of
dilation 3 (kernels 7, 5, 3: receptive fields 19, 13, 7) concatenated and mixed by a 1x1-GELU-1x1 MLP; (2) three
parallel attentions concatenated and mixed the same way: simple pixel attention (a 1x1 and a depth-wise 3x3
convolution gated by a pooled 1x1 sigmoid), channel attention (pooled, 1x1-GELU-1x1, sigmoid) and pixel attention
(1x1 to width / 8, GELU, 1x1 to one map, sigmoid). Down: 3x3 stride-2 convolutions; up: 1x1 convolutions and pixel
shuffle, the skip (through a 1x1 convolution) fused by selective-kernel fusion and added. The head is a 3x3
convolution, the tail a 3x3 convolution to ``channels + 1`` maps ``K`` (one) and ``B``: the output is
``K * x - B + x``. Every convolution with a spatial kernel pads by reflection (the authors' ``padding_mode='reflect'``).
The released sizes all have widths ``[24, 48, 96, 48, 24]``; depths (blocks of the five stages) ``[2, 2, 4, 2, 2]``
(MixDehazeNet-S, 3,164,944 parameters), ``[4, 4, 8, 4, 4]`` (-B) and ``[8, 8, 16, 8, 8]`` (-L, 12,416,908: the paper's
12.4M); -T, ``[1, 1, 2, 1, 1]``, has no released file.

Value range: the authors' code (DehazeFormer's) maps images to [-1, 1] (``x * 2 - 1``) before the net and its output
back (``clamp(-1, 1) * 0.5 + 0.5``); m3l's :class:`MixDehazeNet` takes and returns [0, 1] images like m3l's other
nets and does both mappings inside, so its output equals the authors' output after their mapping (the clamp is m3l's
saving / metrics' as for every net). The forward pads the image at the bottom and right to a multiple of 4 by
reflection and crops the result, as the authors' forward does (``check_image_size``). Reflection padding of a map no
larger than the padding (the authors' net fails there: an image under 40 pixels meets it at the deepest level, whose
dilated convolutions pad by 9) repeats the reflection periodically, so any size runs; from 40 pixels on the output is
the authors'.

State-dict keys are the authors' (``patch_embed.proj``, ``layer1.blocks.<i>.conv3_19``, ``...Wv.0``, ``...mlp2.2``,
``fusion1.mlp.0``, ``patch_unembed.proj.0``, ...); their files are training checkpoints ``{"state_dict": ...}`` of an
``nn.DataParallel`` (``module.`` keys), which :func:`is_mixdehazenet` / :func:`convert_authors` recognise, giving the
architecture (``net.pretrained=FILE``); :data:`WEIGHTS` lists them (the registry's table).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import Family, Weights, register
from m3l.models.common import crop

MULTIPLE = 4  # the authors' forward pads to a multiple of 4 (their patch_size): two 2x downsamplings


def mirror_index(size, start: int, stop_extra, folds: int, device) -> Tensor:
    """Indices ``start .. size - 1 + stop_extra`` of a line of ``size`` pixels, reflected at its ends (edge not
    repeated, as ``F.pad(mode="reflect")``), periodically where the padding exceeds the line: ``folds`` reflections
    cover a padding of ``2 * (folds - 1)`` pixels at least. No remainder by the (possibly symbolic) size, for
    torch.export and ONNX."""
    index = torch.arange(start, size + stop_extra, device=device)
    last = size - 1
    for _ in range(folds):
        index = last - (last - index.abs()).abs()
    return index.clamp(0, last)


def mirror_pad(x: Tensor, pad: int) -> Tensor:
    """``x`` padded by ``pad`` pixels on every side by reflection (:func:`mirror_index`)."""
    h, w = x.shape[-2:]
    folds = pad // 2 + 2
    rows = mirror_index(h, -pad, pad, folds, x.device)
    cols = mirror_index(w, -pad, pad, folds, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


class ReflectConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding=p, padding_mode="reflect")`` (same parameters), its padding by :func:`mirror_pad`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, **kwargs)
        self.reflect = padding

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(mirror_pad(x, self.reflect) if self.reflect else x)


def mlp(width: int) -> nn.Sequential:
    """The three concatenated branches mixed back to ``width``: 1x1 to 4x, GELU, 1x1."""
    return nn.Sequential(nn.Conv2d(3 * width, 4 * width, 1), nn.GELU(), nn.Conv2d(4 * width, width, 1))


class MixStructureBlock(nn.Module):
    """The mix structure block: multi-scale large kernels, then three parallel attentions (both residual, each after
    a batch norm). ``width`` must be 8 or more (the pixel attention's width / 8 channels)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(width)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv1 = nn.Conv2d(width, width, 1)
        self.conv2 = ReflectConv2d(width, width, 5, padding=2)
        self.conv3_19 = ReflectConv2d(width, width, 7, padding=9, groups=width, dilation=3)
        self.conv3_13 = ReflectConv2d(width, width, 5, padding=6, groups=width, dilation=3)
        self.conv3_7 = ReflectConv2d(width, width, 3, padding=3, groups=width, dilation=3)
        self.Wv = nn.Sequential(nn.Conv2d(width, width, 1), ReflectConv2d(width, width, 3, padding=1, groups=width))
        self.Wg = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width, 1), nn.Sigmoid())
        self.ca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width, 1), nn.GELU(),
                                nn.Conv2d(width, width, 1), nn.Sigmoid())
        self.pa = nn.Sequential(nn.Conv2d(width, width // 8, 1), nn.GELU(), nn.Conv2d(width // 8, 1, 1), nn.Sigmoid())
        self.mlp = mlp(width)
        self.mlp2 = mlp(width)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(self.norm1(x)))
        x = x + self.mlp(torch.cat((self.conv3_19(y), self.conv3_13(y), self.conv3_7(y)), dim=1))
        y = self.norm2(x)
        return x + self.mlp2(torch.cat((self.Wv(y) * self.Wg(y), self.ca(y) * y, self.pa(y) * y), dim=1))


class Stage(nn.Module):
    """``depth`` mix structure blocks (the authors' ``BasicLayer``: ``blocks``)."""

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.blocks = nn.ModuleList(MixStructureBlock(width) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Embed(nn.Module):
    """A 3x3 reflection-padded convolution of stride ``stride`` (the authors' ``PatchEmbed``: ``proj``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.proj = ReflectConv2d(in_channels, out_channels, 3, padding=1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Unembed(nn.Module):
    """A convolution to ``out_channels * scale**2`` maps, then pixel shuffle by ``scale`` (``PatchUnEmbed``)."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, kernel: int = 1):
        super().__init__()
        conv = (ReflectConv2d(in_channels, out_channels * scale ** 2, kernel, padding=kernel // 2) if kernel > 1
                else nn.Conv2d(in_channels, out_channels * scale ** 2, 1))
        self.proj = nn.Sequential(conv, nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class SKFusion(nn.Module):
    """Selective-kernel fusion of two maps: softmax weights per channel over the two, from their pooled sum."""

    def __init__(self, width: int, branches: int = 2, reduction: int = 8):
        super().__init__()
        hidden = max(width // reduction, 4)
        self.branches = branches
        self.mlp = nn.Sequential(nn.Conv2d(width, hidden, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, width * branches, 1, bias=False))

    def forward(self, features: list[Tensor]) -> Tensor:
        stacked = torch.stack(features, dim=1)  # N, branches, C, H, W
        weights = self.mlp(stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        weights = weights.unflatten(1, (self.branches, -1)).softmax(dim=1)
        return (stacked * weights).sum(dim=1)


class MixDehazeNet(nn.Module):
    """MixDehazeNet on [0, 1] images; arguments (the authors' names in brackets):

    channels (``in_chans``; ``out_chans`` is channels + 1): image channels (the authors' nets: 3, RGB).
    widths (``embed_dims``): channels of the five stages (levels 0, 1, 2, 1, 0): the 2nd equals the 4th, the 1st
        the 5th, each 8 or more.
    depths: mix structure blocks of the five stages (S: 2-2-4-2-2, B: 4-4-8-4-4, L: 8-8-16-8-8).
    """

    def __init__(self, channels: int = 3, widths=(24, 48, 96, 48, 24), depths=(8, 8, 16, 8, 8)):
        super().__init__()
        widths, depths = [int(w) for w in widths], [int(d) for d in depths]
        if len(widths) != 5 or len(depths) != 5 or widths[1] != widths[3] or widths[0] != widths[4]:
            raise ValueError(f"MixDehazeNet: widths={widths} depths={depths}; give 5 of each (levels 0, 1, 2, 1, 0), "
                             f"the 2nd width equal to the 4th and the 1st to the 5th")
        if min(widths) < 8:
            raise ValueError(f"MixDehazeNet: widths={widths}; each must be 8 or more (pixel attention: width / 8)")
        self.channels = channels
        self.patch_embed = Embed(channels, widths[0], 1)
        self.layer1 = Stage(widths[0], depths[0])
        self.patch_merge1 = Embed(widths[0], widths[1], 2)
        self.skip1 = nn.Conv2d(widths[0], widths[0], 1)
        self.layer2 = Stage(widths[1], depths[1])
        self.patch_merge2 = Embed(widths[1], widths[2], 2)
        self.skip2 = nn.Conv2d(widths[1], widths[1], 1)
        self.layer3 = Stage(widths[2], depths[2])
        self.patch_split1 = Unembed(widths[2], widths[3], 2)
        self.fusion1 = SKFusion(widths[3])
        self.layer4 = Stage(widths[3], depths[3])
        self.patch_split2 = Unembed(widths[3], widths[4], 2)
        self.fusion2 = SKFusion(widths[4])
        self.layer5 = Stage(widths[4], depths[4])
        self.patch_unembed = Unembed(widths[4], channels + 1, 1, kernel=3)
        self.multiple = MULTIPLE

    def features(self, x: Tensor) -> Tensor:
        skip1 = self.layer1(self.patch_embed(x))
        skip2 = self.layer2(self.patch_merge1(skip1))
        y = self.patch_split1(self.layer3(self.patch_merge2(skip2)))
        y = self.fusion1([y, self.skip2(skip2)]) + y
        y = self.patch_split2(self.layer4(y))
        y = self.fusion2([y, self.skip1(skip1)]) + y
        return self.patch_unembed(self.layer5(y))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = x * 2 - 1  # the authors' value range
        rows = mirror_index(h, 0, (h + MULTIPLE - 1) // MULTIPLE * MULTIPLE - h, 3, x.device)
        cols = mirror_index(w, 0, (w + MULTIPLE - 1) // MULTIPLE * MULTIPLE - w, 3, x.device)
        x = x.index_select(-2, rows).index_select(-1, cols)
        k, b = self.features(x).split((1, self.channels), dim=1)
        return crop(k * x - b + x, (h, w)) * 0.5 + 0.5


# The authors' released files: training checkpoints {"state_dict": {"module.<key>": ...}, ...}.

def is_mixdehazenet(raw: dict) -> bool:
    """The authors' MixDehazeNet state dict: its head, a mix structure block's dilated kernel and its fusions."""
    state = unwrap(raw)
    return ("patch_embed.proj.weight" in state and "fusion1.mlp.0.weight" in state
            and "layer1.blocks.0.conv3_19.weight" in state)


def stage_depth(state: dict, stage: str) -> int:
    depth = 0
    while f"{stage}.blocks.{depth}.conv1.weight" in state:
        depth += 1
    return depth


def net_args_of(state: dict) -> dict:
    """The :class:`MixDehazeNet` arguments a state dict in the authors' layout implies."""
    convs = ("patch_embed.proj.weight", "patch_merge1.proj.weight", "patch_merge2.proj.weight",
             "layer4.blocks.0.conv1.weight", "layer5.blocks.0.conv1.weight")
    for key in convs[:3]:
        if state[key].dim() != 4:
            raise M3LError(f"mixdehazenet: {key} has shape {tuple(state[key].shape)}, not a convolution's")
    if any(key not in state for key in convs[3:]):
        missing = next(key for key in convs[3:] if key not in state)
        raise M3LError(f"mixdehazenet: the file lacks key {missing}; is the file complete?")
    return {"channels": int(state[convs[0]].shape[1]), "widths": [int(state[key].shape[0]) for key in convs],
            "depths": [stage_depth(state, f"layer{i}") for i in range(1, 6)]}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape."""
    state = unwrap(raw)
    net_args = net_args_of(state)
    return check_same_keys(state, MixDehazeNet, net_args, "mixdehazenet"), net_args


LAYOUTS = (Layout(name="mixdehazenet", detect=is_mixdehazenet, convert=convert_authors,
                  description="the MixDehazeNet authors' checkpoints: indoor/MixDehazeNet-l.pth, "
                              "outdoor/MixDehazeNet-b.pth"),)


# Weights entries (Lu et al. 2024): the authors' Google Drive folder (README, "pretrain weights"), one subfolder per
# training set (indoor: RESIDE ITS, outdoor: RESIDE OTS), files MixDehazeNet-s/-b/-l.pth. Direct links are known for
# two files only (spandrel's tests name them); the others are in the folder. Numbers: the paper's abstract gives
# MixDehazeNet-L's 42.62 dB on SOTS indoor; the other sizes' and SOTS-outdoor numbers are in the paper's table, which
# could not be read as text here (the README shows it as an image): not recorded.
FOLDER = "https://drive.google.com/drive/folders/1ep6W4H3vNxshYjq71Tb3MzxrXGgaiM6C"
GDRIVE = "https://drive.google.com/uc?export=download&id="
SOURCE = "Lu et al. 2024 (AmeryXiong/MixDehazeNet, Google Drive; see the repository's licence)"
WIDTHS = [24, 48, 96, 48, 24]
DEPTHS = {"s": [2, 2, 4, 2, 2], "b": [4, 4, 8, 4, 4], "l": [8, 8, 16, 8, 8]}
LINKS = {("indoor", "s"): "1-SH2I3pkLjWouKcld5JnMdSNLPJUwCP8", ("indoor", "b"): "1Ds-uyUQg2VBWga6ZOXKVUeefhR-QTu-O"}
SETS = {"indoor": ("sots_indoor", "RESIDE ITS (indoor)"), "outdoor": ("sots_outdoor", "RESIDE OTS (outdoor)")}
PUBLISHED = {("indoor", "l"): {"sots_indoor/haze/psnr": 42.62}}  # the paper's abstract


def protocol(test_set: str) -> tuple:
    """``m3l.run.test`` overrides measuring one net: the SOTS pairs (``hazy/`` inputs, ``GT/`` targets, same names)."""
    return ("data=dehazing", f"data.test_sets={{{test_set}:{{data_root}}/{test_set}}}")


def entry(kind: str, size: str) -> Weights:
    test_set, trained = SETS[kind]
    link = LINKS.get((kind, size))
    metrics = PUBLISHED.get((kind, size), {})
    return Weights(model="mixdehazenet", variant=f"{kind}_{size}", url=GDRIVE + link if link else FOLDER,
                   file=f"MixDehazeNet-{size}.pth", sha256=None,
                   net={"channels": 3, "widths": list(WIDTHS), "depths": list(DEPTHS[size])}, layout="mixdehazenet",
                   metrics=metrics, protocol=protocol(test_set) if metrics else (),
                   source=f"{SOURCE}; MixDehazeNet-{size.upper()} trained on {trained}, tested on {test_set} "
                          f"(whole images, PSNR of the float output)"
                          + ("" if link else f"; in the Drive folder's {kind}/ (no direct link published): download "
                                             f"it by hand and pass net.pretrained=FILE")
                          + ("" if metrics else "; published numbers not verified here, not recorded"))


# The first is pretrained=True's: the paper's headline net.
WEIGHTS = tuple(entry(kind, size) for kind in ("indoor", "outdoor") for size in ("l", "b", "s"))

FAMILY = register(Family(
    "mixdehazenet", MixDehazeNet, tiny={"widths": [8, 8, 16, 8, 8], "depths": [1, 1, 1, 1, 1]},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""MixDehazeNet (Lu et al. 2024), dehazing, RGB. ``pretrained=True``: ``indoor_l`` (MixDehazeNet-L on RESIDE
    indoor, SOTS indoor 42.62 dB); ``variant``: ``indoor_b``, ``indoor_s``, ``outdoor_l``, ``outdoor_b``,
    ``outdoor_s``."""))
