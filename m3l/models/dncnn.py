"""DnCNN (Zhang, Zuo, Chen, Meng, Zhang: "Beyond a Gaussian Denoiser", IEEE TIP 2017).

``depth`` 3x3 convolutions of ``width`` channels: Conv+ReLU, then ``depth - 2`` Conv+BN+ReLU, then a
Conv back to the image; the network predicts the noise (residual learning) and subtracts it.
DnCNN-S (one sigma) and DnCNN-B (blind) share the architecture (depth 17 and 20 in the paper);
gray (``channels=1``: 556,097 parameters at depth 17, the paper's "0.56M") or color (``channels=3``).

The authors' released weights (their MatConvNet files and KAIR's conversions) are below the net: their layouts
(``matconvnet_dncnn``, ``kair_dncnn``) and weights entries (``net.pretrained=dncnn_sigma25``, ...).
"""

from __future__ import annotations

from torch import Tensor, nn

from m3l.models._layouts import Layout, kair_body, kair_convs, strip_prefix
from m3l.models._matconvnet import convs, is_matconvnet, sequential
from m3l.models._registry import COLOR_DENOISING, GRAY_DENOISING, JPEG_GRAY, Family, Weights, noise, register, rows, sigma


class DnCNN(nn.Module):
    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64, batch_norm: bool = True):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width, eps=1e-4)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(width, channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convolutions (the paper's init) and a zero last convolution: the net starts as the identity
        denoiser, so the first residuals are not noise that Adam answers by collapsing the net to the identity,
        and it learns several times faster from scratch than with PyTorch's default init."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv in convs[:-1]:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.body(x)


# Released layouts (batch norm merged into the convolutions).
#
# - ``matconvnet_dncnn``: the authors' MatConvNet files (cszn/DnCNN ``model/``): DnCNN-S ``specifics/sigma=15.mat``
#   ... (depth 17), DnCNN-B ``GD_Gray_Blind.mat``, CDnCNN-B ``GD_Color_Blind.mat``,
#   ``specifics_color/color_sigma=25.mat``, ``DnCNN3.mat`` (depth 20). A ``conv, relu, ..., conv`` stack whose
#   output is the noise: the authors' test scripts compute ``input - res(end).x``, as m3l's ``x - body(x)``.
# - ``kair_dncnn``: KAIR's PyTorch conversions (``dncnn_15.pth``, ``dncnn_25.pth``, ``dncnn_50.pth``,
#   ``dncnn_gray_blind.pth``, ``dncnn_color_blind.pth``, ``dncnn3.pth``): ``model.<i>.weight|bias``, the same
#   Conv/ReLU sequence as m3l's ``body.<i>``, also ``x - model(x)``.

def plain_stack(raw: dict) -> bool:
    """A MatConvNet ``conv, relu, ..., conv`` stack (no sub-pixel or concat layer) whose output has the input's channels."""
    if not is_matconvnet(raw):
        return False
    layers = raw["matconvnet"]
    types = [layer["type"] for layer in layers]
    if not types or set(types) - {"conv", "relu", "bnorm"} or types[0] != "conv" or types[-1] != "conv":
        return False
    return layers[0]["weight"].shape[1] == layers[-1]["weight"].shape[0]


def net_args(first: Tensor, count: int) -> dict:
    return {"channels": int(first.shape[1]), "depth": count, "width": int(first.shape[0]), "batch_norm": False}


def convert_matconvnet(raw: dict) -> tuple[dict, dict]:
    layers = convs(raw)
    return sequential(layers), net_args(layers[0]["weight"], len(layers))


def is_kair_dncnn(raw: dict) -> bool:
    indices = kair_convs(raw)
    if not indices:
        return False
    state = strip_prefix(raw)
    first, last = state[f"model.{indices[0]}.weight"], state[f"model.{indices[-1]}.weight"]
    return first.shape[1] == last.shape[0]


def convert_kair(raw: dict) -> tuple[dict, dict]:
    state = kair_body(raw)
    indices = kair_convs(raw)
    return state, net_args(state[f"body.{indices[0]}.weight"], len(indices))


LAYOUTS = (
    Layout(name="matconvnet_dncnn", detect=plain_stack, convert=convert_matconvnet,
           description="the DnCNN authors' MatConvNet .mat files (sigma=25.mat, GD_Gray_Blind.mat, DnCNN3.mat)"),
    Layout(name="kair_dncnn", detect=is_kair_dncnn, convert=convert_kair,
           description="KAIR's DnCNN .pth files (dncnn_25.pth, dncnn3.pth)"),
)


# Weights entries: the DnCNN authors' MatConvNet files (cszn/DnCNN model/, sha256 checked against the repository's
# files) and KAIR's conversions of them (MIT licence).
KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
AUTHORS = "https://github.com/cszn/DnCNN/raw/master/model/"
SOURCE = "Zhang et al. 2017 (cszn/DnCNN, MatConvNet; MIT licence)"
KAIR_SOURCE = "Zhang et al. 2017 (cszn/DnCNN, converted by cszn/KAIR; MIT licence)"
GRAY, COLOR = {"channels": 1, "batch_norm": False}, {"channels": 3, "batch_norm": False}
DNCNN_S = {**GRAY, "depth": 17, "width": 64}
DEPTH_20 = {"depth": 20, "width": 64}
BLIND_GRAY = rows({"set12": noise((32.68, 30.36, 27.21)), "bsd68": noise((31.61, 29.16, 26.23))})
DNCNN3_ROWS = rows({"live1_gray": {"jpeg10": (29.19, .8123, 28.90), "jpeg20": (31.59, .8802, 31.07),
                                   "jpeg30": (32.98, .9090, 32.34), "jpeg40": (33.96, .9247, 33.28)},
                    "classic5": {"jpeg10": (29.40, .8026, 29.13), "jpeg20": (31.63, .8610, 31.19),
                                 "jpeg30": (32.91, .8861, 32.38), "jpeg40": (33.77, .9003, 33.20)}},
                   ("psnr", "ssim", "psnrb"))


def dncnn_s(set12: float, bsd68: float, s: int) -> dict:
    return rows({"set12": noise((set12,), (s,)), "bsd68": noise((bsd68,), (s,))})


WEIGHTS = (
    # The DnCNN authors' gray sigma-25 DnCNN-S (MatConvNet training, batch norm merged into the convolutions), as
    # published in KAIR under model.<i>.* keys: pretrained=True's default.
    Weights(model="dncnn", variant="kair_sigma25", url=KAIR + "dncnn_25.pth",
            sha256="0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0", net=DNCNN_S,
            layout="kair_dncnn", metrics=dncnn_s(30.44, 29.23, 25), protocol=sigma(25), source=KAIR_SOURCE),
    *[Weights(model="dncnn", variant=f"sigma{s}", url=AUTHORS + f"specifics/sigma={s}.mat", sha256=sha, net=DNCNN_S,
              layout="matconvnet_dncnn", metrics=dncnn_s(set12, bsd68, s), protocol=sigma(s), source=SOURCE)
      for s, sha, set12, bsd68 in [
          (15, "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21", 32.86, 31.73),
          (25, "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b", 30.44, 29.23),
          (50, "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983", 27.18, 26.23)]],
    *[Weights(model="dncnn", variant=f"kair_sigma{s}", url=KAIR + f"dncnn_{s}.pth", sha256=None, net=DNCNN_S,
              layout="kair_dncnn", metrics=dncnn_s(set12, bsd68, s), protocol=sigma(s), source=KAIR_SOURCE)
      for s, set12, bsd68 in [(15, 32.86, 31.73), (50, 27.18, 26.23)]],
    # DnCNN-B, blind gray (sigma 0-55): BSD68 from the paper's Table II, Set12 its Table III.
    Weights(model="dncnn_b", variant="gray_blind", url=AUTHORS + "GD_Gray_Blind.mat",
            sha256="37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0", net={**GRAY, **DEPTH_20},
            layout="matconvnet_dncnn", metrics=BLIND_GRAY, protocol=GRAY_DENOISING, source=SOURCE),
    Weights(model="dncnn_b", variant="kair_gray_blind", url=KAIR + "dncnn_gray_blind.pth", sha256=None,
            net={**GRAY, **DEPTH_20}, layout="kair_dncnn", metrics=BLIND_GRAY, protocol=GRAY_DENOISING,
            source=KAIR_SOURCE),
    # CDnCNN-B, blind color: CBSD68 (not in the standard sets here) 33.89 / 31.23 / 27.92.
    Weights(model="dncnn_color", variant="blind", url=AUTHORS + "GD_Color_Blind.mat",
            sha256="57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c", net={**COLOR, **DEPTH_20},
            layout="matconvnet_dncnn", metrics=rows({"cbsd68": noise((33.89, 31.23, 27.92))}),
            protocol=COLOR_DENOISING, source=SOURCE),
    Weights(model="dncnn_color", variant="kair_blind", url=KAIR + "dncnn_color_blind.pth", sha256=None,
            net={**COLOR, **DEPTH_20}, layout="kair_dncnn", metrics=rows({"cbsd68": noise((33.89, 31.23, 27.92))}),
            protocol=COLOR_DENOISING, source=KAIR_SOURCE),
    Weights(model="dncnn_color", variant="sigma25", url=AUTHORS + "specifics_color/color_sigma=25.mat",
            sha256="99ac1aaaa4f851a48e5a686d13de05cf8dd8863606b477d1a917e8004e9e42cf", net={**COLOR, **DEPTH_20},
            layout="matconvnet_dncnn", source=SOURCE + "; no published table"),
    # DnCNN-3: one blind net for noise, JPEG and super-resolution; JPEG rows of the paper's Table V.
    Weights(model="dncnn3", variant="matconvnet", url=AUTHORS + "DnCNN3.mat",
            sha256="3962377d522b6728417e364bf7a589cf34ddfb592af0bd9769e53f8123d17677", net={**GRAY, **DEPTH_20},
            layout="matconvnet_dncnn", metrics=DNCNN3_ROWS, protocol=JPEG_GRAY, source=SOURCE),
    Weights(model="dncnn3", variant="kair", url=KAIR + "dncnn3.pth", sha256=None, net={**GRAY, **DEPTH_20},
            layout="kair_dncnn", metrics=DNCNN3_ROWS, protocol=JPEG_GRAY, source=KAIR_SOURCE),
)

FAMILY = register(Family(
    "dncnn", DnCNN, tiny={"depth": 3, "width": 4}, layouts=LAYOUTS, weights=WEIGHTS,
    doc="""DnCNN (Zhang et al. 2017), Gaussian denoising (DnCNN-3: also JPEG). ``pretrained=True``: KAIR's copy of the
    authors' gray sigma-25 DnCNN-S
    (Set12 30.44 dB, BSD68 29.23 dB); ``variant``: ``sigma15`` / ``sigma25`` / ``sigma50`` (the authors'
    MatConvNet files), ``dncnn_b_gray_blind``, ``dncnn_color_blind``, ``dncnn3_matconvnet``, ... (m3l/models/dncnn.py);
    or a weights file's path (its layout gives the architecture). ``kwargs`` go to
    ``m3l.models.dncnn.DnCNN`` (channels, depth, width, batch_norm)."""))
