"""Reading images into tensors and writing 8-bit PNGs atomically (Pillow only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from m3l.atomic import atomic_write

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (a folder, searched recursively, or a single image), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image(p) and not p.name.startswith("."))


def read_image(path: str | os.PathLike, channels: int = 1) -> torch.Tensor:
    """Load an image as a float tensor ``(channels, H, W)`` in [0, 1].

    EXIF orientation is applied; 16-bit images keep their precision; alpha is dropped; any mode
    (palette, CMYK, ...) is converted to gray (``channels=1``) or RGB (``channels=3``).
    ``read_image(p, c)`` is ``to_float(decode_image(p, c))``, so pixels decoded once (the training cache,
    :mod:`m3l.data.cache`) and converted later give exactly the same floats.
    """
    return to_float(decode_image(path, channels))


def decode_image(path: str | os.PathLike, channels: int = 1) -> np.ndarray:
    """The decoded pixels of an image as integers, ``(channels, H, W)``: uint8 for 8-bit images, uint16 for
    16-bit ones, int32 for Pillow's 32-bit mode ``I``; see :func:`read_image`."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(img).astype(np.uint16 if img.mode.startswith("I;16") else np.int32)
            array = array[None] if channels == 1 else np.repeat(array[None], channels, axis=0)
            return np.ascontiguousarray(array)
        img = img.convert("L" if channels == 1 else "RGB")
        array = np.array(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def to_float(array: np.ndarray) -> torch.Tensor:
    """Pixels from :func:`decode_image` (or any crop of them) as a float tensor in [0, 1]: uint8 / 255,
    uint16 / 65535, int32 / (2**32 - 1)."""
    if array.dtype == np.uint8:
        return torch.from_numpy(np.array(array, order="C")).float().div_(255.0)
    scale = 65535.0 if array.dtype == np.uint16 else 4294967295.0
    return torch.from_numpy(np.ascontiguousarray(array.astype(np.float32) / scale))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] to an ``(H, W)`` or ``(H, W, C)`` uint8 array, rounded (not truncated)."""
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def write_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``image`` as an 8-bit PNG, atomically (see :mod:`m3l.atomic`): complete under ``path`` or absent."""
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(to_uint8(image)).save(f, format="PNG")
    return path
