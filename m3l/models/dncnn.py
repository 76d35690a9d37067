"""DnCNN (Zhang, Zuo, Chen, Meng, Zhang: "Beyond a Gaussian Denoiser", IEEE TIP 2017).

``depth`` 3x3 convolutions of ``width`` channels: Conv+ReLU, then ``depth - 2`` Conv+BN+ReLU, then a
Conv back to the image; the network predicts the noise (residual learning) and subtracts it.
DnCNN-S (one sigma) and DnCNN-B (blind) share the architecture (depth 17 and 20 in the paper);
gray (``channels=1``: 556,097 parameters at depth 17, the paper's "0.56M") or color (``channels=3``).
"""

from __future__ import annotations

from torch import Tensor, nn


class DnCNN(nn.Module):
    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64, batch_norm: bool = True):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width, eps=1e-4)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(width, channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)  # PyTorch's default init: Kaiming-normal init of the last
        # conv makes the first residuals so large that Adam collapses the net to the identity

    def forward(self, x: Tensor) -> Tensor:
        return x - self.body(x)
