"""Reading images into tensors and writing 8-bit PNGs atomically (Pillow only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from m3l.io.atomic import atomic_write

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


# JPEG's full-range BT.601 YCbCr (what JPEG files hold), rows Y, Cb, Cr from R, G, B; Cb and Cr offset by 0.5.
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
RGB_FROM_YCBCR = np.linalg.inv(YCBCR).astype(np.float32)


def is_color(img: Image.Image) -> bool:
    """Whether a Pillow image holds colour (not a gray image stored as RGB or palette)."""
    if img.mode in ("1", "L", "LA", "I", "F") or img.mode.startswith("I;16"):
        return False
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def read_for_correction(path: str | os.PathLike, channels: int = 1, color_input: str = "luma"):
    """An image to correct: ``(input, keep)``, ``input`` as :func:`read_image` gives it, ``keep`` what its output
    keeps of it: ``icc`` (the ICC colour profile, bytes), ``exif`` (EXIF bytes, orientation applied so reset) and,
    for a colour image given to a gray net (``channels=1``), ``chroma``: with ``color_input="luma"`` the net gets
    the luminance Y (full-range BT.601, as JPEG) and the output is Y' with the input's Cb and Cr, in colour;
    ``"refuse"``: one line naming the colour models to use instead."""
    from m3l.errors import M3LError, shown

    with Image.open(path) as img:
        icc = img.info.get("icc_profile") or b""
        upright = ImageOps.exif_transpose(img)
        exif = upright.getexif()
        exif.pop(0x0112, None)  # the orientation is applied to the pixels
        keep = {"icc": icc, "exif": exif.tobytes() if len(exif) else b""}
        if channels != 1 or not is_color(upright):
            return read_image(path, channels), keep
        if color_input != "luma":
            raise M3LError(f"{shown(path)} is a colour image and this net restores gray ones: use a colour model "
                           f"(model=dncnn_color, model=ffdnet data.channels=3 net.pretrained=ffdnet_color, "
                           f"model=drunet data.channels=3, ...), or data.color_input=luma to restore its luminance "
                           f"and keep its colours")
        rgb = np.asarray(upright.convert("RGB"), dtype=np.float32) / 255.0
    ycbcr = torch.from_numpy(np.ascontiguousarray((rgb @ YCBCR.T).transpose(2, 0, 1)))
    ycbcr[1:] += 0.5
    return ycbcr[:1].contiguous(), {**keep, "chroma": ycbcr[1:].contiguous()}


def with_chroma(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB ``(3, H, W)`` from a restored luminance ``(1, H, W)`` and the input's ``(2, H, W)`` Cb, Cr."""
    ycbcr = torch.cat([luma.float(), chroma.float() - 0.5]).permute(1, 2, 0)
    return (ycbcr @ torch.from_numpy(RGB_FROM_YCBCR).T).permute(2, 0, 1).clamp(0, 1)


# serializer.format: file suffix, Pillow format, bits a sample
FORMATS = {"png": (".png", "PNG", 8), "png16": (".png", "PNG", 16), "tiff": (".tif", "TIFF", 16),
           "jpeg": (".jpg", "JPEG", 8)}


def write_image(image: torch.Tensor, path: str | os.PathLike, format: str = "png", quality: int = 95,
                icc: bytes = b"", exif: bytes = b"") -> Path:
    """Write ``image`` (``(C, H, W)`` in [0, 1]) atomically as ``format`` (:data:`FORMATS`: 8-bit PNG, 16-bit PNG
    (gray), 16-bit TIFF, JPEG at ``quality``), with the input's ICC profile and EXIF where given."""
    path, (_, pillow, bits) = Path(path), FORMATS[format]
    extra = {k: v for k, v in (("icc_profile", icc), ("exif", exif)) if v}
    if bits == 16 and pillow == "TIFF":
        import tifffile  # scikit-image's dependency: it writes 16-bit RGB, which Pillow cannot
        array = image.detach().float().clamp(0, 1).mul(65535).round().to(torch.int32).cpu().numpy().astype(np.uint16)
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
        with atomic_write(path) as f:
            tifffile.imwrite(f, array, photometric="minisblack" if array.ndim == 2 else "rgb",
                             iccprofile=icc or None)
        return path
    if bits == 16:
        if image.shape[0] != 1:
            from m3l.errors import M3LError

            raise M3LError("serializer.format=png16 writes gray images (Pillow has no 16-bit colour PNG): use "
                           "serializer.format=tiff for 16-bit colour")
        array = image.detach().float().clamp(0, 1).mul(65535).round().to(torch.int32).cpu().numpy()[0]
        picture = Image.fromarray(array.astype(np.uint16))
    else:
        picture = Image.fromarray(to_uint8(image))
    options = {"quality": int(quality)} if pillow == "JPEG" else {}
    with atomic_write(path) as f:
        picture.save(f, format=pillow, **options, **extra)
    return path


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
    """Write ``image`` as an 8-bit PNG, atomically (see :mod:`m3l.io.atomic`): complete under ``path`` or absent."""
    path = Path(path)
    with atomic_write(path) as f:
        Image.fromarray(to_uint8(image)).save(f, format="PNG")
    return path
