"""ARCNN (Dong, Deng, Loy, Tang: "Compression Artifacts Reduction by a Deep Convolutional Network",
ICCV 2015).

Four convolutions: feature extraction 9x9 (64), feature enhancement 7x7 (32), mapping 1x1 (16),
reconstruction 5x5; ReLU after the first three; "same" padding keeps the image size. Gray: 106,561
parameters (the paper's 9-7-1-5 network with 64-32-16 filters). The paper trains with SGD at a low
learning rate; the m3l config uses Adam, which converges much faster on a CPU budget.
"""

from __future__ import annotations

from torch import Tensor, nn

from m3l.models._registry import Family, register


class ARCNN(nn.Module):
    def __init__(self, channels: int = 1, widths: tuple[int, int, int] = (64, 32, 16),
                 kernels: tuple[int, int, int, int] = (9, 7, 1, 5), residual: bool = False):
        super().__init__()
        sizes = [channels, *widths, channels]
        layers = []
        for i, k in enumerate(kernels):
            layers += [nn.Conv2d(sizes[i], sizes[i + 1], k, padding=k // 2)]
            layers += [nn.ReLU(inplace=True)] if i < len(kernels) - 1 else []
        self.body = nn.Sequential(*layers)
        self.residual = residual  # not in the paper: learn the correction instead of the image

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


FAMILY = register(Family("arcnn", ARCNN, tiny={"widths": [4, 4, 4]}, doc="""ARCNN (Dong et al. 2015), JPEG artifact removal; no released weights in PyTorch (train it: ``model=arcnn``)."""))
