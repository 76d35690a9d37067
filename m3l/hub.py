"""Pretrained weights: the table of known weights files, their download, their conversion and their loading.

Each entry of :data:`WEIGHTS` names a model and a variant, the authors' URL of the file, its sha256, the
architecture arguments it needs, the layout it is stored in (see :mod:`m3l.layouts`: MatConvNet ``.mat``,
KAIR's ``model.<i>.*``, ...; converted to m3l's net on load), the results it is published to reach and the
test protocol that measures them (``benchmarks/published.py`` runs it). Files download into torch.hub's
cache (``$TORCH_HOME/hub/checkpoints``, see :func:`torch.hub.get_dir`) and are checked against their
sha256 (a mismatch is an error, and the bad file is not kept). An entry whose sha256 could not be checked
when it was written (``sha256=None``) records the sha256 of its first download in
``checkpoints/m3l_sha256.json`` and checks later downloads against it.

Used by ``hubconf.py`` (``torch.hub.load(...)``) and by net configs with a ``pretrained`` key
(``net.pretrained=true``, ``net.pretrained=NAME`` of an entry, or ``net.pretrained=PATH`` of any weights file
whose layout m3l knows); see :func:`split_pretrained`. Imports torch only, so torch.hub users need neither
Lightning nor Hydra.

``python -m m3l.hub convert FILE OUT.pth`` writes any known file (the authors' files, an m3l checkpoint)
in m3l's layout (the net's state dict, its class and its architecture arguments) and prints its sha256,
its layout and the overrides it implies (``python -m m3l.hub CHECKPOINT OUT.pth`` does the same: releasing
a trained net); the converted weights are loaded into the net they imply (strict) before anything is written.

A weights file is data, never code. The net's class comes from m3l's own configs (the model's net config,
or for a file read alone, one of the ``_target_`` classes of the net configs m3l ships or the user's config
folders hold: :func:`known_nets`), never from the file. The architecture arguments a file records
(``m3l_net_args`` of a release, ``m3l_config.net`` of a checkpoint) are accepted only as arguments of that
class's ``__init__``, each a scalar or a list of scalars (:func:`check_net_args`), and reach the class as plain
Python arguments, never through Hydra's (recursive) instantiation; the net is first built on the ``meta``
device and checked against the file's tensors, so no argument can make it allocate more than the file holds.
Tensors must be finite and of a floating type where the net has one (:func:`m3l.checkpoint.check_state`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from m3l.errors import M3LError

KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
DNCNN = "https://github.com/cszn/DnCNN/raw/master/model/"
FFDNET = "https://github.com/cszn/FFDNet/raw/master/models/"
FBCNN = "https://github.com/jiaxi-jiang/FBCNN/releases/download/v1.0/"
RESTORMER = "https://github.com/swz30/Restormer/releases/download/v1.0/"
GDRIVE = "https://drive.google.com/uc?export=download&id="
RECORDED = "m3l_sha256.json"  # sha256 of the first download of entries without one, beside the cache


@dataclass(frozen=True)
class Weights:
    """One weights file: where it is, what it fits and what it is known to reach."""

    model: str              # the model config that tests it (m3l/configs/model/NAME.yaml: dncnn, dncnn_b, ffdnet, ...)
    variant: str            # which training (sigma25, gray_blind, kair_sigma25, ...)
    url: str
    sha256: str | None      # None: not checked when the entry was written (recorded at the first download)
    target: str             # the architecture's class (a net config's _target_)
    net: dict               # the architecture arguments the weights need
    layout: str = "m3l"     # layout of the file (m3l.layouts), converted to m3l's on load
    metrics: dict = field(default_factory=dict)  # "test set/degradation/metric": value, as published
    protocol: tuple = ()    # m3l.run.test overrides that measure `metrics` ({data_root}: the test sets' folder)
    source: str = ""        # who trained it, and its licence
    file: str = ""          # the file's name as released, where the URL does not end with it (Google Drive)

    @property
    def name(self) -> str:
        return f"{self.model}_{self.variant}"

    @property
    def family(self) -> str:
        """The module of the architecture (``dncnn`` for m3l.models.dncnn.DnCNN): hubconf's entry point."""
        return self.target.rsplit(".", 2)[-2]

    @property
    def released_name(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1]

    @property
    def filename(self) -> str:
        """Name in torch.hub's cache: the file's name with the sha256's first 8 digits (torch.hub's habit)."""
        stem, dot, suffix = self.released_name.partition(".")
        return f"{stem}-{self.sha256[:8]}{dot}{suffix}" if self.sha256 else self.released_name


# Test protocols (m3l.run.test overrides; {data_root} holds set12/, bsd68/, live1_gray/, classic5/, ...).
GRAY_DENOISING = ("preset=paper", "data_root={data_root}")


def sigma(value: int) -> tuple:
    """DnCNN-S: one sigma, tested at that sigma only."""
    return (*GRAY_DENOISING, "data.test_degradations=null", f"degradation@data.degradation=sigma{value}")


NOISE_TESTS = ("data.test_degradations=[" + ",".join(
    "{_target_:m3l.data.degradations.GaussianNoise,sigma:%d}" % s for s in (15, 25, 50)) + "]")
JPEG_GRAY = ("data.test_sets={live1:{data_root}/live1_gray,classic5:{data_root}/classic5}",
             "data.test_degradations=[{_target_:m3l.data.degradations.JPEG,quality:10},"
             "{_target_:m3l.data.degradations.JPEG,quality:20},{_target_:m3l.data.degradations.JPEG,quality:30},"
             "{_target_:m3l.data.degradations.JPEG,quality:40}]", "metrics.psnrb=true")


def rows(sets: dict[str, dict[str, tuple]], metrics: tuple[str, ...] = ("psnr",)) -> dict:
    """``{"set/degradation/metric": value}`` from ``{set: {degradation: (value per metric)}}``."""
    return {f"{s}/{d}/{m}": v for s, table in sets.items() for d, values in table.items()
            for m, v in zip(metrics, values)}


