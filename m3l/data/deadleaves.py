"""Synthetic training images from the dead-leaves model.

Opaque disks with power-law distributed radii fall on the image until it is covered; each new disk
lies under the ones already there. The resulting images share the scale invariance, edges and flat
regions of natural photos, which makes them a download-free training set for denoisers.
"""

from __future__ import annotations

import numpy as np


def dead_leaves(size: int, rng: np.random.Generator, rmin: float = 1.0, rmax: float | None = None,
                alpha: float = 3.0, channels: int = 1, max_disks: int = 20000) -> np.ndarray:
    """One ``(channels, size, size)`` float32 image in [0, 1].

    Radii follow ``p(r) ~ r^-alpha`` on ``[rmin, rmax]`` (inverse-CDF sampling); colours are uniform.
    """
    rmax = rmax or size / 2
    image = np.zeros((channels, size, size), np.float32)
    covered = np.zeros((size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size]
    a = 1.0 - alpha
    for _ in range(max_disks):
        u = rng.random()
        r = (rmin**a + u * (rmax**a - rmin**a)) ** (1.0 / a)
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, size)
        colour = rng.random(channels).astype(np.float32)
        if y0 >= y1 or x0 >= x1:
            continue
        disk = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        new = disk & ~covered[y0:y1, x0:x1]
        if not new.any():
            continue
        for c in range(channels):
            image[c, y0:y1, x0:x1][new] = colour[c]
        covered[y0:y1, x0:x1] |= new
        if covered.all():
            break
    return image


def dead_leaves_set(count: int, size: int, seed: int = 0, channels: int = 1, **kwargs) -> list[np.ndarray]:
    """``count`` dead-leaves images, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [dead_leaves(size, rng, channels=channels, **kwargs) for _ in range(count)]
