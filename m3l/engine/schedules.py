"""Learning-rate schedules of published protocols that torch has only as pieces (configs name them as
``scheduler: {_target_: m3l.engine.schedules.NAME, _partial_: true, ...}``; RestorationModule calls them with the optimizer)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR


def constant_then_cosine(optimizer: torch.optim.Optimizer, constant: int, T_max: int, eta_min: float = 0.0):
    """The optimizer's lr for ``constant`` steps, then cosine annealing to ``eta_min`` over ``T_max`` steps
    (Restormer's two-cycle CosineAnnealingRestartCyclicLR with a flat first cycle)."""
    return SequentialLR(optimizer, [ConstantLR(optimizer, factor=1.0, total_iters=constant),
                                    CosineAnnealingLR(optimizer, T_max=T_max, eta_min=eta_min)],
                        milestones=[constant])


def warmup_then_cosine(optimizer: torch.optim.Optimizer, warmup: int, T_max: int, eta_min: float = 0.0):
    """The optimizer's lr times ``1 / warmup``, ``2 / warmup``, ... up to 1 over the first ``warmup`` steps, then
    cosine annealing to ``eta_min`` over ``T_max`` steps (MPRNet's GradualWarmupScheduler with multiplier 1 and
    ``total_epoch`` = ``warmup``, stepped once before training, followed by CosineAnnealingLR)."""
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=1.0 / warmup, total_iters=warmup - 1),
                                    CosineAnnealingLR(optimizer, T_max=T_max, eta_min=eta_min)],
                        milestones=[warmup])
