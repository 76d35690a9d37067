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

A ``.mat`` file is data from a stranger, and HDF5 can point outside itself: every object is reached through
hard links only (soft and external links are refused), every dataset is checked before a byte of it is read
(no external raw storage, no virtual dataset, a numeric, MATLAB char or object-reference type, a declared size
under :data:`MAX_DATASET` and all of them under :data:`MAX_TOTAL`: far larger than any released net's
filter, far smaller than the machine's memory), and so is every attribute read.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from m3l.errors import M3LError

MAX_DATASET = 512 << 20      # bytes one dataset may declare (the largest released filter is about 9 MiB)
MAX_TOTAL = 2 << 30         # bytes all datasets read may declare together
MAX_ATTRIBUTE = 1 << 16     # bytes of an attribute read (MATLAB_class, MATLAB_empty)
MAX_LAYERS = 10_000

# Layers that only train the net (losses), dropped at the end of a file's layer list.
LOSSES = {"loss", "euclideanloss", "pdist", "softmaxloss", "l2loss", "l1loss"}
OPTIONS = ("pad", "stride", "dilate", "leak", "scale")


class _Reader:
    """Reads an HDF5 file's datasets after checking where their bytes come from and how many there are."""

    def __init__(self, file, path):
        self.file, self.path, self.total = file, path, 0

    def refuse(self, what: str):
        raise M3LError(f"pretrained: {self.path}: {what}; refused (not a MatConvNet file as MATLAB saves it)")

    @staticmethod
    def has(group, name: str) -> bool:
        """Whether ``group`` has a link ``name`` (without following it)."""
        return group.get(name, getlink=True) is not None

    def member(self, group, name: str):
        """``group[name]`` through a hard link only (a soft or external link could point anywhere)."""
        import h5py

        if not isinstance(group, h5py.Group):
            self.refuse(f"{getattr(group, 'name', '?')} is not a struct (an HDF5 group)")
        link = group.get(name, getlink=True)
        if link is None:
            self.refuse(f"{group.name} has no {name}")
        if not isinstance(link, h5py.HardLink):
            self.refuse(f"{group.name}/{name} is a {type(link).__name__} (links outside the file's own objects)")
        return group[name]

    def deref(self, ref):
        import h5py

        if not isinstance(ref, h5py.Reference) or not ref:
            self.refuse("a cell array holds something else than object references")
        try:
            return self.file[ref]
        except Exception as error:  # a dangling or foreign reference
            self.refuse(f"an object reference does not resolve ({type(error).__name__})")

    def attribute(self, obj, name: str, default=None):
        import h5py

        if name not in obj.attrs:
            return default
        attr = h5py.h5a.open(obj.id, name.encode())
        dtype, shape = attr.dtype, attr.shape or ()
        if h5py.check_dtype(vlen=dtype) is not None or dtype.kind not in "biufS":
            self.refuse(f"attribute {name} of {obj.name} is of type {dtype}")
        if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > MAX_ATTRIBUTE:
            self.refuse(f"attribute {name} of {obj.name} declares {shape} x {dtype.itemsize} bytes")
        return obj.attrs[name]

    def read(self, dataset) -> np.ndarray:
        """The dataset's values, after the checks of the module's docstring."""
        import h5py

        if not isinstance(dataset, h5py.Dataset):
            self.refuse(f"{getattr(dataset, 'name', '?')} is a {type(dataset).__name__}, not an array")
        name = dataset.name or "an anonymous dataset"
        if dataset.is_virtual:
            self.refuse(f"{name} is a virtual dataset (its values come from other files)")
        if dataset.external:
            self.refuse(f"{name} stores its values in external files ({dataset.external[0][0]!r}...)")
        dtype = dataset.dtype
        if h5py.check_dtype(vlen=dtype) is not None:
            self.refuse(f"{name} holds variable-length values ({dtype})")
        if h5py.check_dtype(ref=dtype) is h5py.RegionReference or (dtype.kind not in "biuf"
                                                                    and h5py.check_dtype(ref=dtype) is None):
            self.refuse(f"{name} is of type {dtype}, not numbers, characters or object references")
        shape = dataset.shape or ()
        size = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if size > MAX_DATASET:
            self.refuse(f"{name} declares {'x'.join(map(str, shape))} values of {dtype.itemsize} bytes "
                        f"({size / 2**20:.0f} MiB > {MAX_DATASET >> 20} MiB)")
        self.total += size
        if self.total > MAX_TOTAL:
            self.refuse(f"its datasets declare more than {MAX_TOTAL >> 30} GiB together")
        return np.asarray(dataset[()])

    def text(self, dataset) -> str:
        values = self.read(dataset).ravel()
        if values.dtype.kind not in "iu" or values.size > 4096 or (values.size and (values.min() < 0
                                                                                   or values.max() > 0x10FFFF)):
            self.refuse(f"{dataset.name} is not a short MATLAB char array")
        return "".join(map(chr, values.tolist()))

    def empty(self, obj) -> bool:
        value = self.attribute(obj, "MATLAB_empty", 0)
        return bool(np.asarray(value).ravel()[:1].any()) if np.size(value) else False


def _filter(array: np.ndarray) -> torch.Tensor:
    """A MatConvNet filter as read by h5py (``(Cout, Cin, W, H)``, leading singletons missing) in torch's layout."""
    array = array.reshape((1,) * (4 - array.ndim) + array.shape)
    return torch.from_numpy(np.ascontiguousarray(array.swapaxes(2, 3))).float()


def _layer(reader: _Reader, group, path) -> dict:
    import h5py

    if not isinstance(group, h5py.Group):
        reader.refuse("an element of net.layers is not a struct")
    layer = {"type": reader.text(reader.member(group, "type")) if reader.has(group, "type") else "",
             "name": reader.text(reader.member(group, "name")) if reader.has(group, "name") else ""}
    for option in OPTIONS:
        if reader.has(group, option) and not reader.empty(reader.member(group, option)):
            values = reader.read(reader.member(group, option)).ravel()
            if values.dtype.kind not in "biuf" or values.size > 16:
                reader.refuse(f"option {option} of layer {layer['name']!r} is not a few numbers")
            layer[option] = [float(v) for v in values]
    weights = reader.member(group, "weights") if reader.has(group, "weights") else None
    if weights is not None and not reader.empty(weights):
        refs = reader.read(weights).ravel()
        if refs.size > 16:
            reader.refuse(f"layer {layer['name']!r} has {refs.size} weights arrays")
        arrays = [reader.deref(ref) for ref in refs]
        arrays = [None if reader.empty(a) else reader.read(a) for a in arrays]
        if any(a is not None and a.dtype.kind not in "biuf" for a in arrays):
            reader.refuse(f"layer {layer['name']!r} has weights that are not numbers")
        if layer["type"] == "conv":
            if len(arrays) != 2 or arrays[0] is None:
                raise M3LError(f"pretrained: {path}: conv layer {layer['name']!r} has {len(arrays)} weights "
                               f"arrays, not a filter and a bias")
            if not 1 <= arrays[0].ndim <= 4:
                raise M3LError(f"pretrained: {path}: conv layer {layer['name']!r} has a filter of {arrays[0].ndim} "
                               f"dimensions, not 4")
            layer["weight"] = _filter(arrays[0])
            bias = arrays[1]
            if bias is not None and bias.size != layer["weight"].shape[0]:
                raise M3LError(f"pretrained: {path}: conv layer {layer['name']!r} has {bias.size} biases for "
                               f"{layer['weight'].shape[0]} filters")
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
    try:
        with h5py.File(path, "r") as file:
            reader = _Reader(file, path)
            _check_links(reader, file)
            net = reader.member(file, "net") if reader.has(file, "net") else None
            if not isinstance(net, h5py.Group) or not reader.has(net, "layers"):
                found = ", ".join(sorted(str(k)[:40] for k in (net if isinstance(net, h5py.Group) else file).keys()))
                raise M3LError(f"pretrained: {path} has no MatConvNet SimpleNN net.layers (it has {found}); DagNN "
                               f"nets (net.vars / net.params) are not supported")
            refs = reader.read(reader.member(net, "layers")).ravel()
            if refs.size > MAX_LAYERS:
                reader.refuse(f"net.layers has {refs.size} layers")
            layers = [_layer(reader, reader.deref(ref), path) for ref in refs]
    except M3LError:
        raise
    except Exception as error:  # h5py raises OSError, KeyError, TypeError, ... on damaged or unusual files
        raise M3LError(f"pretrained: {path} is a damaged or unusual .mat file ({type(error).__name__}: "
                       f"{(str(error).strip().splitlines() or [''])[0][:200]})") from None
    while layers and layers[-1]["type"].lower() in LOSSES:
        layers.pop()
    return {"matconvnet": layers}


def _check_links(reader: _Reader, file) -> None:
    """Every link in the file is a hard link (soft and external links are refused, wherever they are)."""
    import h5py

    seen, groups, count = set(), [file], 0
    while groups:
        group = groups.pop()
        for name in group:
            count += 1
            if count > 1_000_000:
                reader.refuse("it has more than a million objects")
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                reader.refuse(f"{group.name.rstrip('/')}/{name} is a {type(link).__name__}")
            child = group[name]
            if isinstance(child, h5py.Group) and hash(child.id) not in seen:
                seen.add(hash(child.id))
                groups.append(child)


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
