"""Published protocols' learning-rate schedules (m3l/engine/schedules.py)."""

import math

import pytest
import torch

from m3l.engine.schedules import constant_then_cosine


def test_constant_then_cosine_is_restormers_two_cycles():
    """Restormer: 3e-4 for the first cycle, then cosine from 3e-4 to 1e-6 (here 10 + 20 steps)."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    schedule = constant_then_cosine(optimizer, constant=10, T_max=20, eta_min=1e-6)
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:11] == pytest.approx([3e-4] * 11)
    for step in range(10, 30):
        t = step - 10
        assert lrs[step] == pytest.approx(1e-6 + (3e-4 - 1e-6) * (1 + math.cos(math.pi * t / 20)) / 2)
    assert lrs[-1] < 3e-6 < lrs[15] and optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)
