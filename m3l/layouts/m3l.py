"""m3l's own layout: a net's state dict (``python -m m3l.hub`` releases) or an m3l checkpoint (``net.*``)."""

from __future__ import annotations

import torch

from m3l.errors import M3LError
from m3l.layouts import Layout, register


def strip_prefix(raw: dict) -> dict:
    """The net's tensors of a bare state dict or of a Lightning checkpoint of RestorationModule (``net.*``)."""
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict):
        raise M3LError(f"its state_dict is a {type(state).__name__}, not a mapping of tensors")
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}
    return state


def is_m3l(raw: dict) -> bool:
    """A checkpoint written by m3l.run.train (it records its config), or a file released by m3l.hub."""
    return "m3l_config" in raw or raw.get("m3l_layout") == 1


def _mapping(value, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise M3LError(f"{key} is a {type(value).__name__}, not a mapping")
    return value


def convert(raw: dict) -> tuple[dict, dict]:
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


register(Layout(name="m3l", target="", description="m3l's checkpoints and released weights",
                detect=is_m3l, convert=convert))
