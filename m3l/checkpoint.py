"""Loading weights into a module with one clear line for every way a checkpoint can be wrong.

Checkpoints are always read with ``weights_only=True``: a file holding pickled objects that could
run code is refused, never executed.
"""

from __future__ import annotations

import pickle
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
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise M3LError(f"{what} {path} holds objects other than tensors and plain containers; refused "
                       f"to load it (weights_only): {str(error).splitlines()[0]}. If it is a pickled whole "
                       f"module from a source you trust, convert it once, where its code imports: "
                       f"torch.save(torch.load(FILE, weights_only=False).state_dict(), 'weights.pth')") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise M3LError(f"{what} {path} is not a readable PyTorch file (truncated or not a checkpoint): "
                       f"{str(error).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict):
        raise M3LError(f"{what} {path} holds a {type(checkpoint).__name__}, not a state dict or Lightning checkpoint")
    return checkpoint


def state_dict_of(checkpoint: dict) -> dict:
    """The weights in a Lightning checkpoint (``state_dict``) or a bare state dict."""
    state = checkpoint.get("state_dict", checkpoint)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights(module: nn.Module, path: str | Path) -> dict:
    """Load the weights at ``path`` into ``module``; returns the checkpoint.

    Bare weights of the architecture alone (keys without the ``net.`` prefix of
    :class:`m3l.restoration.RestorationModule`) are accepted too.
    """
    checkpoint = read_checkpoint(path)
    state = state_dict_of(checkpoint)
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
    module.load_state_dict(state)
    return checkpoint


