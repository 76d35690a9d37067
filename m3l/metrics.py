"""Image quality metrics under the published evaluation protocol.

The restored image is rounded to 8 bits before it is compared with the 8-bit target, as the
reference MATLAB / numpy evaluation scripts of DnCNN, FFDNet and DRUNet do. PSNR and SSIM come
from torchmetrics (SSIM: 11x11 Gaussian window, sigma 1.5, on the channels as given).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Round to the nearest 8-bit level, in [0, 1]."""
    return image.clamp(0, 1).mul(255).round().div(255)


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, C, H, W)`` tensors in [0, 1], output rounded to 8 bits."""
    dims = tuple(range(1, output.ndim))
    return peak_signal_noise_ratio(
        quantize(output), quantize(target), data_range=1.0, reduction="none", dim=dims
    ).reshape(-1)


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of ``(N, C, H, W)`` tensors in [0, 1], output rounded to 8 bits."""
    return structural_similarity_index_measure(
        quantize(output).double(), quantize(target).double(), data_range=1.0, reduction="none"
    ).reshape(-1)
