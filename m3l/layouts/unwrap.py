"""The net's tensors of a file as the authors' training code saves it.

- BasicSR (NAFNet, Restormer): ``{"params": state_dict}``, often with ``"params_ema"`` (the exponential
  moving average) beside or instead of it. The authors' test code loads ``params`` (BasicSR's
  ``load_network(param_key="params")``, Restormer's ``checkpoint["params"]``), so ``params`` is read when the
  file has it, ``params_ema`` otherwise.
- ``nn.DataParallel`` (FastDVDnet's ``model.pth``): every key starts with ``module.``, removed here as the
  authors' test scripts remove it.
- Anything else: what :func:`m3l.layouts.m3l.strip_prefix` reads (a bare state dict, ``state_dict``).
"""

from __future__ import annotations

import torch

from m3l.layouts.m3l import strip_prefix

BASICSR_KEYS = ("params", "params_ema")


def unwrap(raw: dict) -> dict:
    """The tensors of ``raw`` (see the module's docstring), without a ``module.`` prefix."""
    for key in BASICSR_KEYS:
        if isinstance(raw.get(key), dict):
            state = {k: v for k, v in raw[key].items() if isinstance(v, torch.Tensor)}
            break
    else:
        state = strip_prefix(raw)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
