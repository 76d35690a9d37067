"""Released weights layouts: recognise a weights file and convert it to an m3l net.

Authors release weights in their own key layouts (KAIR's ``model.<i>.*``, BasicSR's ``{"params": ...}``,
MatConvNet ``.mat`` files, ``module.`` prefixes of ``nn.DataParallel``, ...). A :class:`Layout` knows one of
them: ``detect`` says whether a file's contents are in that layout, ``convert`` returns the state dict of the
m3l net it fits and the architecture arguments the file implies (depth, width, channels, block counts, ...), so
a model config's net need not be edited by hand.

Each family declares its layouts in its own file (``m3l/models/dncnn.py``: ``matconvnet_dncnn``,
``kair_dncnn``) and registers them with the family (:mod:`m3l.models._registry`); m3l's own layout (a net's
state dict, a release of ``python -m m3l.hub``, an m3l checkpoint) is :data:`M3L`, here. This module holds what
several families' converters share:

- :func:`convert` / :func:`find_layout`: read a file (:func:`m3l.checkpoint.read_checkpoint`, the one reader)
  and pick its layout;
- :func:`strip_prefix` / :func:`unwrap`: the net's tensors of a file (:func:`m3l.checkpoint.state_dict_of`,
  the one extractor);
- :func:`check_fits`: the authors' keys renamed to m3l's, each checked against the net built on the ``meta``
  device (one line naming the first key missing, extra or of another shape);
- KAIR's names: :func:`kair_convs` (``model.<i>.*`` conv stacks: DnCNN, FFDNet) and the U-Net names
  :func:`layers`, :func:`residual`, :func:`encoder`, :func:`net_args_of` (DRUNet, FBCNN).

The MatConvNet reader and its conv-stack helpers are :mod:`m3l.models._matconvnet`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from m3l.checkpoint import read_checkpoint, state_dict_of
from m3l.errors import M3LError


@dataclass(frozen=True)
class Layout:
    """One released-weights layout.

    Attributes:
        name: short name (``kair_drunet``), used by weights entries (``Weights.layout``) and in messages.
        description: what files are in this layout, for messages (``KAIR's DRUNet, drunet_gray.pth``).
        detect: ``detect(raw) -> bool`` on what :func:`m3l.checkpoint.read_checkpoint` returned.
        convert: ``convert(raw) -> (state_dict, net_args)``: m3l's state dict and the architecture
            arguments of ``target`` that the file implies.
        target: the m3l net class the file converts to (``m3l.models.drunet.DRUNet``); left empty in a family's
            file, the registry fills in the family's net.
    """

    name: str
    description: str
    detect: Callable[[dict], bool]
    convert: Callable[[dict], tuple[dict, dict]]
    target: str = ""


def all_layouts() -> dict[str, Layout]:
    """Every layout m3l knows: m3l's own, then each family's (imports the families once)."""
    from m3l.models._registry import layouts

    return layouts()


def read(path: str | os.PathLike) -> dict:
    """The contents of a weights file (:func:`m3l.checkpoint.read_checkpoint`, errors starting ``pretrained:``)."""
    return read_checkpoint(path, "pretrained:")


def find_layout(raw: dict, path: str | os.PathLike, target: str | None = None) -> Layout:
    """The layout of ``raw`` (read from ``path``); ``target``, a net class, is preferred when several fit."""
    known = all_layouts()
    fits = [layout for layout in known.values() if layout.detect(raw)]
    if target is not None and any(layout.target == target for layout in fits):
        fits = [layout for layout in fits if layout.target == target]
    if not fits:
        names = "; ".join(f"{layout.name} ({layout.description})" for layout in known.values())
        raise M3LError(f"pretrained: {path} is in no layout m3l knows; known layouts: {names}")
    return fits[0]


def convert(path: str | os.PathLike, target: str | None = None, layout: str | None = None
            ) -> tuple[Layout, dict, dict]:
    """``(layout, state_dict, net_args)`` of the weights file at ``path``.

    ``layout`` forces a layout by name (the weights entries know their files' layouts); else it is recognised,
    preferring those of ``target`` (the net class of the model config).
    """
    raw = read(path)
    chosen = all_layouts()[layout] if layout else find_layout(raw, path, target)
    state, net_args = chosen.convert(raw)
    return chosen, state, net_args


# The extractor, under the names the converters read best.
strip_prefix = state_dict_of  # a bare state dict or a Lightning checkpoint of RestorationModule (net.*)
unwrap = state_dict_of        # BasicSR's {"params": ...}, nn.DataParallel's module.*


# m3l's own layout: a net's state dict (python -m m3l.hub releases) or an m3l checkpoint (net.*).

def is_m3l(raw: dict) -> bool:
    """A checkpoint written by m3l.run.train (it records its config), or a file released by m3l.hub."""
    return "m3l_config" in raw or raw.get("m3l_layout") == 1


def _mapping(value, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise M3LError(f"{key} is a {type(value).__name__}, not a mapping")
    return value


def convert_m3l(raw: dict) -> tuple[dict, dict]:
    """The net's tensors and its architecture arguments, with ``_target_`` (its class) where the file says it:
    a release records ``m3l_target`` and ``m3l_net_args``, a checkpoint its whole config (``m3l_config``).

    These are values read from a file: :func:`m3l.hub.convert_file` accepts them only as the arguments of a class
    m3l's configs know (see :func:`m3l.hub.check_net_args`); the class itself is never imported from here."""
    net = dict(_mapping(_mapping(raw.get("m3l_config"), "m3l_config").get("net"), "m3l_config.net"))
    net.pop("pretrained", None)
    net.update(_mapping(raw.get("m3l_net_args"), "m3l_net_args"))
    if raw.get("m3l_target"):
        net["_target_"] = raw["m3l_target"]
    return strip_prefix(raw), net


M3L = Layout(name="m3l", description="m3l's checkpoints and released weights", detect=is_m3l, convert=convert_m3l)


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


def check_same_keys(state: dict, target: type, net_args: dict, name: str) -> dict:
    """:func:`check_fits` for a net written with the authors' own key names (SCUNet, SwinIR, Uformer, ...): the
    file must hold exactly the keys of ``target(**net_args)``, each of its shape."""
    try:
        with torch.device("meta"):
            keys = target(**net_args).state_dict().keys()
    except (ValueError, TypeError) as error:  # arguments read off the file that build no net
        raise M3LError(f"{name}: {error}") from None
    return check_fits(state, {k: k for k in keys}, target, net_args, name)


# KAIR's plain conv stacks (DnCNN, FFDNet): model.<i>.weight|bias.

KAIR_KEY = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def kair_convs(raw: dict) -> list[int] | None:
    """The indices ``i`` of KAIR's ``model.<i>.weight`` conv layers, or None when ``raw`` is not such a file."""
    state = strip_prefix(raw)
    if not state or not all(KAIR_KEY.match(k) for k in state):
        return None
    return sorted({int(KAIR_KEY.match(k).group(1)) for k in state if state[k].ndim == 4})


def kair_body(raw: dict) -> dict:
    """KAIR's ``model.<i>.*`` keys as m3l's ``body.<i>.*`` (the same Conv/ReLU sequence)."""
    return {re.sub(r"^model\.", "body.", k): v for k, v in strip_prefix(raw).items()}


# KAIR's U-Nets (DRUNet, and FBCNN's encoder): m_head, m_down<l>.<i>.res.{0,2}, m_down<l>.<blocks>, ...

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