def noise(values: tuple[float, ...], sigmas: tuple[int, ...] = (15, 25, 50)) -> dict:
    return {f"sigma{s}": (v,) for s, v in zip(sigmas, values)}


GRAY = {"channels": 1, "batch_norm": False}
COLOR = {"channels": 3, "batch_norm": False}
DNCNN_S = {**GRAY, "depth": 17, "width": 64}
DNCNN_20 = {"depth": 20, "width": 64}
DNCNN_SRC = "Zhang et al. 2017 (cszn/DnCNN, MatConvNet; MIT licence)"
DNCNN_KAIR_SRC = "Zhang et al. 2017 (cszn/DnCNN, converted by cszn/KAIR; MIT licence)"
FFDNET_SRC = "Zhang et al. 2018 (cszn/FFDNet, MatConvNet; see the repository's terms)"
DNCNN3_ROWS = rows({"live1": {"jpeg10": (29.19, .8123, 28.90), "jpeg20": (31.59, .8802, 31.07),
                              "jpeg30": (32.98, .9090, 32.34), "jpeg40": (33.96, .9247, 33.28)},
                    "classic5": {"jpeg10": (29.40, .8026, 29.13), "jpeg20": (31.63, .8610, 31.19),
                                 "jpeg30": (32.91, .8861, 32.38), "jpeg40": (33.77, .9003, 33.20)}},
                   ("psnr", "ssim", "psnrb"))
FBCNN_GRAY_ROWS = rows({"live1": {"jpeg10": (29.75, .827, 29.40), "jpeg20": (32.13, .889, 31.57),
                                  "jpeg30": (33.54, .916, 32.83), "jpeg40": (34.53, .931, 33.74)},
                        "classic5": {"jpeg10": (30.12, .822, 29.80), "jpeg20": (32.31, .872, 31.74),
                                     "jpeg30": (33.54, .894, 32.78), "jpeg40": (34.35, .907, 33.48)}},
                       ("psnr", "ssim", "psnrb"))
DRUNET_ARCH = {"widths": [64, 128, 256, 512], "blocks": 4, "bias": False}
FBCNN_ARCH = {"widths": [64, 128, 256, 512], "blocks": 4, "embedding": 512}
NAFNET_GOPRO = {"channels": 3, "encoder_blocks": [1, 1, 1, 28], "middle_blocks": 1, "decoder_blocks": [1, 1, 1, 1]}
NAFNET_SIDD = {"channels": 3, "encoder_blocks": [2, 2, 4, 8], "middle_blocks": 12, "decoder_blocks": [2, 2, 2, 2]}
NAFNET_SRC = "Chen et al. 2022 (megvii-research/NAFNet, Google Drive; MIT licence)"
RESTORMER_ARCH = {"width": 48, "num_blocks": [4, 6, 6, 8], "heads": [1, 2, 4, 8], "refinement_blocks": 4,
                  "expansion": 2.66}
RESTORMER_DENOISING = {**RESTORMER_ARCH, "layer_norm": "bias_free"}  # LayerNorm_type: BiasFree in their options
RESTORMER_SRC = "Zamir et al. 2022 (swz30/Restormer; see the repository's licence)"

