"""Reading images into tensors and writing 8-bit PNGs atomically (Pillow only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from m3l.atomic import atomic_write

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
SIXTEEN_BIT_FORMATS = frozenset({"PNG", "PPM"})  # at most 16 bits a sample, even when Pillow's mode is I (32-bit)


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
    16-bit ones (PNG, and PGM / PPM, which Pillow opens in its 32-bit mode ``I`` with values scaled to
    0-65535), int32 for other images in mode ``I`` (32-bit TIFF); see :func:`read_image`."""
    with Image.open(path) as img:
        sixteen = img.format in SIXTEEN_BIT_FORMATS  # read before exif_transpose, whose copy has no format
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            if img.mode.startswith("I;16") or sixteen:  # 16-bit PNG / PGM / PPM (Pillow may say mode I)
                array = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
            else:
                array = np.asarray(img).astype(np.int32)
            array = array[None] if channels == 1 else np.repeat(array[None], channels, axis=0)
            return np.ascontiguousarray(array)
        img = img.convert("L" if channels == 1 else "RGB")
        array = np.array(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def read_named(path: str | os.PathLike, channels: int = 1) -> torch.Tensor:
    """:func:`read_image` for a data set, where an image that cannot be read stops the run: one line
    (:class:`~m3l.errors.M3LError`) naming the file, instead of Pillow's traceback (an empty, cut or foreign file, a
    decompression bomb)."""
    from m3l.errors import M3LError, shown

    try:
        return read_image(path, channels)
    except Exception as error:  # Pillow raises many types for bad files
        first = (str(error).splitlines() or [""])[0]
        raise M3LError(f"{shown(path)}: cannot read it as an image ({type(error).__name__}: {first}); remove or "
                       f"replace it") from None


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
