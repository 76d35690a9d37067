"""The embedded default dataset: needs no download, so every command works on a fresh machine.

- training: dead-leaves images (:mod:`m3l.data.deadleaves`), generated once and cached;
- validation and test: natural photos that scikit-image ships inside its wheel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from m3l.data.deadleaves import dead_leaves_set

VAL_PHOTOS = ("camera.png", "coins.png")
TEST_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")


def cache_dir() -> Path:
    """m3l's cache folder: ``$M3L_CACHE``, else ``$XDG_CACHE_HOME/m3l``, else ``~/.cache/m3l``."""
    if os.environ.get("M3L_CACHE"):
        return Path(os.environ["M3L_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3l"


def photos(split: str) -> list[Path]:
    """Paths of the embedded natural photos for ``split`` ("val" or "test")."""
    names = {"val": VAL_PHOTOS, "test": TEST_PHOTOS}[split]
    root = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
    return [root / name for name in names]


def dead_leaves_images(count: int = 100, size: int = 128, seed: int = 0, channels: int = 1,
                       rmin: float = 3.0) -> np.ndarray:
    """``(count, channels, size, size)`` anti-aliased dead-leaves images, cached as ``.npy``.

    Drawn at twice the size and averaged down 2x2, so edges are anti-aliased like a camera's.
    ``rmin`` is the smallest disk radius in output pixels: 3 gives the flat regions and edges that
    teach a denoiser fastest (at 0.5 the images are mostly sub-pixel clutter and training crawls).
    """
    key = hashlib.sha1(f"deadleaves-v1-{count}-{size}-{seed}-{channels}-{rmin}".encode()).hexdigest()[:12]
    path = cache_dir() / f"deadleaves-{count}x{channels}x{size}-{key}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a damaged cache file is simply rebuilt
    images = np.stack(dead_leaves_set(count, 2 * size, seed=seed, channels=channels, rmin=2 * rmin))
    images = images.reshape(count, channels, size, 2, size, 2).mean(axis=(3, 5)).astype(np.float32)
    from m3l.io.atomic import atomic_write

    with atomic_write(path) as f:
        np.save(f, images)
    return images