WEIGHTS: dict[str, Weights] = {w.name: w for w in [
    # The DnCNN authors' gray sigma-25 DnCNN-S (MatConvNet training, batch norm merged into the
    # convolutions), as published in KAIR (MIT licence) under model.<i>.* keys.
    Weights(model="dncnn", variant="kair_sigma25", url=KAIR + "dncnn_25.pth",
            sha256="0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
            target="m3l.models.dncnn.DnCNN", net=DNCNN_S, layout="kair_dncnn",
            metrics=rows({"set12": noise((30.44,), (25,)), "bsd68": noise((29.23,), (25,))}),
            protocol=sigma(25), source=DNCNN_KAIR_SRC),
    # The DnCNN authors' MatConvNet files (cszn/DnCNN model/): sha256 checked against the repository's files.
    *[Weights(model="dncnn", variant=f"sigma{s}", url=DNCNN + f"specifics/sigma={s}.mat", sha256=sha,
              target="m3l.models.dncnn.DnCNN", net=DNCNN_S, layout="matconvnet_dncnn",
              metrics=rows({"set12": noise((set12,), (s,)), "bsd68": noise((bsd68,), (s,))}),
              protocol=sigma(s), source=DNCNN_SRC)
      for s, sha, set12, bsd68 in [
          (15, "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21", 32.86, 31.73),
          (25, "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b", 30.44, 29.23),
          (50, "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983", 27.18, 26.23)]],
    *[Weights(model="dncnn", variant=f"kair_sigma{s}", url=KAIR + f"dncnn_{s}.pth", sha256=None,
              target="m3l.models.dncnn.DnCNN", net=DNCNN_S, layout="kair_dncnn",
              metrics=rows({"set12": noise((set12,), (s,)), "bsd68": noise((bsd68,), (s,))}),
              protocol=sigma(s), source=DNCNN_KAIR_SRC)
      for s, set12, bsd68 in [(15, 32.86, 31.73), (50, 27.18, 26.23)]],
    # DnCNN-B, blind gray (sigma 0-55): BSD68 from the paper's Table II, Set12 its Table III.
    Weights(model="dncnn_b", variant="gray_blind", url=DNCNN + "GD_Gray_Blind.mat",
            sha256="37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0",
            target="m3l.models.dncnn.DnCNN", net={**GRAY, **DNCNN_20}, layout="matconvnet_dncnn",
            metrics=rows({"set12": noise((32.68, 30.36, 27.21)), "bsd68": noise((31.61, 29.16, 26.23))}),
            protocol=GRAY_DENOISING, source=DNCNN_SRC),
    Weights(model="dncnn_b", variant="kair_gray_blind", url=KAIR + "dncnn_gray_blind.pth", sha256=None,
            target="m3l.models.dncnn.DnCNN", net={**GRAY, **DNCNN_20}, layout="kair_dncnn",
            metrics=rows({"set12": noise((32.68, 30.36, 27.21)), "bsd68": noise((31.61, 29.16, 26.23))}),
            protocol=GRAY_DENOISING, source=DNCNN_KAIR_SRC),
    # CDnCNN-B, blind color: CBSD68 (not in the standard sets here) 33.89 / 31.23 / 27.92.
    Weights(model="dncnn_color", variant="blind", url=DNCNN + "GD_Color_Blind.mat",
            sha256="57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c",
            target="m3l.models.dncnn.DnCNN", net={**COLOR, **DNCNN_20}, layout="matconvnet_dncnn",
            metrics=rows({"cbsd68": noise((33.89, 31.23, 27.92))}),
            protocol=("data.test_sets={cbsd68:{data_root}/cbsd68}", NOISE_TESTS), source=DNCNN_SRC),
    Weights(model="dncnn_color", variant="kair_blind", url=KAIR + "dncnn_color_blind.pth", sha256=None,
            target="m3l.models.dncnn.DnCNN", net={**COLOR, **DNCNN_20}, layout="kair_dncnn",
            metrics=rows({"cbsd68": noise((33.89, 31.23, 27.92))}), source=DNCNN_KAIR_SRC),
    Weights(model="dncnn_color", variant="sigma25", url=DNCNN + "specifics_color/color_sigma=25.mat",
            sha256="99ac1aaaa4f851a48e5a686d13de05cf8dd8863606b477d1a917e8004e9e42cf",
            target="m3l.models.dncnn.DnCNN", net={**COLOR, **DNCNN_20}, layout="matconvnet_dncnn",
            source=DNCNN_SRC + "; no published table"),
    # DnCNN-3: one blind net for noise, JPEG and super-resolution; JPEG rows of the paper's Table V.
    Weights(model="dncnn3", variant="matconvnet", url=DNCNN + "DnCNN3.mat",
            sha256="3962377d522b6728417e364bf7a589cf34ddfb592af0bd9769e53f8123d17677",
            target="m3l.models.dncnn.DnCNN", net={**GRAY, **DNCNN_20}, layout="matconvnet_dncnn",
            metrics=DNCNN3_ROWS, protocol=JPEG_GRAY, source=DNCNN_SRC),
    Weights(model="dncnn3", variant="kair", url=KAIR + "dncnn3.pth", sha256=None,
            target="m3l.models.dncnn.DnCNN", net={**GRAY, **DNCNN_20}, layout="kair_dncnn",
            metrics=DNCNN3_ROWS, protocol=JPEG_GRAY, source=DNCNN_KAIR_SRC),
    # FFDNet: noise-level map input; the authors' MatConvNet files (cszn/FFDNet models/).
    Weights(model="ffdnet", variant="gray", url=FFDNET + "FFDNet_gray.mat",
            sha256="14c231e87a444a9bd85b0b5e174e73b4f6ac50bf4050e75a0d3f4d69f77a2093",
            target="m3l.models.ffdnet.FFDNet", net={**GRAY, "depth": 15, "width": 64}, layout="matconvnet_ffdnet",
            metrics=rows({"set12": noise((32.75, 30.43, 27.32)), "bsd68": noise((31.63, 29.19, 26.29))}),
            protocol=GRAY_DENOISING, source=FFDNET_SRC),
    Weights(model="ffdnet", variant="color", url=FFDNET + "FFDNet_color.mat",
            sha256="a4b5a9da21294ab9ba6ed5c6cc459c46dff20c025eb7d3ab82e8e0bb00541793",
            target="m3l.models.ffdnet.FFDNet", net={**COLOR, "depth": 12, "width": 96}, layout="matconvnet_ffdnet",
            metrics=rows({"cbsd68": noise((33.87, 31.21, 27.96))}),
            protocol=("data.channels=3", "data.test_sets={cbsd68:{data_root}/cbsd68}"),
            source=FFDNET_SRC),
    Weights(model="ffdnet", variant="kair_gray", url=KAIR + "ffdnet_gray.pth", sha256=None,
            target="m3l.models.ffdnet.FFDNet", net={**GRAY, "depth": 15, "width": 64}, layout="kair_ffdnet",
            metrics=rows({"set12": noise((32.75, 30.43, 27.32)), "bsd68": noise((31.63, 29.19, 26.29))}),
            protocol=GRAY_DENOISING, source="Zhang et al. 2018 (converted by cszn/KAIR; MIT licence)"),
    Weights(model="ffdnet", variant="kair_color", url=KAIR + "ffdnet_color.pth", sha256=None,
            target="m3l.models.ffdnet.FFDNet", net={**COLOR, "depth": 12, "width": 96}, layout="kair_ffdnet",
            metrics=rows({"cbsd68": noise((33.87, 31.21, 27.96))}),
            source="Zhang et al. 2018 (converted by cszn/KAIR; MIT licence)"),
    # DRUNet (DPIR, Zhang et al. 2021): noise-level map input, blind over sigma 0-50.
    Weights(model="drunet", variant="gray", url=KAIR + "drunet_gray.pth", sha256=None,
            target="m3l.models.drunet.DRUNet", net={"channels": 1, **DRUNET_ARCH}, layout="kair_drunet",
            metrics=rows({"set12": noise((33.25, 30.94, 27.90)), "bsd68": noise((31.91, 29.48, 26.59))}),
            protocol=GRAY_DENOISING, source="Zhang et al. 2021 (cszn/DPIR, cszn/KAIR; MIT licence)"),
    Weights(model="drunet", variant="color", url=KAIR + "drunet_color.pth", sha256=None,
            target="m3l.models.drunet.DRUNet", net={"channels": 3, **DRUNET_ARCH}, layout="kair_drunet",
            metrics=rows({"cbsd68": noise((34.30, 31.69, 28.51))}),
            source="Zhang et al. 2021 (cszn/DPIR, cszn/KAIR; MIT licence)"),
    # FBCNN (Jiang et al. 2021): blind JPEG artifact removal with a predicted quality factor.
    Weights(model="fbcnn", variant="gray", url=FBCNN + "fbcnn_gray.pth", sha256=None,
            target="m3l.models.fbcnn.FBCNN", net={"channels": 1, **FBCNN_ARCH}, layout="fbcnn",
            metrics=FBCNN_GRAY_ROWS, protocol=JPEG_GRAY, source="Jiang et al. 2021 (jiaxi-jiang/FBCNN; Apache-2.0)"),
    Weights(model="fbcnn", variant="color", url=FBCNN + "fbcnn_color.pth", sha256=None,
            target="m3l.models.fbcnn.FBCNN", net={"channels": 3, **FBCNN_ARCH}, layout="fbcnn",
            source="Jiang et al. 2021 (jiaxi-jiang/FBCNN; Apache-2.0); published on color LIVE1 / BSDS500 / ICB"),
    Weights(model="fbcnn", variant="gray_double", url=FBCNN + "fbcnn_gray_double.pth", sha256=None,
            target="m3l.models.fbcnn.FBCNN", net={"channels": 1, **FBCNN_ARCH}, layout="fbcnn",
            source="Jiang et al. 2021 (jiaxi-jiang/FBCNN; Apache-2.0): non-aligned double JPEG"),
    # NAFNet (Chen et al. 2022): BasicSR files ({"params": ...}), only on Google Drive.
    Weights(model="nafnet", variant="gopro_width32", url=GDRIVE + "1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj",
            file="NAFNet-GoPro-width32.pth", sha256=None, target="m3l.models.nafnet.NAFNet",
            net={**NAFNET_GOPRO, "width": 32}, layout="basicsr_nafnet",
            metrics={"gopro/clean/psnr": 32.8705, "gopro/clean/ssim": 0.9606}, source=NAFNET_SRC),
    Weights(model="nafnet", variant="gopro_width64", url=GDRIVE + "1S0PVRbyTakYY9a82kujgZLbMihfNBLfC",
            file="NAFNet-GoPro-width64.pth", sha256=None, target="m3l.models.nafnet.NAFNet",
            net={**NAFNET_GOPRO, "width": 64}, layout="basicsr_nafnet",
            metrics={"gopro/clean/psnr": 33.7103, "gopro/clean/ssim": 0.9668}, source=NAFNET_SRC),
    Weights(model="nafnet", variant="sidd_width32", url=GDRIVE + "1lsByk21Xw-6aW7epCwOQxvm6HYCQZPHZ",
            file="NAFNet-SIDD-width32.pth", sha256=None, target="m3l.models.nafnet.NAFNet",
            net={**NAFNET_SIDD, "width": 32}, layout="basicsr_nafnet",
            metrics={"sidd/clean/psnr": 39.9672, "sidd/clean/ssim": 0.9599}, source=NAFNET_SRC),
    Weights(model="nafnet", variant="sidd_width64", url=GDRIVE + "14Fht1QQJ2gMlk4N1ERCRuElg8JfjrWWR",
            file="NAFNet-SIDD-width64.pth", sha256=None, target="m3l.models.nafnet.NAFNet",
            net={**NAFNET_SIDD, "width": 64}, layout="basicsr_nafnet",
            metrics={"sidd/clean/psnr": 40.3045, "sidd/clean/ssim": 0.9614}, source=NAFNET_SRC),
    # Restormer (Zamir et al. 2022): {"params": ...} files of the repository's v1.0 release.
    Weights(model="restormer", variant="motion_deblurring", url=RESTORMER + "motion_deblurring.pth", sha256=None,
            target="m3l.models.restormer.Restormer", net={"channels": 3, **RESTORMER_ARCH}, layout="restormer",
            metrics={"gopro/clean/psnr": 32.92, "gopro/clean/ssim": 0.961, "hide/clean/psnr": 31.22},
            source=RESTORMER_SRC),
    Weights(model="restormer", variant="real_denoising", url=RESTORMER + "real_denoising.pth", sha256=None,
            target="m3l.models.restormer.Restormer", net={"channels": 3, **RESTORMER_DENOISING}, layout="restormer",
            metrics={"sidd/clean/psnr": 40.02, "sidd/clean/ssim": 0.960}, source=RESTORMER_SRC),
    Weights(model="restormer", variant="gaussian_gray_blind", url=RESTORMER + "gaussian_gray_denoising_blind.pth",
            sha256=None, target="m3l.models.restormer.Restormer", net={"channels": 1, **RESTORMER_DENOISING},
            layout="restormer", metrics=rows({"set12": noise((33.35, 31.04, 28.01)),
                                             "bsd68": noise((31.95, 29.51, 26.62))}),
            protocol=("data.channels=1", "data.test_sets={set12:{data_root}/set12,bsd68:{data_root}/bsd68}",
                      NOISE_TESTS), source=RESTORMER_SRC),  # preset=paper is Restormer's GoPro protocol
    Weights(model="restormer", variant="gaussian_color_blind", url=RESTORMER + "gaussian_color_denoising_blind.pth",
            sha256=None, target="m3l.models.restormer.Restormer", net={"channels": 3, **RESTORMER_DENOISING},
            layout="restormer", metrics=rows({"cbsd68": noise((34.39, 31.78, 28.59))}), source=RESTORMER_SRC),
    # FastDVDnet (Tassano et al. 2020): nn.DataParallel's module.* keys, in the repository itself.
    Weights(model="fastdvdnet", variant="authors", url="https://github.com/m-tassano/fastdvdnet/raw/master/model.pth",
            sha256=None, target="m3l.models.video.FastDVDnet",
            net={"channels": 3, "widths": [32, 64, 128], "per_frame": 30}, layout="fastdvdnet",
            metrics={"davis/sigma10/psnr": 38.71, "davis/sigma20/psnr": 35.77, "davis/sigma30/psnr": 34.04,
                     "davis/sigma40/psnr": 32.82, "davis/sigma50/psnr": 31.86, "set8/sigma10/psnr": 36.44,
                     "set8/sigma20/psnr": 33.43, "set8/sigma30/psnr": 31.68, "set8/sigma40/psnr": 30.46,
                     "set8/sigma50/psnr": 29.53},
            source="Tassano et al. 2020 (m-tassano/fastdvdnet; MIT licence)"),
]}


