"""KAIR's DRUNet layout (``drunet_gray.pth``, ``drunet_color.pth`` of cszn/DPIR and cszn/KAIR).

The authors' ``UNetRes`` keys: ``m_head``; ``m_down<l>.<i>.res.{0,2}`` (``blocks`` residual blocks) then
``m_down<l>.<blocks>`` (the 2x2 stride-2 conv), l = 1..3; ``m_body.<i>.res.{0,2}``; ``m_up<l>.0`` (the 2x2
transposed conv) then ``m_up<l>.<1..blocks>.res.{0,2}``; ``m_tail``. The input is the image and the noise
level map (``channels + 1`` planes), as in :class:`m3l.models.drunet.DRUNet`; the released files have no
biases. DPIR's ``drunet_deblocking_color.pth`` / ``_grayscale.pth`` are in this layout too, but their level
map is ``1 - quality / 100`` of the JPEG input, not a noise level. The encoder's names and :func:`check_fits` are shared with FBCNN's layout (m3l/layouts/fbcnn.py).
"""

from __future__ import annotations

import re

import torch

from m3l.errors import M3LError
from m3l.layouts import Layout, register
from m3l.layouts.m3l import strip_prefix

TARGET = "m3l.models.drunet.DRUNet"


def blocks_of(state: dict, prefix: str) -> int:
    """How many residual blocks ``<prefix>.<i>.res.*`` the file has (KAIR's ``sequential`` keeps a lone
    block unwrapped: ``<prefix>.res.*``)."""
    if any(k.startswith(f"{prefix}.res.") for k in state):
        return 1
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.res\.", k))}
    return max(found) + 1 if found else 0


def layers(authors: str, m3l: str, params: tuple[str, ...]) -> dict[str, str]:
    """``{authors' key: m3l's key}`` of one layer's parameters."""
    return {f"{authors}.{p}": f"{m3l}.{p}" for p in params}


def residual(authors: str, first: int, m3l: str, blocks: int, params: tuple[str, ...],
             alone: bool = False) -> dict[str, str]:
    """The names of ``blocks`` residual blocks: the authors' ``<authors>.<first + i>.res.{0,2}``, m3l's
    ``<m3l>.<i>.body.{0,2}``. ``alone``: the blocks are all of their stage, which KAIR's ``sequential``
    leaves unwrapped when there is one (``<authors>.res.{0,2}``)."""
    names = {}
    for i in range(blocks):
        prefix = authors if alone and blocks == 1 else f"{authors}.{first + i}"
        for j in (0, 2):
            names.update(layers(f"{prefix}.res.{j}", f"{m3l}.{i}.body.{j}", params))
    return names


def encoder(blocks: int, params: tuple[str, ...]) -> dict[str, str]:
    """The names of the head and the three levels down (m3l's :class:`m3l.models.drunet.UNetEncoder`)."""
    names = layers("m_head", "encoder.head", params)
    for level in (1, 2, 3):
        names.update(residual(f"m_down{level}", 0, f"encoder.downs.{level - 1}.0", blocks, params))
        names.update(layers(f"m_down{level}.{blocks}", f"encoder.downs.{level - 1}.1", params))
    return names


def net_args_of(state: dict, name: str, body: str) -> dict:
    """The widths and block count implied by a KAIR U-Net file (``body``: the name of its bottom stage)."""
    blocks = blocks_of(state, body)
    try:
        widths = [state["m_head.weight"].shape[0]] + [state[f"m_down{level}.{blocks}.weight"].shape[0]
                                                      for level in (1, 2, 3)]
    except KeyError as error:
        raise M3LError(f"{name}: the file lacks key {error.args[0]} (a 2x2 stride-2 convolution after {blocks} "
                       f"residual blocks); only KAIR's downsample_mode='strideconv' U-Nets are supported") from None
    return {"widths": [int(w) for w in widths], "blocks": blocks}


def check_fits(state: dict, names: dict[str, str], target: type, net_args: dict, name: str) -> dict:
    """m3l's state dict for the authors' ``state``, renamed by ``names`` (the authors' keys to m3l's).

    The file must hold exactly the keys of ``names``, each of the shape that ``target(**net_args)`` (built
    on the meta device: no memory, no time) needs; else one line naming the first key missing, extra or
    of another shape.
    """
    args = " ".join(f"{k}={v}" for k, v in net_args.items())
    missing = [key for key in names if key not in state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise M3LError(f"{name}: the file lacks key {missing[0]}{more} of {target.__name__} {args}; "
                       f"is the file complete?")
    extra = sorted(set(state) - set(names))
    if extra:
        raise M3LError(f"{name}: unexpected key {extra[0]} {tuple(state[extra[0]].shape)} for {target.__name__} "
                       f"{args}; is this file in another layout?")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in target(**net_args).state_dict().items()}
    assert set(names.values()) == set(shapes), f"{name}: the names miss {sorted(set(shapes) - set(names.values()))}"
    for key, new in names.items():
        if state[key].shape != shapes[new]:
            raise M3LError(f"{name}: {key} has shape {tuple(state[key].shape)} where {target.__name__} {args} "
                           f"needs {tuple(shapes[new])}")
    return {new: state[key] for key, new in names.items()}


def is_kair_drunet(raw: dict) -> bool:
    return "m_head.weight" in raw and "m_tail.weight" in raw and ("m_body.0.res.0.weight" in raw
                                                                   or "m_body.res.0.weight" in raw)


def convert(raw: dict) -> tuple[dict, dict]:
    from m3l.models.drunet import DRUNet

    state = strip_prefix(raw)
    bias = "m_head.bias" in state
    net_args = {"channels": int(state["m_head.weight"].shape[1]) - 1, **net_args_of(state, "kair_drunet", "m_body"),
                "bias": bias}
    blocks, params = net_args["blocks"], ("weight", "bias") if bias else ("weight",)
    names = encoder(blocks, params) | residual("m_body", 0, "body", blocks, params, alone=True)
    for level in (3, 2, 1):  # m3l's ups run from the bottom: ups.0 is the authors' m_up3
        names |= layers(f"m_up{level}.0", f"ups.{3 - level}.0", params)
        names |= residual(f"m_up{level}", 1, f"ups.{3 - level}.1", blocks, params)
    names |= layers("m_tail", "tail", params)
    return check_fits(state, names, DRUNet, net_args, "kair_drunet"), net_args


register(Layout(name="kair_drunet", target=TARGET, description="KAIR's DRUNet: drunet_gray.pth, drunet_color.pth",
                detect=is_kair_drunet, convert=convert))
