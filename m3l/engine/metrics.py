"""Image quality metrics under the published evaluation protocols.

Every metric takes ``(N, C, H, W)`` tensors in [0, 1] and returns one value per image (SSIM and PSNR-B
in float64). Both images are rounded to 8 bits first, as the reference MATLAB / numpy evaluation
scripts do, then optionally converted to the luma channel (``y_channel``, BT.601 as MATLAB's ``rgb2ycbcr``, rounded to 8 bits) and
cropped by ``crop_border`` pixels on every side.

- PSNR: torchmetrics, data range 1 (255 on the 8-bit scale).
- SSIM: Wang et al.'s reference ``ssim_index.m`` (11x11 Gaussian window, sigma 1.5, K = 0.01 / 0.03,
  statistics over the *valid* windows only, float64), averaged over channels (a smaller window for
  images under 11 pixels). torchmetrics' SSIM
  differs in the third decimal (0.775 instead of the published 0.773 for JPEG q10 on LIVE1), so it is
  computed here; this function reproduces the published JPEG-input SSIM of LIVE1 and Classic5.
- PSNR-B (Yim & Bovik 2011, JPEG): MSE plus the blocking effect factor of the *restored* image over
  8x8 block boundaries, with the boundary pixel counts ``H * (W / 8 - 1)`` computed in floating point
  as the reference MATLAB code does (torchmetrics' ``psnrb`` counts them differently and gives 25.37
  instead of the published 25.33 on LIVE1 q10). Color images: mean over channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

# MATLAB rgb2ycbcr (BT.601, "studio swing"): Y = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1].
Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round to the nearest 8-bit level, in [0, 1]."""
    return image.clamp(0, 1).mul(255).round().div(255)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma of ``(N, 3, H, W)`` RGB in [0, 1] as MATLAB's ``rgb2ycbcr`` on uint8: in [16, 235] / 255, rounded."""
    weights = torch.tensor(Y_WEIGHTS, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    y = 16.0 + (image * weights).sum(1, keepdim=True)
    return y.round().div(255)


def prepare(image: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """8-bit rounding, then luma (RGB input only) and border crop: what every metric compares."""
    image = quantize(image.double())
    if y_channel and image.shape[1] == 3:
        image = rgb_to_y(image)
    if crop_border:
        image = image[..., crop_border:-crop_border, crop_border:-crop_border]
    return image


def psnr(output: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB."""
    output, target = prepare(output, y_channel, crop_border), prepare(target, y_channel, crop_border)
    dims = tuple(range(1, output.ndim))
    return peak_signal_noise_ratio(output, target, data_range=1.0, reduction="none", dim=dims).reshape(-1).float()


def _gaussian(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(output: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """Per-image SSIM (Wang et al.'s reference implementation: valid windows, channel mean)."""
    x, y = prepare(output, y_channel, crop_border), prepare(target, y_channel, crop_border)
    n, c, h, w = x.shape
    size = min(11, min(h, w) - (1 - min(h, w) % 2))  # images under 11 pixels: the largest odd window that fits
    g = _gaussian(size, device=x.device)

    # The five local statistics at once, the 2-D Gaussian applied as two 1-D passes (valid windows only).
    stack = torch.stack([x, y, x * x, y * y, x * y], 2).reshape(n * c * 5, 1, h, w)
    stats = F.conv2d(F.conv2d(stack, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    mx, my, xx, yy, xy = stats.reshape(n * c, 5, *stats.shape[-2:]).unbind(1)
    sxx, syy, sxy = xx - mx**2, yy - my**2, xy - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return ssim_map.reshape(n, -1).mean(1)


def blocking_effect_factor(image: torch.Tensor, block: int = 8) -> torch.Tensor:
    """BEF of Yim & Bovik per image and channel, ``(N, C)``, for ``(N, C, H, W)`` images in [0, 1]."""
    h, w = image.shape[-2:]
    cols, rows = torch.arange(w - 1, device=image.device), torch.arange(h - 1, device=image.device)
    on_cols, on_rows = (cols % block) == block - 1, (rows % block) == block - 1
    dh = (image[..., :, 1:] - image[..., :, :-1]) ** 2  # (N, C, H, W-1): differences across columns
    dv = (image[..., 1:, :] - image[..., :-1, :]) ** 2  # (N, C, H-1, W)
    boundary = dh[..., on_cols].sum((-2, -1)) + dv[..., on_rows, :].sum((-2, -1))
    inside = dh[..., ~on_cols].sum((-2, -1)) + dv[..., ~on_rows, :].sum((-2, -1))
    n_boundary = h * (w / block - 1) + w * (h / block - 1)  # floating point, as the reference code
    n_inside = h * (w - 1) + w * (h - 1) - n_boundary
    difference = boundary / n_boundary - inside / n_inside
    scale = math.log2(block) / math.log2(min(h, w))
    return (scale * difference).clamp(min=0)


def psnrb(output: torch.Tensor, target: torch.Tensor, y_channel: bool = False, crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR-B in dB (JPEG artifact removal): MSE plus the output's blocking effect factor."""
    x, y = prepare(output, y_channel, crop_border), prepare(target, y_channel, crop_border)
    mse = ((x - y) ** 2).mean((-2, -1))
    return (10 * torch.log10(1.0 / (mse + blocking_effect_factor(x)))).mean(1)


@dataclass(frozen=True)
class Metric:
    """One metric column of m3l's tables (test summaries, per-image tables, the workflow's report)."""

    measure: Callable[..., torch.Tensor]  # (output, target, y_channel, crop_border) -> per-image values
    label: str                            # the report's column heading
    always: bool = True                   # measured by every test; False: only when the protocol asks (metrics.NAME)


# Every metric column, in the order tables print them: adding a metric is one line here (and its function).
METRICS: dict[str, Metric] = {
    "psnr": Metric(psnr, "PSNR (dB)"),
    "ssim": Metric(ssim, "SSIM"),
    "psnrb": Metric(psnrb, "PSNR-B (dB)", always=False),  # JPEG artifact removal: metrics.psnrb=true
}
DEFAULT_METRICS = tuple(name for name, metric in METRICS.items() if metric.always)


def evaluate(output: torch.Tensor, target: torch.Tensor, names=DEFAULT_METRICS, y_channel: bool = False,
             crop_border: int = 0) -> dict[str, torch.Tensor]:
    """``{name: per-image values}`` for the metrics ``names`` (keys of :data:`METRICS`)."""
    return {name: METRICS[name].measure(output, target, y_channel, crop_border) for name in names}


def protocol(config=None) -> tuple[tuple[str, ...], dict]:
    """The config key ``metrics`` (``psnrb``, ``y_channel``, ``crop_border``) as the metric names and the keyword
    arguments of :func:`evaluate`; an unknown key is one line naming the known ones."""
    from m3l.errors import M3LError

    options = dict(config or {})
    optional = [name for name, metric in METRICS.items() if not metric.always]
    asked = {name: bool(options.pop(name, False)) for name in optional}
    names = tuple(name for name in METRICS if METRICS[name].always or asked.get(name))
    kwargs = {"y_channel": bool(options.pop("y_channel", False)), "crop_border": int(options.pop("crop_border", 0))}
    if options:
        known = ", ".join([*optional, "y_channel", "crop_border"])
        raise M3LError(f"metrics: unknown key(s) {sorted(options)}; known: {known}")
    return names, kwargs
