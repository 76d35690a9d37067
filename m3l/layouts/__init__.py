"""Weights layouts: recognise a released weights file and convert it to m3l's nets.

Authors release weights in their own key layouts (KAIR's ``model.<i>.*``, BasicSR's ``{"params": ...}``,
MatConvNet ``.mat`` files, ``module.`` prefixes of ``nn.DataParallel``, ...). Each :class:`Layout` knows
one of them: ``detect`` says whether a file's contents are in that layout, ``convert`` returns the state
dict of the m3l net it fits and the architecture arguments the file implies (depth, width, channels,
block counts, ...), so a model config's net need not be edited by hand.

One module per family (``m3l/layouts/dncnn.py``, ``ffdnet.py``, ...) registers its layouts with
:func:`register`; :func:`read` reads any file (PyTorch files with ``weights_only=True``, MatConvNet v7.3
``.mat`` files with h5py) and :func:`convert` picks the layout. m3l's own layout (a net's state dict or
an m3l checkpoint) is one layout among the others.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from m3l.errors import M3LError

# The family modules that register layouts, imported on first use (they import torch).
FAMILIES = ("m3l", "dncnn", "ffdnet", "drunet", "fbcnn", "nafnet", "restormer", "fastdvdnet")


@dataclass(frozen=True)
class Layout:
    """One released-weights layout.

    Attributes:
        name: short name (``kair_drunet``), used in the weights table (m3l/hub.py) and in messages.
        target: the m3l net class the file converts to (``m3l.models.drunet.DRUNet``).
        description: what files are in this layout, for messages (``KAIR's DRUNet, drunet_gray.pth``).
        detect: ``detect(raw) -> bool`` on what :func:`read` returned.
        convert: ``convert(raw) -> (state_dict, net_args)``: m3l's state dict and the architecture
            arguments of ``target`` that the file implies.
    """

    name: str
    target: str
    description: str
    detect: Callable[[dict], bool]
    convert: Callable[[dict], tuple[dict, dict]]


LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> Layout:
    LAYOUTS[layout.name] = layout
    return layout


def load_all() -> dict[str, Layout]:
    """Every registered layout (imports the family modules once)."""
    for family in FAMILIES:
        try:
            importlib.import_module(f"m3l.layouts.{family}")
        except ModuleNotFoundError as error:  # a family without a layouts module yet; other import errors raise
            if error.name != f"m3l.layouts.{family}":
                raise
    return LAYOUTS


def read(path: str | os.PathLike) -> dict:
    """The contents of a weights file: a dict of tensors and plain containers.

    PyTorch files are read with ``weights_only=True`` (see m3l.checkpoint.read_checkpoint); MatConvNet
    ``.mat`` files (v7.3, HDF5) are read by :func:`m3l.layouts.matconvnet.read`.
    """
    path = Path(path)
    if not path.is_file():
        raise M3LError(f"pretrained: {path} is not a file (give true, the name of a known entry, or a weights file)")
    if path.suffix.lower() == ".mat":
        from m3l.layouts.matconvnet import read as read_mat

        return read_mat(path)
    from m3l.checkpoint import read_checkpoint

    return read_checkpoint(path, "pretrained:")


def find_layout(raw: dict, path: str | os.PathLike, target: str | None = None) -> Layout:
    """The layout of ``raw`` (read from ``path``); ``target``, a net class, is preferred when several fit."""
    fits = [layout for layout in load_all().values() if layout.detect(raw)]
    if target is not None and any(layout.target == target for layout in fits):
        fits = [layout for layout in fits if layout.target == target]
    if not fits:
        known = "; ".join(f"{layout.name} ({layout.description})" for layout in LAYOUTS.values())
        raise M3LError(f"pretrained: {path} is in no layout m3l knows; known layouts: {known}")
    return fits[0]


def convert(path: str | os.PathLike, target: str | None = None, layout: str | None = None
            ) -> tuple[Layout, dict, dict]:
    """``(layout, state_dict, net_args)`` of the weights file at ``path``.

    ``layout`` forces a layout by name (the weights table knows its files' layouts); else it is recognised,
    preferring those of ``target`` (the net class of the model config).
    """
    raw = read(path)
    chosen = load_all()[layout] if layout else find_layout(raw, path, target)
    state, net_args = chosen.convert(raw)
    return chosen, state, net_args
