"""Building blocks shared by the zoo: padding to a multiple, residual blocks, noise-level maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "replicate") -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``x`` so that height and width are multiples of ``multiple``;
    returns the padded tensor and the original ``(height, width)`` to crop back to."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def level_map(value, like: Tensor) -> Tensor:
    """A per-image scalar (``float``, ``(N,)`` or ``(N, 1, 1, 1)``) as an ``(N, 1, H, W)`` map shaped like ``like``."""
    n, _, h, w = like.shape
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    return value.expand(n, 1, h, w)


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3x3 convolutions (DRUNet, FBCNN)."""

    def __init__(self, width: int, bias: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=bias), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1, bias=bias))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
