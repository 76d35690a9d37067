"""FBCNN (Jiang, Zhang, Timofte: "Towards Flexible Blind JPEG Artifacts Removal", ICCV 2021).

A U-Net of residual blocks in three parts: the *decoupler* (encoder, as DRUNet's: widths 64-128-256-512,
4 blocks a level, then 4 blocks at 512) whose deepest features feed the *quality-factor predictor* (4
residual blocks, global pooling, a 3-layer MLP, sigmoid) and the *reconstructor* (4 blocks at 512, then
per level a transposed conv up and 4 quality-factor attention blocks whose residual is modulated by
``gamma`` / ``beta`` computed from an embedding of the quality factor). Color: 71,921,796 parameters
(the published 71.92M). Sizes that are not multiples of 8 are padded by replication and cropped back.
At the paper's size it is the authors' network (``models/network_fbcnn.py`` of jiaxi-jiang/FBCNN; their
files load through ``net.pretrained=PATH``: their layout is below the net).

``forward(x, quality=None)`` returns the restored image; the predicted quality factor (in [0, 1], the
quality over 100) is kept in ``predicted_quality``. As the authors', the predictor and the embedding
work on the *compression level* ``1 - quality`` (their ``qf``: 0.9 for JPEG quality 10). Blind
(``blind=True``, the default): the embedding uses the predicted level, and a quality given by the data
(``batch["side"]["quality"]``) only trains the predictor through ``extra_loss`` (L1, weight
``quality_weight``), which RestorationModule adds to the loss. ``blind=False``: a given quality drives
the embedding (the authors' ``qf_input``), so the user controls the trade-off between artifact removal
and detail (``net.blind=false data.correct_side.quality=30``).

The authors' released weights are below the net: their layout and weights entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.models.common import crop, pad_to_multiple
from m3l.models.drunet import UNetEncoder, stage

from m3l.models._layouts import Layout, check_fits, encoder, layers, net_args_of, residual, strip_prefix
from m3l.models._registry import JPEG_GRAY, Family, Weights, register, rows


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


# Released layouts.
#
# The FBCNN authors' layout (jiaxi-jiang/FBCNN: ``fbcnn_color.pth``, ``fbcnn_gray.pth``, ``fbcnn_gray_double.pth``).
#
# Keys as DRUNet's for the encoder (``m_head``, ``m_down<l>``; see m3l/models/drunet.py and m3l/models/_layouts.py), then
# ``m_body_encoder`` and ``m_body_decoder`` (residual blocks), ``m_up<l>.0`` (transposed conv) and
# ``m_up<l>.<1..blocks>.res`` (quality-factor attention blocks), ``m_tail``; the quality-factor predictor
# ``qf_pred.<i>.res`` (residual blocks) then ``qf_pred.<blocks+2|+4|+6>`` (its 3 linear layers after
# pooling and flattening), the embedding ``qf_embed.{0,2,4}`` and ``to_gamma_<l>.0`` / ``to_beta_<l>.0``.
# All layers have biases.

def is_fbcnn(raw: dict) -> bool:
    return "m_head.weight" in raw and "qf_embed.0.weight" in raw and ("m_body_encoder.0.res.0.weight" in raw
                                                                      or "m_body_encoder.res.0.weight" in raw)


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = strip_prefix(raw)
    net_args = {"channels": int(state["m_head.weight"].shape[1]), **net_args_of(state, "fbcnn", "m_body_encoder"),
                "embedding": int(state["qf_embed.0.weight"].shape[0])}
    blocks, params = net_args["blocks"], ("weight", "bias")
    names = encoder(blocks, params)
    names |= residual("m_body_encoder", 0, "body_encoder", blocks, params, alone=True)
    names |= residual("m_body_decoder", 0, "body_decoder", blocks, params, alone=True)
    for level in (3, 2, 1):  # m3l's lists run from the bottom: index 0 is the authors' level 3
        names |= layers(f"m_up{level}.0", f"ups.{3 - level}", params)
        names |= residual(f"m_up{level}", 1, f"attention.{3 - level}", blocks, params)
        names |= layers(f"to_gamma_{level}.0", f"to_gamma.{3 - level}.0", params)
        names |= layers(f"to_beta_{level}.0", f"to_beta.{3 - level}.0", params)
    names |= layers("m_tail", "tail", params)
    names |= residual("qf_pred", 0, "predictor.0", blocks, params)
    for authors, m3l in ((2, 3), (4, 5), (6, 7)):  # the Linear layers after pooling and flattening
        names |= layers(f"qf_pred.{blocks + authors}", f"predictor.{m3l}", params)
    for i in (0, 2, 4):
        names |= layers(f"qf_embed.{i}", f"embed.{i}", params)
    return check_fits(state, names, FBCNN, net_args, "fbcnn"), net_args


LAYOUTS = (Layout(name="fbcnn", detect=is_fbcnn, convert=convert_authors,
                  description="the FBCNN authors': fbcnn_color.pth, fbcnn_gray.pth, fbcnn_gray_double.pth"),)


# Weights entries (Jiang et al. 2021): blind JPEG artifact removal with a predicted quality factor.
RELEASE = "https://github.com/jiaxi-jiang/FBCNN/releases/download/v1.0/"
SOURCE = "Jiang et al. 2021 (jiaxi-jiang/FBCNN; Apache-2.0)"
ARCH = {"widths": [64, 128, 256, 512], "blocks": 4, "embedding": 512}
GRAY_ROWS = rows({"live1_gray": {"jpeg10": (29.75, .827, 29.40), "jpeg20": (32.13, .889, 31.57),
                                 "jpeg30": (33.54, .916, 32.83), "jpeg40": (34.53, .931, 33.74)},
                  "classic5": {"jpeg10": (30.12, .822, 29.80), "jpeg20": (32.31, .872, 31.74),
                               "jpeg30": (33.54, .894, 32.78), "jpeg40": (34.35, .907, 33.48)}},
                 ("psnr", "ssim", "psnrb"))

WEIGHTS = (
    Weights(model="fbcnn", variant="gray", url=RELEASE + "fbcnn_gray.pth", sha256=None, net={"channels": 1, **ARCH},
            layout="fbcnn", metrics=GRAY_ROWS, protocol=JPEG_GRAY, source=SOURCE),
    Weights(model="fbcnn", variant="color", url=RELEASE + "fbcnn_color.pth", sha256=None, net={"channels": 3, **ARCH},
            layout="fbcnn", source=SOURCE + "; published on color LIVE1 / BSDS500 / ICB"),
    Weights(model="fbcnn", variant="gray_double", url=RELEASE + "fbcnn_gray_double.pth", sha256=None,
            net={"channels": 1, **ARCH}, layout="fbcnn", source=SOURCE + ": non-aligned double JPEG"),
)

FAMILY = register(Family(
    "fbcnn", FBCNN, tiny={"widths": [4, 8], "blocks": 1, "embedding": 8}, layouts=LAYOUTS, weights=WEIGHTS,
    doc="""FBCNN (Jiang et al. 2021), blind JPEG artifact removal. ``pretrained=True``: ``fbcnn_gray.pth``;
    ``variant="color"`` or ``"gray_double"``."""))
