"""Identity: returns the degraded input, so that the input itself is a row of every result table.

``python -m m3l.run.test model=identity`` needs no checkpoint (the net has no weights): its config sets
``pretrained``, which tells the test and correct commands that there is nothing to load.
"""

from __future__ import annotations

from torch import Tensor, nn


class Identity(nn.Module):
    def __init__(self, channels: int = 1, pretrained: str | None = "none needed"):
        super().__init__()
        self.channels, self.pretrained = channels, pretrained

    def forward(self, x: Tensor) -> Tensor:
        return x
