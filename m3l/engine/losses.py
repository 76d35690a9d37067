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
