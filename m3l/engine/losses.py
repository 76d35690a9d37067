"""Training losses that torch does not ship; use them as ``loss._target_`` in a model config."""

from __future__ import annotations

import math

import torch
from torch import nn


class PSNRLoss(nn.Module):
    """Negative PSNR, averaged over the images of the batch (NAFNet's training loss).

    ``10 log10(MSE + eps)`` per image, for images in [0, 1]: minimizing it maximizes the mean PSNR, which
    weighs well-restored images as much as poor ones (an MSE loss is dominated by the worst images).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (output - target).pow(2).flatten(1).mean(dim=1)
        return 10 / math.log(10) * torch.log(mse + self.eps).mean()


class CharbonnierLoss(nn.Module):
    """Charbonnier loss as KAIR computes it (SwinIR's ``G_lossfn_type: charbonnier``): ``mean(sqrt(d^2 + eps))``
    over every pixel, ``d`` the difference; ``eps`` is added as it is, not squared (KAIR's option files set
    ``G_charbonnier_eps: 1e-3``, so the L1-like loss is smoothed below ``|d|`` of about 0.03)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((output - target).pow(2) + self.eps).mean()