def find(model: str, variant: str | None = None) -> Weights:
    """The entry of ``model`` (a model config, or a family: ``dncnn`` also finds ``dncnn_b``'s entries) and
    ``variant`` (the first of its entries when ``variant`` is None)."""
    for match in (lambda w: w.model == model, lambda w: w.family == model):
        known = [w for w in WEIGHTS.values() if match(w) and variant in (None, w.variant, w.name)]
        if known:
            return known[0]
    names = ", ".join(sorted(WEIGHTS)) or "none"
    raise M3LError(f"no pretrained weights for model {model!r}" + (f", variant {variant!r}" if variant else "")
                   + f"; known: {names}")


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded(folder: Path) -> dict:
    """``{url: sha256}`` of the entries without a pinned sha256 that were downloaded before."""
    try:
        return json.loads((folder / RECORDED).read_text())
    except (OSError, ValueError):
        return {}


def record(folder: Path, url: str, digest: str) -> None:
    from m3l.io.atomic import atomic_write

    known = {**recorded(folder), url: digest}
    with atomic_write(folder / RECORDED, "w") as f:
        json.dump(known, f, indent=1, sort_keys=True)


def download(entry: Weights, progress: bool = True) -> Path:
    """The entry's file in torch.hub's cache, downloaded first if missing; its sha256 is always checked
    (against the entry's, or for an entry without one, against the one recorded at its first download)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / entry.filename
    expected = entry.sha256 or recorded(folder).get(entry.url)
    if target.is_file() and expected is None:  # put there by hand, or downloaded before the record existed
        expected = sha256(target)
        record(folder, entry.url, expected)
    if target.is_file() and sha256(target) == expected:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    try:  # writes a temporary file, checks the hash, then renames: a bad download never lands in the cache
        torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=expected, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            pinned = "expected" if entry.sha256 else f"recorded (in {folder / RECORDED}, at its first download)"
            raise M3LError(f"pretrained {entry.name}: {entry.url} does not have the {pinned} sha256 "
                           f"{expected} ({error}); not kept") from None
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url}: {error}") from None
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url} ({error}); download it by hand "
                       f"into {target}") from None
    if expected is None:
        digest = sha256(target)
        record(folder, entry.url, digest)
        print(f"pretrained {entry.name}: the table has no sha256 for {entry.url}; recorded {digest} in "
              f"{folder / RECORDED} (later downloads are checked against it)")
    return target


@dataclass(frozen=True)
class Converted:
    """A weights file read and converted to m3l's layout: what :func:`load_pretrained` loads."""

    source: str             # the file (or the entry's name and URL), for messages
    layout: str             # the layout's name ("" when no layout recognised it: a bare state dict)
    target: str | None      # the net class the file is for, where the layout knows it
    state: dict
    net_args: dict          # the architecture arguments the file implies


