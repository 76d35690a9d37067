"""FFDNet (Zhang, Zuo, Zhang: "FFDNet: Toward a Fast and Flexible Solution for CNN-based Image
Denoising", IEEE TIP 2018).

The noisy image is pixel-unshuffled into 4 half-resolution sub-images, concatenated with a noise-level
map (``sigma``, on the [0, 1] scale, from ``batch["side"]["sigma"]``), processed by a DnCNN-like body
(Conv+ReLU, Conv+BN+ReLU, ..., Conv, no residual) and pixel-shuffled back. Gray: 15 layers of 64
channels (486,148 parameters, the paper's "0.49M"); color: 12 layers of 96 channels. Odd sizes are
padded by replication to even and cropped back.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

from m3l.models.common import crop, level_map, pad_to_multiple


class FFDNet(nn.Module):
    def __init__(self, channels: int = 1, depth: int = 15, width: int = 64, batch_norm: bool = True):
        super().__init__()
        sub = 4 * channels  # four sub-images per channel
        layers = [nn.Conv2d(sub + 1, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(width, sub, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.down, self.up = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
        self.multiple = 2  # sizes are padded to a multiple of it

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        sub = self.down(x)
        out = self.up(self.body(torch.cat([sub, level_map(sigma, sub)], 1)))
        return crop(out, (h, w))
