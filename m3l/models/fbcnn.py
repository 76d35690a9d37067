"""FBCNN (Jiang, Zhang, Timofte: "Towards Flexible Blind JPEG Artifacts Removal", ICCV 2021).

A U-Net of residual blocks in three parts: the *decoupler* (encoder, as DRUNet's: widths 64-128-256-512,
4 blocks a level, then 4 blocks at 512) whose deepest features feed the *quality-factor predictor* (4
residual blocks, global pooling, a 3-layer MLP, sigmoid) and the *reconstructor* (4 blocks at 512, then
per level a transposed conv up and 4 quality-factor attention blocks whose residual is modulated by
``gamma`` / ``beta`` computed from an embedding of the quality factor). Color: 71,921,796 parameters
(the published 71.92M). Sizes that are not multiples of 8 are padded by replication and cropped back.
At the paper's size it is the authors' network (``models/network_fbcnn.py`` of jiaxi-jiang/FBCNN; their
files load through ``net.pretrained=PATH``, see m3l/layouts/fbcnn.py).

``forward(x, quality=None)`` returns the restored image; the predicted quality factor (in [0, 1], the
quality over 100) is kept in ``predicted_quality``. As the authors', the predictor and the embedding
work on the *compression level* ``1 - quality`` (their ``qf``: 0.9 for JPEG quality 10). Blind
(``blind=True``, the default): the embedding uses the predicted level, and a quality given by the data
(``batch["side"]["quality"]``) only trains the predictor through ``extra_loss`` (L1, weight
``quality_weight``), which RestorationModule adds to the loss. ``blind=False``: a given quality drives
the embedding (the authors' ``qf_input``), so the user controls the trade-off between artifact removal
and detail (``net.blind=false data.correct_side.quality=30``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.models.common import crop, pad_to_multiple
from m3l.models.drunet import UNetEncoder, stage


class QFAttention(nn.Module):
    """Residual block whose residual is scaled by ``gamma`` and shifted by ``beta`` (per channel)."""

    def __init__(self, width: int, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=bias), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1, bias=bias))

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return x + (gamma[..., None, None] * self.body(x) + beta[..., None, None])  # the authors' order


class FBCNN(nn.Module):
    def __init__(self, channels: int = 3, widths=(64, 128, 256, 512), blocks: int = 4, embedding: int = 512,
                 blind: bool = True, quality_weight: float = 0.1):
        super().__init__()
        widths = tuple(widths)
        deep = widths[-1]
        self.encoder = UNetEncoder(channels, widths, blocks, bias=True)
        self.body_encoder, self.body_decoder = stage(deep, blocks, True), stage(deep, blocks, True)
        self.predictor = nn.Sequential(stage(deep, blocks, True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(deep, embedding), nn.ReLU(inplace=True),
                                       nn.Linear(embedding, embedding), nn.ReLU(inplace=True),
                                       nn.Linear(embedding, 1), nn.Sigmoid())
        self.embed = nn.Sequential(nn.Linear(1, embedding), nn.ReLU(inplace=True),
                                   nn.Linear(embedding, embedding), nn.ReLU(inplace=True),
                                   nn.Linear(embedding, embedding), nn.ReLU(inplace=True))
        levels = list(reversed(list(zip(widths[:-1], widths[1:]))))  # (a, b): up from b to a channels
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in levels)
        self.attention = nn.ModuleList(nn.ModuleList(QFAttention(a) for _ in range(blocks)) for a, _ in levels)
        self.to_gamma = nn.ModuleList(nn.Sequential(nn.Linear(embedding, a), nn.Sigmoid()) for a, _ in levels)
        self.to_beta = nn.ModuleList(nn.Sequential(nn.Linear(embedding, a), nn.Tanh()) for a, _ in levels)
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1)
        self.multiple = 2 ** (len(widths) - 1)
        self.blind, self.quality_weight = blind, quality_weight
        self.predicted_quality: Tensor | None = None
        self.extra_loss: Tensor | None = None

    def forward(self, x: Tensor, quality: Tensor | None = None) -> Tensor:
        x, (h, w) = pad_to_multiple(x, self.multiple)
        skips = self.encoder(x)
        deep = self.body_encoder(skips[-1])
        predicted = self.predictor(deep)  # (N, 1): the compression level 1 - quality
        self.predicted_quality = 1 - predicted.detach().reshape(-1)
        given = None if quality is None else torch.as_tensor(quality, dtype=x.dtype, device=x.device).reshape(-1, 1)
        given = None if given is None else 1 - given.expand(x.shape[0], 1)  # not len(x): an int to torch.export
        self.extra_loss = (self.quality_weight * F.l1_loss(predicted, given)
                           if self.training and given is not None else None)
        code = self.embed(predicted if self.blind or given is None else given)
        y = self.body_decoder(deep)
        for up, blocks, to_gamma, to_beta, skip in zip(self.ups, self.attention, self.to_gamma, self.to_beta,
                                                       reversed(skips[1:])):
            y = up(y + skip)
            gamma, beta = to_gamma(code), to_beta(code)
            for block in blocks:
                y = block(y, gamma, beta)
        return crop(self.tail(y + skips[0]), (h, w))