def convert_file(path: str | os.PathLike, target: str | None = None, layout: str | None = None) -> Converted:
    """Read the weights file at ``path`` and convert it to m3l's layout (see :mod:`m3l.layouts`).

    ``layout`` forces a layout by name; else it is recognised, preferring those of ``target`` (the net class
    of the model config). A file in no known layout that is a bare state dict is kept as it is (a net's own
    ``state_dict()``): whether it fits is checked when it is loaded.
    """
    from m3l import layouts
    from m3l.layouts.m3l import strip_prefix

    from m3l.checkpoint import check_state

    raw = layouts.read(path)
    try:
        chosen = layouts.load_all()[layout] if layout else layouts.find_layout(raw, path, target)
    except M3LError:
        try:
            state = strip_prefix(raw)
        except M3LError as error:
            raise M3LError(f"pretrained {path}: {error}") from None
        if not state:
            raise
        check_state(state, f"pretrained {path}")
        return Converted(str(path), "", None, state, {})
    except Exception as error:  # a layout's detect() on a file of unexpected structure
        raise M3LError(f"pretrained {path}: malformed weights file ({type(error).__name__}: "
                       f"{first_line(error)})") from None
    try:
        state, net_args = chosen.convert(raw)
    except M3LError as error:
        raise M3LError(f"pretrained {path} ({chosen.name}): {error}") from None
    except Exception as error:  # keys of the layout holding something else than it should (a file made by hand)
        raise M3LError(f"pretrained {path} ({chosen.name}): malformed weights file ({type(error).__name__}: "
                       f"{first_line(error)})") from None
    if not isinstance(net_args, dict):
        raise M3LError(f"pretrained {path}: the architecture arguments it records are a "
                       f"{type(net_args).__name__}, not a mapping; refused")
    net_args = dict(net_args)
    file_target = net_args.pop("_target_", None)
    if file_target is not None and not isinstance(file_target, str):
        raise M3LError(f"pretrained {path}: its net class is a {type(file_target).__name__}, not a class name; refused")
    file_target = file_target or chosen.target or None
    what = f"pretrained {path}"
    if net_args or file_target:  # the class comes from m3l's configs; the file's arguments must be its arguments
        cls = net_class(file_target or target, what, trusted=target)
        check_net_args(net_args, cls, what)
    check_state(state, what)
    return Converted(str(path), chosen.name, file_target, state, net_args)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


