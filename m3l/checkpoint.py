"""The one route of weights into a net: read a file, take its tensors, check they fit, load them.

Every weights file m3l reads goes through here, whether named by ``checkpoint=`` (a checkpoint of
m3l.run.train, or a net's bare weights) or by ``net.pretrained=`` (through :mod:`m3l.hub` and the layouts of
:mod:`m3l.models._layouts`, which rename the authors' keys to m3l's):

- :func:`read_checkpoint`, the one reader: PyTorch files with ``weights_only=True`` (a file holding pickled
  objects that could run code is refused, never executed), MatConvNet ``.mat`` files with
  :func:`m3l.models._matconvnet.read`;
- :func:`state_dict_of`, the one extractor: the net's tensors of whatever the file wraps them in (a Lightning
  checkpoint's ``state_dict``, BasicSR's ``params`` / ``params_ema``, ``nn.DataParallel``'s ``module.``,
  ``torch.compile``'s ``_orig_mod.``, RestorationModule's ``net.``);
- :func:`misfit`, the one fit check: the first key missing, extra or of another shape, and the ``net.*``
  override that would fit; :func:`check_state`: tensors finite and of the net's floating types (NaN or inf
  weights would give black images with exit status 0).

Only the tensors of a checkpoint are loaded here (its recorded config and hyper-parameters are not read).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from m3l.errors import M3LError


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """The weights file at ``path`` as a dict of plain containers and tensors: the one reader.

    ``what`` starts every error line (``"pretrained:"`` for weights named by ``net.pretrained``). A ``.mat``
    file is read as MatConvNet's (``{"matconvnet": [layer, ...]}``, see :mod:`m3l.models._matconvnet`).
    """
    path = Path(path)
    if not path.is_file():
        if what == "checkpoint":
            raise M3LError(f"checkpoint not found: {path} (pass checkpoint=PATH to a .ckpt written by m3l.run.train)")
        raise M3LError(f"{what} {path} is not a file (give true, the name of a known entry, or a weights file)")
    if path.suffix.lower() == ".mat":
        from m3l.models._matconvnet import read as read_mat

        return read_mat(path)
    size = path.stat().st_size
    if size == 0:
        raise M3LError(f"{what} {path} is empty (0 bytes: an interrupted copy or download?); not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or the legacy pickle format
        raise M3LError(f"{what} {path} is not a readable PyTorch file ({size} bytes that torch.save did not "
                       f"write); not a checkpoint")
    if head.startswith(b"PK"):  # torch.save stores its records uncompressed: a compressed one can declare gigabytes
        import zipfile

        try:
            packed = [i.filename for i in zipfile.ZipFile(path).infolist() if i.compress_type != zipfile.ZIP_STORED]
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise M3LError(f"{what} {path} is not a readable PyTorch file (a damaged archive: {error})") from None
        if packed:
            raise M3LError(f"{what} {path} holds compressed records ({packed[0][:80]}), which torch.save never "
                           f"writes; refused (their unpacked size is not bounded by the file's)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if not found:  # a damaged file, not a pickled object: no advice to load it otherwise
            raise M3LError(f"{what} {path} is not a readable PyTorch file (damaged, or not written by torch.save: "
                           f"{' '.join(str(error).split())[-160:]})") from None
        raise M3LError(f"{what} {path} holds a pickled {found.group(1)[:120]}, not only tensors and plain containers; "
                       f"refused to load it (weights_only: loading pickled objects runs code). If it is a pickled "
                       f"whole module from a source you trust, convert it once, where its code imports: "
                       f"torch.save(torch.load(FILE, weights_only=False).state_dict(), 'weights.pth')") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise M3LError(f"{what} {path} is not a readable PyTorch file (truncated or not a checkpoint"
                       f"{': ' + type(error).__name__ if not str(error).strip() else ''}"
                       f"{': ' + str(error).strip().splitlines()[0][:200] if str(error).strip() else ''})") from None
    if not isinstance(checkpoint, dict):
        raise M3LError(f"{what} {path} holds a {type(checkpoint).__name__}, not a state dict or Lightning checkpoint")
    return checkpoint


FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_state(state: dict, what: str, expected: dict | None = None) -> None:
    """One line naming ``what`` and the key when a tensor of ``state`` is complex, not finite (NaN, inf), or of
    an integer or boolean type where ``expected`` (the net's state dict, when known) has a floating one; without
    ``expected``, only batch norm's ``num_batches_tracked`` counters may be integers."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.is_complex():
            raise M3LError(f"{what}: {key} is a complex tensor ({value.dtype}); weights are real; refused")
        ours = expected.get(key) if expected is not None else None
        floats_expected = (ours.dtype in FLOAT_TYPES if isinstance(ours, torch.Tensor)
                           else expected is None and not str(key).endswith("num_batches_tracked"))
        if floats_expected and value.dtype not in FLOAT_TYPES:
            where = f"the net has {ours.dtype}" if isinstance(ours, torch.Tensor) else "weights are floats"
            raise M3LError(f"{what}: {key} is a {value.dtype} tensor where {where}; refused")
        if value.dtype in FLOAT_TYPES and value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise M3LError(f"{what}: {key} has {bad} of {value.numel()} values that are not finite (NaN or inf); "
                           f"refused (the net would write black images)")


BASICSR_KEYS = ("params", "params_ema")  # BasicSR's files (NAFNet, Restormer): their test code loads "params"


def state_dict_of(checkpoint: dict) -> dict:
    """The net's tensors in ``checkpoint``: the one extractor.

    The tensors of BasicSR's ``params`` (``params_ema`` where there is no ``params``), else of a Lightning
    checkpoint's ``state_dict``, else of the dict itself (a bare state dict); ``torch.compile``'s ``_orig_mod.``
    removed from each key; then a ``net.`` (RestorationModule's) or ``module.`` (``nn.DataParallel``'s) that
    starts every key removed. Non-tensor values and non-string keys are dropped.
    """
    for key in BASICSR_KEYS:
        if isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    else:
        state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise M3LError(f"its state_dict is a {type(state).__name__}, not a mapping of tensors")
    state = {k.replace("_orig_mod.", "", 1): v for k, v in state.items()
             if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for prefix in ("net.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def override(key: str, value) -> str:
    """``net.KEY=VALUE`` as written on a Hydra command line."""
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (list, tuple)):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"net.{key}={value}"


def misfit(net: nn.Module | dict, state: dict, net_args: dict | None = None) -> str | None:
    """Why ``state`` does not fit ``net`` (a module or its state dict), in one phrase: the first key of another
    shape, else the keys missing and extra; then the ``net.*`` overrides that would fit where ``net_args`` (the
    net's config) tells them, and how many keys are missing, extra or of another shape. None when it fits."""
    expected = net.state_dict() if isinstance(net, nn.Module) else net
    args = {k: v for k, v in (net_args or {}).items() if not k.startswith("_")}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or extra or shapes):
        return None
    hints = []
    if shapes:
        key = shapes[0]
        ours, theirs = tuple(expected[key].shape), tuple(state[key].shape)
        detail = f"{key} is {theirs} in the file, {ours} in the net"
        for a, b in zip(ours, theirs):
            hints += [override(k, b) for k, v in args.items() if a != b and v == a and not isinstance(v, bool)]
    else:
        detail = (f"the net has {len(missing)} keys the file lacks (e.g. {missing[0]})" if missing else "") + \
                 ("; " if missing and extra else "") + \
                 (f"the file has {len(extra)} keys the net lacks (e.g. {extra[0]})" if extra else "")
        norm_file, norm_net = (any("running_mean" in k for k in d) for d in (state, expected))
        if "batch_norm" in args and norm_file != norm_net:
            hints.append(override("batch_norm", norm_file))
        convs = [sum(1 for v in d.values() if v.ndim == 4) for d in (state, expected)]
        if "depth" in args and convs[0] != convs[1]:
            hints.append(override("depth", args["depth"] + convs[0] - convs[1]))
    fit = (f"; try {' '.join(dict.fromkeys(hints))}" if hints else
           "; was it trained with other net arguments (net.*) or another model config?")
    tally = ", ".join(f"{len(keys)} {what}" for keys, what in
                      ((missing, "missing keys"), (extra, "unexpected keys"), (shapes, "with another shape")) if keys)
    return f"{detail}{fit} ({tally})"


def load_weights(module: nn.Module, path: str | Path) -> dict:
    """Load the weights at ``path`` into ``module``; returns the checkpoint.

    Bare weights of the architecture alone (keys without the ``net.`` prefix of
    :class:`m3l.engine.restoration.RestorationModule`) are accepted too.
    """
    checkpoint = read_checkpoint(path)
    try:
        state = state_dict_of(checkpoint)
    except M3LError as error:
        raise M3LError(f"checkpoint {path}: {error}") from None
    expected = module.state_dict()
    # the extractor removed RestorationModule's net.: put back as many as the module's keys have (a PerFrame net
    # inside a RestorationModule has net.net.*), choosing the prefix that names most of the module's keys
    candidates = [{f"{prefix}{k}": v for k, v in state.items()} for prefix in ("", "net.", "net.net.")]
    state = max(candidates, key=lambda c: len(set(c) & set(expected)))
    problem = misfit(expected, state)
    if problem:
        raise M3LError(f"checkpoint {path} does not fit this net ({type(getattr(module, 'net', module)).__name__}): "
                       f"{problem}")
    check_state(state, f"checkpoint {path}", expected)
    module.load_state_dict(state)
    return checkpoint
