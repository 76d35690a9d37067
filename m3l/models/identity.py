"""Identity: returns the degraded input, so that the input itself is a row of every result table.

It has no weights, so ``python -m m3l.run.test model=identity`` and ``m3l.run.correct`` need no
checkpoint.
"""

from __future__ import annotations

from torch import Tensor, nn

from m3l.models._registry import Family, register


class Identity(nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return x


FAMILY = register(Family("identity", Identity, tiny={}, doc="""The degraded input itself (no weights): the baseline row of every table."""))