# Hydra's instantiation keys: in a weights file they would choose code.
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
MAX_INT = 1 << 16           # an architecture argument (a width, a depth, a block count) larger than this is refused
MAX_LIST = 64               # the longest list argument (block counts per level, widths, ...)
MAX_TEXT = 256              # the longest string argument (a norm's name)


def known_nets() -> dict[str, str]:
    """``{class: net config}`` of the net configs m3l ships (``configs/net/*.yaml``) and the user's config folders
    hold (``~/.config/m3l/net``, ``/etc/m3l/net``): the only classes a weights file may name."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    folders = [files("m3l.configs") / "net"]
    try:
        from hydra_plugins.m3l_searchpath.m3l_searchpath import user_config_dirs

        folders = [folder / "net" for folder in user_config_dirs()] + folders
    except ImportError:  # torch.hub users: m3l's configs only
        pass
    known: dict[str, str] = {}
    for folder in reversed(folders):  # the user's configs win
        if not folder.is_dir():
            continue
        for config in sorted(folder.iterdir(), key=lambda p: p.name):
            if config.name.endswith(".yaml"):
                try:
                    target = OmegaConf.create(config.read_text()).get("_target_")
                except Exception:  # a broken user config: not a known net
                    continue
                if isinstance(target, str):
                    known[target] = config.name[:-5]
    return known


def net_class(target: str | None, what: str, trusted: str | None = None) -> type:
    """The class ``target``: the model config's own (``trusted``), or one of :func:`known_nets`."""
    import importlib

    if not target:
        raise M3LError(f"{what} records architecture arguments but no net class; pass the model (model=NAME) "
                       f"and net.pretrained=FILE")
    if target != trusted and target not in known_nets():
        known = ", ".join(sorted(known_nets()))
        raise M3LError(f"{what} is for the class {target[:200]!r}, none of m3l's nets ({known}); refused (a weights "
                       f"file does not choose code: give a model whose net config is that class)")
    module, _, name = target.rpartition(".")
    try:
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:  # a checkout that is not pip-installed: m3l.models is the repository's models/
            if not module.startswith("m3l.models"):
                raise
            return getattr(importlib.import_module(module.replace("m3l.models", "models", 1)), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise M3LError(f"{what}: cannot import its net class {target} ({first_line(error)})") from None


def _refused_key(value, prefix: str = "") -> str | None:
    """The first of Hydra's instantiation keys anywhere inside ``value`` (as ``a.b._target_``), or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key in HYDRA_KEYS:
                return name
            found = _refused_key(item, name)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _refused_key(item, f"{prefix}[{i}]")
            if found:
                return found
    return None


def _scalar_problem(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_INT else f"{value} is larger than {MAX_INT}"
    if isinstance(value, float):
        return None if math.isfinite(value) and abs(value) <= MAX_INT else f"{value} is not a finite number up to {MAX_INT}"
    if isinstance(value, str):
        if len(value) > MAX_TEXT or not value.isprintable() or "${" in value:
            return f"the string {value[:40]!r}... is not a short plain name"
        return None
    return f"a {type(value).__name__} is not a scalar"


def check_net_args(args: dict, cls: type, what: str) -> dict:
    """``args`` when each key is a parameter of ``cls.__init__`` and each value a scalar (bool, int, float, str,
    None) or a list of scalars; else one line naming ``what`` (the file) and the key. Any mapping, and any of
    Hydra's keys (``_target_``, ``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``) anywhere, is refused."""
    if not isinstance(args, dict):
        raise M3LError(f"{what}: its architecture arguments are a {type(args).__name__}, not a mapping; refused")
    hydra_key = _refused_key(args)
    if hydra_key:
        raise M3LError(f"{what}: key {hydra_key} is a Hydra instantiation key; refused (a weights file holds "
                       f"architecture arguments, never objects to build)")
    parameters = inspect.signature(cls.__init__).parameters
    names = [n for n, p in parameters.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key, value in args.items():
        if not isinstance(key, str) or key not in names:
            raise M3LError(f"{what}: key {str(key)[:80]!r} is not an argument of {cls.__name__} "
                           f"({', '.join(names) or 'none'}); refused")
        if isinstance(value, dict):
            raise M3LError(f"{what}: key {key} is a mapping; refused (architecture arguments are scalars or lists "
                           f"of scalars; a nested net config is not read from a weights file: pass checkpoint=FILE "
                           f"with the model's own config instead)")
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
            raise M3LError(f"{what}: key {key} is a list of {len(value)} items (more than {MAX_LIST}); refused")
        for item in items:
            problem = _scalar_problem(item)
            if problem:
                raise M3LError(f"{what}: key {key}: {problem}; refused (architecture arguments are scalars or "
                               f"lists of scalars)")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def model_for(target: str) -> str:
    """The model config (``m3l/configs/model/NAME.yaml``) whose net is ``target`` (one of :func:`known_nets`)."""
    name = known_nets().get(target)
    return f"model={name}" if name else f"a model whose net is {target[:200]}"


def override(key: str, value) -> str:
    """``net.KEY=VALUE`` as written on a Hydra command line."""
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, (list, tuple)):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"net.{key}={value}"


def misfit(net: nn.Module, state: dict, net_args: dict | None = None) -> str | None:
    """Why ``state`` does not fit ``net`` (the first key missing, extra or of another shape), and the
    ``net.*`` override that would fit where ``net_args`` (the net's config) tells it; None when it fits."""
    expected = net.state_dict()
    args = {k: v for k, v in (net_args or {}).items() if not k.startswith("_")}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or extra or shapes):
        return None
    hints = []
    if shapes:
        key = shapes[0]
        ours, theirs = tuple(expected[key].shape), tuple(state[key].shape)
        detail = f"{key} is {theirs} in the file, {ours} in the net"
        for a, b in zip(ours, theirs):
            hints += [override(k, b) for k, v in args.items() if a != b and v == a and not isinstance(v, bool)]
    else:
        detail = (f"the net has {len(missing)} keys the file lacks (e.g. {missing[0]})" if missing else "") + \
                 ("; " if missing and extra else "") + \
                 (f"the file has {len(extra)} keys the net lacks (e.g. {extra[0]})" if extra else "")
        norm_file, norm_net = (any("running_mean" in k for k in d) for d in (state, expected))
        if "batch_norm" in args and norm_file != norm_net:
            hints.append(override("batch_norm", norm_file))
        convs = [sum(1 for v in d.values() if v.ndim == 4) for d in (state, expected)]
        if "depth" in args and convs[0] != convs[1]:
            hints.append(override("depth", args["depth"] + convs[0] - convs[1]))
    fit = f"; try {' '.join(dict.fromkeys(hints))}" if hints else "; are the net's arguments those the weights were trained with?"
    return detail + fit


