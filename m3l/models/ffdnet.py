"""FFDNet (Zhang, Zuo, Zhang: "FFDNet: Toward a Fast and Flexible Solution for CNN-based Image
Denoising", IEEE TIP 2018).

The noisy image is pixel-unshuffled into 4 half-resolution sub-images, concatenated with a noise-level
map (``sigma``, on the [0, 1] scale, from ``batch["side"]["sigma"]``), processed by a DnCNN-like body
(Conv+ReLU, Conv+BN+ReLU, ..., Conv, no residual) and pixel-shuffled back. Gray: 15 layers of 64
channels (486,148 parameters, the paper's "0.49M"); color: 12 layers of 96 channels. Odd sizes are
padded by replication to even and cropped back.

The authors' released weights (MatConvNet files, KAIR's conversions) are below the net: their layouts and
weights entries.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

from m3l.models.common import crop, level_map, pad_to_multiple

from m3l.errors import M3LError
from m3l.models._layouts import Layout, kair_body, kair_convs, strip_prefix
from m3l.models._matconvnet import convs, is_matconvnet, sequential
from m3l.models._registry import COLOR_DENOISING, GRAY_DENOISING, Family, Weights, noise, register, rows


class FFDNet(nn.Module):
    def __init__(self, channels: int = 1, depth: int = 15, width: int = 64, batch_norm: bool = True):
        super().__init__()
        sub = 4 * channels  # four sub-images per channel
        layers = [nn.Conv2d(sub + 1, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(width, sub, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.down, self.up = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
        self.multiple = 2  # sizes are padded to a multiple of it

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        sub = self.down(x)
        out = self.up(self.body(torch.cat([sub, level_map(sigma, sub)], 1)))
        return crop(out, (h, w))


# Released layouts.
#
# FFDNet's released layouts (m3l.models.ffdnet.FFDNet, batch norm merged into the convolutions).
#
# - ``matconvnet_ffdnet``: the authors' MatConvNet files (cszn/FFDNet ``models/FFDNet_gray.mat``, depth 15 width
#   64; ``FFDNet_color.mat``, depth 12 width 96): ``SubP`` (scale 1/2), ``concat`` (the noise-level map, sigma/255,
#   appended last), ``conv, relu, ..., conv``, ``SubP`` (scale 2). The output is the image, not a residual (their
#   test scripts use ``res(end).x``), as m3l's FFDNet. MatConvNet's ``vl_nnSubP`` orders the 4 sub-images of a
#   channel by (row, column) offset (0,0), (1,0), (0,1), (1,1); torch's PixelUnshuffle / PixelShuffle
#   (0,0), (0,1), (1,0), (1,1): the first conv's input channels and the last conv's output channels are
#   permuted [0, 2, 1, 3] within each image channel (the noise-map channel stays last).
# - ``kair_ffdnet``: KAIR's PyTorch files (``ffdnet_gray.pth``, ``ffdnet_color.pth``, ``*_clip.pth``):
#   ``model.<i>.weight|bias``, with KAIR's ``PixelUnShuffle`` in torch's order and the noise map appended
#   after unshuffling, exactly m3l's ``body.<i>``.

SUBPIXEL = [0, 2, 1, 3]  # MatConvNet's sub-image order in torch's, and back (the permutation is its own inverse)


def subpixel_order(channels: int) -> list[int]:
    return [4 * c + p for c in range(channels) for p in SUBPIXEL]


def is_matconvnet_ffdnet(raw: dict) -> bool:
    if not is_matconvnet(raw):
        return False
    types = [layer["type"] for layer in raw["matconvnet"]]
    return len(types) > 4 and types[:2] == ["SubP", "concat"] and types[-1] == "SubP"


def net_args(first: torch.Tensor, count: int) -> dict:
    return {"channels": (int(first.shape[1]) - 1) // 4, "depth": count, "width": int(first.shape[0]),
            "batch_norm": False}


def convert_matconvnet(raw: dict) -> tuple[dict, dict]:
    layers = raw["matconvnet"]
    down, up = layers[0].get("scale", [0.5])[0], layers[-1].get("scale", [2])[0]
    if (down, up) != (0.5, 2):
        raise M3LError(f"pretrained: a MatConvNet FFDNet with sub-pixel scales {down} and {up}; m3l's FFDNet uses 1/2 and 2")
    layers = [dict(layer) for layer in convs({"matconvnet": layers[2:-1]})]
    channels = layers[-1]["weight"].shape[0] // 4
    if layers[0]["weight"].shape[1] != 4 * channels + 1:
        raise M3LError(f"pretrained: a MatConvNet FFDNet whose first conv takes {layers[0]['weight'].shape[1]} channels, "
                       f"not 4 x {channels} sub-images and the noise map")
    order = subpixel_order(channels)
    layers[0]["weight"] = layers[0]["weight"][:, order + [4 * channels]]
    layers[-1]["weight"], layers[-1]["bias"] = layers[-1]["weight"][order], layers[-1]["bias"][order]
    return sequential(layers), net_args(layers[0]["weight"], len(layers))


def is_kair_ffdnet(raw: dict) -> bool:
    indices = kair_convs(raw)
    if not indices:
        return False
    state = strip_prefix(raw)
    first, last = state[f"model.{indices[0]}.weight"], state[f"model.{indices[-1]}.weight"]
    return last.shape[0] % 4 == 0 and first.shape[1] == last.shape[0] + 1


def convert_kair(raw: dict) -> tuple[dict, dict]:
    state = kair_body(raw)
    indices = kair_convs(raw)
    return state, net_args(state[f"body.{indices[0]}.weight"], len(indices))


LAYOUTS = (
    Layout(name="matconvnet_ffdnet", detect=is_matconvnet_ffdnet, convert=convert_matconvnet,
           description="the FFDNet authors' MatConvNet .mat files (FFDNet_gray.mat, FFDNet_color.mat)"),
    Layout(name="kair_ffdnet", detect=is_kair_ffdnet, convert=convert_kair,
           description="KAIR's FFDNet .pth files (ffdnet_gray.pth, ffdnet_color.pth)"),
)


# Weights entries: the authors' MatConvNet files (cszn/FFDNet models/) and KAIR's conversions.
AUTHORS = "https://github.com/cszn/FFDNet/raw/master/models/"
KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SOURCE = "Zhang et al. 2018 (cszn/FFDNet, MatConvNet; see the repository's terms)"
KAIR_SOURCE = "Zhang et al. 2018 (converted by cszn/KAIR; MIT licence)"
GRAY = {"channels": 1, "batch_norm": False, "depth": 15, "width": 64}
COLOR = {"channels": 3, "batch_norm": False, "depth": 12, "width": 96}
GRAY_ROWS = rows({"set12": noise((32.75, 30.43, 27.32)), "bsd68": noise((31.63, 29.19, 26.29))})
COLOR_ROWS = rows({"cbsd68": noise((33.87, 31.21, 27.96))})

WEIGHTS = (
    Weights(model="ffdnet", variant="gray", url=AUTHORS + "FFDNet_gray.mat",
            sha256="14c231e87a444a9bd85b0b5e174e73b4f6ac50bf4050e75a0d3f4d69f77a2093", net=GRAY,
            layout="matconvnet_ffdnet", metrics=GRAY_ROWS, protocol=GRAY_DENOISING, source=SOURCE),
    Weights(model="ffdnet", variant="color", url=AUTHORS + "FFDNet_color.mat",
            sha256="a4b5a9da21294ab9ba6ed5c6cc459c46dff20c025eb7d3ab82e8e0bb00541793", net=COLOR,
            layout="matconvnet_ffdnet", metrics=COLOR_ROWS,
            protocol=COLOR_DENOISING, source=SOURCE),
    Weights(model="ffdnet", variant="kair_gray", url=KAIR + "ffdnet_gray.pth", sha256=None, net=GRAY,
            layout="kair_ffdnet", metrics=GRAY_ROWS, protocol=GRAY_DENOISING, source=KAIR_SOURCE),
    Weights(model="ffdnet", variant="kair_color", url=KAIR + "ffdnet_color.pth", sha256=None, net=COLOR,
            layout="kair_ffdnet", metrics=COLOR_ROWS, protocol=COLOR_DENOISING, source=KAIR_SOURCE),
)

FAMILY = register(Family(
    "ffdnet", FFDNet, tiny={"depth": 3, "width": 4}, layouts=LAYOUTS, weights=WEIGHTS,
    doc="""FFDNet (Zhang et al. 2018), ``net(x, sigma)`` with sigma on the [0, 1] scale. ``pretrained=True``: the
    authors' gray MatConvNet file (Set12 32.75 / 30.43 / 27.32 dB at sigma 15 / 25 / 50); ``variant="color"``."""))
