"""FFDNet's released layouts (m3l.models.ffdnet.FFDNet, batch norm merged into the convolutions).

- ``matconvnet_ffdnet``: the authors' MatConvNet files (cszn/FFDNet ``models/FFDNet_gray.mat``, depth 15 width
  64; ``FFDNet_color.mat``, depth 12 width 96): ``SubP`` (scale 1/2), ``concat`` (the noise-level map, sigma/255,
  appended last), ``conv, relu, ..., conv``, ``SubP`` (scale 2). The output is the image, not a residual (their
  test scripts use ``res(end).x``), as m3l's FFDNet. MatConvNet's ``vl_nnSubP`` orders the 4 sub-images of a
  channel by (row, column) offset (0,0), (1,0), (0,1), (1,1); torch's PixelUnshuffle / PixelShuffle
  (0,0), (0,1), (1,0), (1,1): the first conv's input channels and the last conv's output channels are
  permuted [0, 2, 1, 3] within each image channel (the noise-map channel stays last).
- ``kair_ffdnet``: KAIR's PyTorch files (``ffdnet_gray.pth``, ``ffdnet_color.pth``, ``*_clip.pth``):
  ``model.<i>.weight|bias``, with KAIR's ``PixelUnShuffle`` in torch's order and the noise map appended
  after unshuffling, exactly m3l's ``body.<i>``.
"""

from __future__ import annotations

import re

import torch

from m3l.errors import M3LError
from m3l.layouts import Layout, register
from m3l.layouts.dncnn import kair_convs
from m3l.layouts.m3l import strip_prefix
from m3l.layouts.matconvnet import convs, is_matconvnet, sequential

TARGET = "m3l.models.ffdnet.FFDNet"
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
    state = {re.sub(r"^model\.", "body.", k): v for k, v in strip_prefix(raw).items()}
    indices = kair_convs(raw)
    return state, net_args(state[f"body.{indices[0]}.weight"], len(indices))


register(Layout(name="matconvnet_ffdnet", target=TARGET,
                description="the FFDNet authors' MatConvNet .mat files (FFDNet_gray.mat, FFDNet_color.mat)",
                detect=is_matconvnet_ffdnet, convert=convert_matconvnet))
register(Layout(name="kair_ffdnet", target=TARGET, description="KAIR's FFDNet .pth files (ffdnet_gray.pth, ffdnet_color.pth)",
                detect=is_kair_ffdnet, convert=convert_kair))
