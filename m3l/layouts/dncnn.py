"""DnCNN's released layouts (m3l.models.dncnn.DnCNN, batch norm merged into the convolutions).

- ``matconvnet_dncnn``: the authors' MatConvNet files (cszn/DnCNN ``model/``): DnCNN-S
  ``specifics/sigma=15.mat`` ... (depth 17), DnCNN-B ``GD_Gray_Blind.mat``, CDnCNN-B ``GD_Color_Blind.mat``,
  ``specifics_color/color_sigma=25.mat``, ``DnCNN3.mat`` (depth 20). A ``conv, relu, ..., conv`` stack
  whose output is the noise: the authors' test scripts compute ``input - res(end).x``, as m3l's
  ``x - body(x)``.
- ``kair_dncnn``: KAIR's PyTorch conversions (``dncnn_15.pth``, ``dncnn_25.pth``, ``dncnn_50.pth``,
  ``dncnn_gray_blind.pth``, ``dncnn_color_blind.pth``, ``dncnn3.pth``): ``model.<i>.weight|bias``, the same
  Conv/ReLU sequence as m3l's ``body.<i>``, also ``x - model(x)``.
"""

from __future__ import annotations

import re

import torch

from m3l.layouts import Layout, register
from m3l.layouts.m3l import strip_prefix
from m3l.layouts.matconvnet import convs, is_matconvnet, sequential

TARGET = "m3l.models.dncnn.DnCNN"


def plain_stack(raw: dict) -> bool:
    """A MatConvNet ``conv, relu, ..., conv`` stack (no sub-pixel or concat layer) whose output has the input's channels."""
    if not is_matconvnet(raw):
        return False
    layers = raw["matconvnet"]
    types = [layer["type"] for layer in layers]
    if not types or set(types) - {"conv", "relu", "bnorm"} or types[0] != "conv" or types[-1] != "conv":
        return False
    return layers[0]["weight"].shape[1] == layers[-1]["weight"].shape[0]


def net_args(first: torch.Tensor, count: int) -> dict:
    return {"channels": int(first.shape[1]), "depth": count, "width": int(first.shape[0]), "batch_norm": False}


def convert_matconvnet(raw: dict) -> tuple[dict, dict]:
    layers = convs(raw)
    return sequential(layers), net_args(layers[0]["weight"], len(layers))


KAIR_KEY = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def kair_convs(raw: dict) -> list[int] | None:
    """The indices ``i`` of KAIR's ``model.<i>.weight`` conv layers, or None when ``raw`` is not such a file."""
    state = strip_prefix(raw)
    if not state or not all(KAIR_KEY.match(k) for k in state):
        return None
    return sorted({int(KAIR_KEY.match(k).group(1)) for k in state if state[k].ndim == 4})


def is_kair_dncnn(raw: dict) -> bool:
    indices = kair_convs(raw)
    if not indices:
        return False
    state = strip_prefix(raw)
    first, last = state[f"model.{indices[0]}.weight"], state[f"model.{indices[-1]}.weight"]
    return first.shape[1] == last.shape[0]


def kair_dncnn(raw: dict) -> dict:
    """KAIR's DnCNN (``model.<i>.weight``, the same Conv/ReLU sequence) to m3l's (``body.<i>.weight``)."""
    return {re.sub(r"^model\.", "body.", k): v for k, v in strip_prefix(raw).items()}


def convert_kair(raw: dict) -> tuple[dict, dict]:
    state = kair_dncnn(raw)
    indices = kair_convs(raw)
    return state, net_args(state[f"body.{indices[0]}.weight"], len(indices))


register(Layout(name="matconvnet_dncnn", target=TARGET,
                description="the DnCNN authors' MatConvNet .mat files (sigma=25.mat, GD_Gray_Blind.mat, DnCNN3.mat)",
                detect=plain_stack, convert=convert_matconvnet))
register(Layout(name="kair_dncnn", target=TARGET, description="KAIR's DnCNN .pth files (dncnn_25.pth, dncnn3.pth)",
                detect=is_kair_dncnn, convert=convert_kair))