def load_into(net: nn.Module, state: dict, what: str, net_args: dict | None = None) -> nn.Module:
    """``net.load_state_dict(state)``, strict, with one line when the weights do not fit (keys, shapes, or a
    tensor that is not finite or not of the net's floating type)."""
    from m3l.checkpoint import check_state

    problem = misfit(net, state, net_args)
    if problem:
        raise M3LError(f"pretrained: {what} does not fit {type(net).__name__}: {problem}")
    check_state(state, f"pretrained: {what}", net.state_dict())
    net.load_state_dict(state, strict=True)
    return net


def build_checked(build, state: dict | None, what: str, net_args: dict | None = None) -> nn.Module:
    """``build()``, first on the ``meta`` device (no memory) and checked against ``state`` (the file's tensors):
    architecture arguments read from a file cannot make the net allocate more than the file holds."""
    if state is not None:
        try:
            with torch.device("meta"):
                probe = build()
        except M3LError:
            raise
        except Exception as error:
            raise M3LError(f"pretrained: {what}: its architecture arguments do not build the net "
                           f"({type(error).__name__}: {first_line(error)})") from None
        if isinstance(probe, nn.Module):
            problem = misfit(probe, state, net_args)
            if problem:
                raise M3LError(f"pretrained: {what} does not fit {type(probe).__name__}: {problem}")
        del probe
    return build()


def class_name(net: nn.Module) -> str:
    cls = type(net)
    return f"{cls.__module__.replace('models.', 'm3l.models.', 1) if cls.__module__.startswith('models.') else cls.__module__}.{cls.__name__}"


def load_pretrained(net: nn.Module, pretrained: str | os.PathLike | Weights | Converted, progress: bool = True,
                    net_args: dict | None = None) -> nn.Module:
    """Load ``pretrained`` (an entry, an entry's name, a converted file or a file path) into ``net``; returns
    ``net``. ``net_args``, the net's config, lets a misfit say which override would fit."""
    if isinstance(pretrained, str) and pretrained in WEIGHTS:
        pretrained = WEIGHTS[pretrained]
    if isinstance(pretrained, Weights):
        entry = pretrained
        pretrained = convert_file(download(entry, progress), entry.target, entry.layout)
        pretrained = Converted(f"{entry.name} ({entry.url})", pretrained.layout, pretrained.target,
                               pretrained.state, pretrained.net_args)
    elif not isinstance(pretrained, Converted):
        pretrained = convert_file(pretrained, class_name(net))
    what = pretrained.source
    if not pretrained.layout and misfit(net, pretrained.state, net_args):  # a bare state dict of another net
        from m3l.layouts import LAYOUTS

        what += f" (in none of the layouts m3l knows: {', '.join(LAYOUTS)})"
    return load_into(net, pretrained.state, what, net_args)


def split_pretrained(net_cfg: dict, model: str | None = None) -> tuple[dict, Weights | Converted | None]:
    """A net config without its ``pretrained`` key, and what that key asks for.

    ``pretrained: true`` means ``model``'s first entry for the config's ``_target_``; a name means that
    entry; anything else is a weights file, read and converted here (see :func:`convert_file`). The
    architecture arguments of an entry, or those a file implies, replace the config's (weights fix the
    architecture; one line says which changed), so one override is enough: ``net.pretrained=FILE``.
    """
    net_cfg = dict(net_cfg)
    pretrained = net_cfg.pop("pretrained", None)
    target = net_cfg.get("_target_")
    if pretrained in (None, False, ""):
        return net_cfg, None
    if pretrained is True:
        candidates = [w for w in WEIGHTS.values() if w.target == target]
        chosen = [w for w in candidates if w.model == model] or candidates
        if not chosen:
            raise M3LError(f"net.pretrained=true: no known weights for {target}; give a weights "
                           f"file (net.pretrained=PATH) or one of: {', '.join(sorted(WEIGHTS)) or 'none'}")
        pretrained = chosen[0]
    elif str(pretrained) in WEIGHTS:
        pretrained = WEIGHTS[str(pretrained)]
    else:
        pretrained = convert_file(str(pretrained), target)
    what = pretrained.name if isinstance(pretrained, Weights) else f"{pretrained.source}: {pretrained.layout}"
    file_target = pretrained.target
    if file_target and target != file_target:
        raise M3LError(f"net.pretrained: {what} holds weights of {file_target}, not of this model's "
                       f"{target}; use {model_for(file_target)}")
    args = file_args(pretrained)
    changed = {k: v for k, v in args.items() if net_cfg.get(k) != v}
    if "channels" in changed and "channels" in net_cfg:  # the net's channels are the data's (${data.channels})
        raise M3LError(f"net.pretrained: {what} is for {args['channels']}-channel images, the data has "
                       f"{net_cfg['channels']}: pass data.channels={args['channels']}")
    if changed:
        print(f"pretrained {what}; using " + " ".join(override(k, v) for k, v in changed.items()))
    return {**net_cfg, **args}, pretrained


