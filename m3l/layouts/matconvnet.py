"""MatConvNet SimpleNN files (``.mat``, MATLAB v7.3): the DnCNN and FFDNet authors' released weights.

A v7.3 ``.mat`` file is HDF5 (h5py reads it; scipy.io does not). MATLAB saves the struct ``net`` with a
cell array ``net.layers``: an ``(N, 1)`` dataset of object references, each to a group with the layer's
``type`` and ``name`` (char arrays stored as uint16), ``weights`` (a cell of references to the filter and
the bias, or an empty cell), and its options (``pad``, ``stride``, ``dilate``, ``leak``, ``scale``).

HDF5 stores MATLAB's column-major arrays with their axes reversed: a filter, ``H x W x Cin x Cout`` in
MATLAB, reads as ``(Cout, Cin, W, H)``, and trailing singleton axes are dropped by MATLAB (a one-output
filter reads as ``(Cin, W, H)``). :func:`read` returns the layers with filters in PyTorch's
``(Cout, Cin, H, W)`` and biases as ``(Cout,)``; MatConvNet's ``vl_nnconv`` is a cross-correlation, as
``torch.nn.Conv2d``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from m3l.errors import M3LError

# Layers that only train the net (losses), dropped at the end of a file's layer list.
LOSSES = {"loss", "euclideanloss", "pdist", "softmaxloss", "l2loss", "l1loss"}
OPTIONS = ("pad", "stride", "dilate", "leak", "scale")


def _text(dataset) -> str:
    return "".join(map(chr, np.asarray(dataset).ravel()))


def _empty(dataset) -> bool:
    return bool(dataset.attrs.get("MATLAB_empty", 0))


def _filter(array: np.ndarray) -> torch.Tensor:
    """A MatConvNet filter as read by h5py (``(Cout, Cin, W, H)``, leading singletons missing) in torch's layout."""
    array = array.reshape((1,) * (4 - array.ndim) + array.shape)
    return torch.from_numpy(np.ascontiguousarray(array.swapaxes(2, 3))).float()


def _layer(file, group, path) -> dict:
    layer = {"type": _text(group["type"]) if "type" in group else "",
             "name": _text(group["name"]) if "name" in group else ""}
    for option in OPTIONS:
        if option in group and not _empty(group[option]):
            layer[option] = [float(v) for v in np.asarray(group[option]).ravel()]
    if "weights" in group and not _empty(group["weights"]):
        arrays = [file[ref] for ref in np.asarray(group["weights"]).ravel()]
        arrays = [None if _empty(a) else np.asarray(a) for a in arrays]
        if layer["type"] == "conv":
            if len(arrays) != 2 or arrays[0] is None:
                raise M3LError(f"pretrained: {path}: conv layer {layer['name']!r} has {len(arrays)} weights "
                               f"arrays, not a filter and a bias")
            layer["weight"] = _filter(arrays[0])
            bias = arrays[1]
            layer["bias"] = (torch.zeros(layer["weight"].shape[0]) if bias is None
                             else torch.from_numpy(bias.ravel().copy()).float())
        else:
            layer["weights"] = [None if a is None else torch.from_numpy(a.copy()) for a in arrays]
    return layer


def read(path: str | os.PathLike) -> dict:
    """``{"matconvnet": [layer, ...]}`` of the SimpleNN net in ``path``, loss layers at the end dropped.

    Each layer is a dict: ``type``, ``name``, its options as lists of floats, and for ``conv`` layers
    ``weight`` (``(Cout, Cin, H, W)``) and ``bias`` (``(Cout,)``) tensors.
    """
    import h5py

    if not h5py.is_hdf5(path):
        raise M3LError(f"pretrained: {path} is not a MATLAB v7.3 (HDF5) .mat file; save it again in MATLAB with "
                       f"save(FILE, 'net', '-v7.3')")
    with h5py.File(path, "r") as file:
        if "net" not in file or "layers" not in file["net"]:
            found = ", ".join(sorted(file["net"].keys() if "net" in file else file.keys()))
            raise M3LError(f"pretrained: {path} has no MatConvNet SimpleNN net.layers (it has {found}); DagNN "
                           f"nets (net.vars / net.params) are not supported")
        refs = np.asarray(file["net"]["layers"]).ravel()
        layers = [_layer(file, file[ref], path) for ref in refs]
    while layers and layers[-1]["type"].lower() in LOSSES:
        layers.pop()
    return {"matconvnet": layers}


def is_matconvnet(raw: dict) -> bool:
    return isinstance(raw.get("matconvnet"), list)


def convs(raw: dict, path: str = "the file") -> list[dict]:
    """The conv layers of a plain ``conv, relu, conv, relu, ..., conv`` stack (3x3, stride 1, pad 1), checked."""
    layers = raw["matconvnet"]
    types = [layer["type"] for layer in layers]
    if "bnorm" in types:
        raise M3LError(f"pretrained: {path} has batch norm layers; merge them into the convolutions first "
                       f"(the authors' vl_simplenn_mergebnorm), as in their released files")
    expected = ["conv", "relu"] * ((len(types) - 1) // 2) + ["conv"]
    if types != expected:
        raise M3LError(f"pretrained: {path}: layers {'/'.join(types)} are not a conv, relu, ..., conv stack")
    for layer in layers[::2]:
        if layer["weight"].shape[-2:] != (3, 3) or layer.get("stride", [1])[0] != 1 or layer.get("pad", [1])[0] != 1:
            raise M3LError(f"pretrained: {path}: conv layer {layer['name']!r} is not 3x3, stride 1, pad 1")
    for layer in layers[1::2]:
        if layer.get("leak", [0])[0] != 0:
            raise M3LError(f"pretrained: {path}: layer {layer['name']!r} is a leaky ReLU; m3l's nets use ReLU")
    return layers[::2]


def sequential(layers: list[dict], prefix: str = "body") -> dict:
    """The state dict of ``nn.Sequential(conv, ReLU, conv, ReLU, ..., conv)`` (conv ``k`` at index ``2k``)."""
    state = {}
    for k, layer in enumerate(layers):
        state[f"{prefix}.{2 * k}.weight"] = layer["weight"]
        state[f"{prefix}.{2 * k}.bias"] = layer["bias"]
    return state
