"""Degradations: callables ``(clean, rng) -> (degraded, side)``.

``clean`` is a ``(C, H, W)`` float tensor in [0, 1]; ``rng`` a ``numpy.random.RandomState`` so that
evaluation reproduces the published protocol (``np.random.seed(0)`` before each image). ``side`` is a
dict of tensors describing the degradation (e.g. the noise level); the restoration module passes each
entry to nets whose ``forward`` takes an argument of that name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class GaussianNoise:
    """Additive white Gaussian noise, ``sigma`` on the 0-255 scale: fixed, or ``[low, high]`` drawn per image.

    Float noise, no clipping of the noisy image (the DnCNN / FFDNet / DRUNet test protocol). Noise is
    drawn in ``(H, W, C)`` order, as the reference numpy scripts do, so gray and color test images get
    exactly the published noise.
    """

    def __init__(self, sigma: float | Sequence[float] = 25.0):
        self.sigma = sigma
        self.blind = isinstance(sigma, Sequence) and not isinstance(sigma, str)
        if self.blind and len(sigma) != 2:
            raise ValueError(f"sigma must be a number or [low, high], got {sigma!r}")

    @property
    def name(self) -> str:
        return f"sigma{self.sigma[0]:g}-{self.sigma[1]:g}" if self.blind else f"sigma{self.sigma:g}"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        sigma = float(rng.uniform(*self.sigma)) if self.blind else float(self.sigma)
        c, h, w = clean.shape
        noise = rng.normal(0.0, sigma / 255.0, (h, w, c)).astype(np.float32).transpose(2, 0, 1)
        noisy = clean + torch.from_numpy(np.ascontiguousarray(noise))
        return noisy, {"sigma": torch.tensor(sigma / 255.0, dtype=torch.float32)}

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma!r})"