def file_args(pretrained: Weights | Converted | None) -> dict:
    """The architecture arguments that ``pretrained`` fixes (an entry's, or those its file implies, checked)."""
    if pretrained is None:
        return {}
    return dict(pretrained.net if isinstance(pretrained, Weights) else pretrained.net_args)


def build_net(net_cfg: dict, model: str | None = None) -> nn.Module:
    """The net of ``net_cfg`` (a net config as plain containers, ``pretrained`` key included) with its weights.

    The config's own keys go to :func:`hydra.utils.instantiate`; the architecture arguments a weights file fixes
    (checked by :func:`check_net_args`) are passed to the class as plain Python arguments, never through Hydra;
    the net is checked against the file on the ``meta`` device before it is built (:func:`build_checked`).
    """
    from hydra.utils import instantiate

    config, pretrained = split_pretrained(net_cfg, model)
    fixed = file_args(pretrained)
    if not fixed:
        net = instantiate(config, _convert_="all")
    else:
        own = {k: v for k, v in config.items() if k not in fixed}
        make = instantiate(own, _convert_="all", _partial_=True)
        state = pretrained.state if isinstance(pretrained, Converted) else None
        net = build_checked(lambda: make(**fixed), state, pretrained.name if isinstance(pretrained, Weights)
                            else pretrained.source, config)
    if pretrained is not None:
        load_pretrained(net, pretrained, net_args=config)
    return net


def check_converted(converted: Converted) -> None:
    """Load ``converted`` into the net it implies (its class, built with its arguments; strict): what ``hub
    convert`` checks before it writes. A file without a known class is only checked for finite float tensors."""
    if not converted.target:
        return
    what = converted.source
    cls = net_class(converted.target, f"pretrained {what}")
    net = build_checked(lambda: cls(**converted.net_args), converted.state, what, converted.net_args)
    load_into(net, converted.state, what, converted.net_args)


def write(converted: Converted, out: str | os.PathLike) -> str:
    """Write ``converted`` to ``out`` in m3l's layout, atomically; returns its sha256.

    The file holds ``state_dict`` (the net's weights alone: no optimizer, no config), ``m3l_layout: 1``,
    ``m3l_target`` (the net's class) and ``m3l_net_args`` (its architecture arguments), plain containers
    that load with ``weights_only=True``.
    """
    from m3l.io.atomic import atomic_write

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": converted.state, "m3l_layout": 1, "m3l_net_args": converted.net_args}
    if converted.target:
        payload["m3l_target"] = converted.target
    with atomic_write(out) as f:
        torch.save(payload, f)
    return sha256(out)


def release(checkpoint: str | os.PathLike, out: str | os.PathLike) -> str:
    """Write the net weights of an m3l checkpoint (or any known weights file) to ``out``; returns its sha256."""
    return write(convert_file(checkpoint), out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("convert", "release", "-h", "--help"):
        argv = ["release", *argv]  # the first form: python -m m3l.hub CHECKPOINT OUT.pth
    parser = argparse.ArgumentParser(prog="python -m m3l.hub", description="Write a weights file in m3l's layout "
                                     "(the net's weights, class and architecture arguments) and print its sha256.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help in (("convert", "any weights file m3l knows: the authors' released files (MatConvNet .mat, "
                                   "KAIR, BasicSR, ...), m3l checkpoints"),
                       ("release", "a checkpoint written by m3l.run.train (or a state dict), for the weights table")):
        command = commands.add_parser(name, help=help)
        command.add_argument("file", help="the weights file or checkpoint to read, or the name of a WEIGHTS entry")
        command.add_argument("out", help="the weights file to write (.pth)")
    args = parser.parse_args(argv)
    try:
        entry = WEIGHTS.get(args.file)  # an entry's name: its file, downloaded and checked
        converted = convert_file(download(entry), entry.target, entry.layout) if entry else convert_file(args.file)
        check_converted(converted)  # the net it implies takes it (strict): nothing else is written as a release
        digest = write(converted, args.out)
    except M3LError as error:
        print(f"m3l.hub: error: {error}", file=sys.stderr)
        return 2
    overrides = ([model_for(converted.target)] if converted.target else []) + \
        [override(k, v) for k, v in converted.net_args.items()]
    print(f"{args.out}\nlayout: {converted.layout or 'a bare state dict'}\nsha256: {digest}\n"
          f"overrides: {' '.join(overrides) or 'none known'}\n"
          f"to release it: a URL whose file name ends with -{digest[:8]}.pth")
    return 0


def local_weights(entry: Weights, folder: str | os.PathLike | None = None, cache: bool = True) -> Path | None:
    """The entry's file on this machine, without downloading: under ``folder`` (at any depth) by its released
    name (``sigma=25.mat``) with the table's sha256 where it pins one (a file of that name with another sha256 is
    skipped with one line on stderr), else (``cache``) where :func:`download` keeps it in torch.hub's cache; None
    when neither has it. ``benchmarks/published.py --weights DIR`` and the workflow's ``weights_dir`` use it."""
    import sys

    for path in sorted(Path(folder).rglob(entry.released_name)) if folder is not None else []:
        if not path.is_file():
            continue
        if entry.sha256 is None or sha256(path) == entry.sha256:
            return path
        print(f"{entry.name}: {path} is not the table's file (sha256 differs); skipped", file=sys.stderr)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    if cache and cached.is_file() and (entry.sha256 is None or sha256(cached) == entry.sha256):
        return cached
    return None


if __name__ == "__main__":
    raise SystemExit(main())
