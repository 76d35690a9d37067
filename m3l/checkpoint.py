"""Loading weights into a module with one clear line for every way a checkpoint can be wrong.

Checkpoints are always read with ``weights_only=True``: a file holding pickled objects that could
run code is refused, never executed. Only the tensors of a checkpoint are loaded (its recorded config and
hyper-parameters are not read here), and they must be finite and of the net's floating types
(:func:`check_state`): NaN or inf weights would give black images with exit status 0.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from m3l.errors import M3LError


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict:
    """The checkpoint at ``path`` as a dict of plain containers and tensors.

    ``what`` starts every error line (e.g. ``"pretrained:"`` for weights named by ``net.pretrained``).
    """
    path = Path(path)
    if not path.is_file():
        raise M3LError(f"checkpoint not found: {path} (pass checkpoint=PATH to a .ckpt written by m3l.run.train)")
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


def state_dict_of(checkpoint: dict) -> dict:
    """The weights in a Lightning checkpoint (``state_dict``) or a bare state dict."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise M3LError(f"its state_dict is a {type(state).__name__}, not a mapping of tensors")
    return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


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
    state = {k.replace("_orig_mod.", "", 1): v for k, v in state.items()}  # torch.compile's wrapper (older compile=true)
    expected = module.state_dict()
    if hasattr(module, "net") and not set(state) & set(expected) and {f"net.{k}" for k in state} & set(expected):
        state = {f"net.{k}": v for k, v in state.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        problems = [f"{len(items)} {what} (e.g. {items[0]})" for items, what in
                    ((missing, "missing keys"), (unexpected, "unexpected keys"), (reshaped, "with another shape"))
                    if items]
        raise M3LError(f"checkpoint {path} does not fit this net ({type(getattr(module, 'net', module)).__name__}): "
                       f"{'; '.join(problems)}; was it trained with another net or model config?")
    check_state(state, f"checkpoint {path}", expected)
    module.load_state_dict(state)
    return checkpoint


