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


class EdgeLoss(nn.Module):
    """MPRNet's edge loss (Zamir et al. 2021, their ``losses.py``): Charbonnier (``eps`` added as it is, as
    :class:`CharbonnierLoss`; their ``eps=1e-3`` squared is ``1e-6``) between the Laplacians of the output and the
    target, a Laplacian being ``x - g(up(down(g(x))))``: ``g`` the separable 5-tap Gaussian ``[.05, .25, .4, .25,
    .05]`` per channel with replicated borders, ``down`` every other pixel, ``up`` zeros between pixels times 4."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.charbonnier = CharbonnierLoss(eps)
        taps = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
        self.register_buffer("kernel", torch.outer(taps, taps)[None, None], persistent=False)

    def gauss(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
        return torch.nn.functional.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 5, 5), groups=c)

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        filtered = self.gauss(x)
        upsampled = torch.zeros_like(filtered)
        upsampled[..., ::2, ::2] = 4 * filtered[..., ::2, ::2]
        return x - self.gauss(upsampled)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(self.laplacian(output), self.laplacian(target))


class CharbonnierEdgeLoss(nn.Module):
    """MPRNet's training loss of one stage's output: ``Charbonnier + edge_weight * EdgeLoss``, both with ``eps``
    (their deblurring and deraining loss: eps 1e-6, i.e. their 1e-3 squared, edge weight 0.05; they sum it over
    the three stages, as :class:`m3l.engine.restoration.RestorationModule` does for a net's ``stage_outputs``)."""

    def __init__(self, eps: float = 1e-6, edge_weight: float = 0.05):
        super().__init__()
        self.charbonnier, self.edge, self.edge_weight = CharbonnierLoss(eps), EdgeLoss(eps), edge_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(output, target) + self.edge_weight * self.edge(output, target)
