"""Building blocks that several families' nets share (one definition each; the families import them).

- :class:`DropPath`: stochastic depth (SwinIR, SCUNet, Uformer).
- :class:`LayerNorm2d`: layer normalization over the channels of each pixel of an ``(N, C, H, W)`` map, with a
  per-channel scale ``weight`` and shift ``bias`` (NAFNet, KBNet, Shift-Net): the authors' key names.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: in training, each sample's branch is dropped with probability ``p`` (the others scaled
    by ``1 / (1 - p)``); the identity in evaluation."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm2d(nn.Module):
    """Layer normalization over the channels of each pixel, with a per-channel scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(1, keepdim=True)
        normed = centred / (centred.pow(2).mean(1, keepdim=True) + self.eps).sqrt()
        return normed * self.weight[:, None, None] + self.bias[:, None, None]
