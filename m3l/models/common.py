"""Building blocks shared by the zoo: padding to a multiple and cropping back, residual blocks, noise-level maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "replicate") -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``x`` so that height and width are multiples of ``multiple``;
    returns the padded tensor and the original ``(height, width)`` to crop back to.

    Written for ``torch.export`` with dynamic height and width: no branch on the size (a size that is
    already a multiple is padded by zero), and the padded size is ``multiple * ceil(size / multiple)``,
    which the exporter's symbolic shapes know to be a multiple (``size + (-size) % multiple`` it cannot).
    """
    h, w = x.shape[-2:]
    ph, pw = (h + multiple - 1) // multiple * multiple - h, (w + multiple - 1) // multiple * multiple - w
    if mode == "reflect":  # F.pad's reflection as a gather: the exporter cannot prove pad < size, F.pad's condition
        rows, cols = (_reflected(size, size + pad, x.device) for size, pad in ((h, ph), (w, pw)))
        return x.index_select(-2, rows).index_select(-1, cols), (h, w)
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def _reflected(size: int, length: int, device) -> Tensor:
    """Indices ``0 .. length - 1`` reflected at ``size - 1`` (edge not repeated), as ``F.pad(mode="reflect")``."""
    return (size - 1) - ((size - 1) - torch.arange(length, device=device)).abs()


def crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """The top-left ``(height, width)`` of ``x``: undoes :func:`pad_to_multiple`. A negative padding rather than a
    slice, so ``torch.export`` need not prove ``size <= padded size`` (which its symbolic shapes cannot)."""
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


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
