#!/usr/bin/env python3
"""Correct images with a model exported by ``python -m m3l.run.export``, using only torch and Pillow.

    python deploy/correct_exported.py MODEL_FILE IN OUT [--sigma S] [--quality Q] [--device cpu|cuda] [--threads N]

``MODEL_FILE`` is a ``torch.export`` archive (``format=export``) or a TorchScript file
(``format=torchscript``); which one is read from the file itself. ``IN`` is an image or a folder
(searched recursively); each corrected image is written under ``OUT`` as an 8-bit PNG with the input's
relative path and name, through a temporary file and a rename. Unreadable files are skipped with a
warning, and so are images under the model's minimum size (``min_size``: the U-Nets take from their
padding multiple + 1 pixels on). A model that takes the noise level (FFDNet, DRUNet) needs ``--sigma``
(0-255), a non-blind FBCNN ``--quality`` (1-100). Copy this file next to the model: it imports nothing
from m3l, Lightning or Hydra. (Video models and ONNX files: run them yourself, see the README.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image, ImageOps

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
METADATA = "m3l.json"


def load_model(path: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The exported module (on ``device``) and its ``m3l.json`` metadata (channels, ...)."""
    extra = {METADATA: ""}
    if any(name.endswith("/archive_format") for name in zipfile.ZipFile(path).namelist()):
        with open(path, "rb") as f:
            program = torch.export.load(f, extra_files=extra)
        if torch.device(device).type != "cpu":  # the devices recorded at export (the CPU's) become this one
            program = torch.export.passes.move_to_device_pass(program, device)
        model = program.module()
    else:
        model = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
    text = extra[METADATA]
    return model, json.loads(text.decode() if isinstance(text, bytes) else text or "{}")


def list_images(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not p.name.startswith("."))


def read_image(path: Path, channels: int) -> torch.Tensor:
    """``(channels, H, W)`` float in [0, 1]; 16-bit gray PNGs keep their precision."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        width, height = img.size
        if img.mode == "I;16" and channels == 1:
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.int16).to(torch.int32) & 0xFFFF
            return data.view(1, height, width).float().div_(65535.0)
        img = img.convert("L" if channels == 1 else "RGB")
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(height, width, channels).permute(2, 0, 1).float().div_(255.0)


def write_png(image: torch.Tensor, path: Path) -> None:
    """``(C, H, W)`` in [0, 1] to an 8-bit PNG (rounded), through a temporary file and a rename."""
    channels, height, width = image.shape
    pixels = image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).reshape(-1).cpu()
    buffer = bytearray(pixels.numel())
    torch.frombuffer(buffer, dtype=torch.uint8).copy_(pixels)
    picture = Image.frombytes("L" if channels == 1 else "RGB", (width, height), bytes(buffer))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            picture.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


SCALES = {"sigma": 255.0, "quality": 100.0}  # the side inputs' command-line units -> the model's [0, 1] scale


def correct(model: torch.nn.Module, channels: int, source: Path, out: Path, device: str = "cpu",
            side: tuple[float, ...] = (), min_size: int = 1) -> tuple[int, list[str]]:
    """Correct every image under ``source`` into ``out``, passing the ``side`` inputs (on the [0, 1] scale, in the
    model's order) after each image; returns (written, skipped names)."""
    written, skipped = 0, []
    extra = [torch.full((1,), value, device=device) for value in side]
    with torch.inference_mode():
        for path in list_images(source):
            name = path.name if source.is_file() else path.relative_to(source).as_posix()
            try:
                image = read_image(path, channels)
            except Exception as error:  # Pillow raises several types for bad files
                print(f"warning: skipping {name}: not a readable image ({type(error).__name__}: {error})",
                      file=sys.stderr)
                skipped.append(name)
                continue
            if min(image.shape[-2:]) < min_size:
                print(f"warning: skipping {name}: {image.shape[-1]}x{image.shape[-2]} is under the model's minimum "
                      f"size {min_size}", file=sys.stderr)
                skipped.append(name)
                continue
            output = model(image[None].to(device), *extra)[0]
            write_png(output, out / Path(name).with_suffix(".png"))
            written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="file written by python -m m3l.run.export")
    parser.add_argument("input", type=Path, help="an image or a folder of images")
    parser.add_argument("output", type=Path, help="folder for the corrected PNGs")
    parser.add_argument("--sigma", type=float, help="the noise level, 0-255 (models that take it: FFDNet, DRUNet)")
    parser.add_argument("--quality", type=float, help="the JPEG quality, 1-100 (a non-blind FBCNN)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    for what, path in (("model", args.model), ("input", args.input)):
        if not path.exists():
            print(f"error: {what} {path} does not exist", file=sys.stderr)
            return 2
    if not zipfile.is_zipfile(args.model):
        print(f"error: model {args.model} is not a file written by m3l.run.export", file=sys.stderr)
        return 2
    if not list_images(args.input):
        print(f"error: no images (png, jpg, bmp, tif, ...) in {args.input}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = load_model(args.model, args.device)
    if info.get("frames"):
        print(f"error: model {args.model} is a video model ({info['frames']} frames in); this runner corrects images",
              file=sys.stderr)
        return 2
    names = info.get("inputs", ["image"])[1:]
    missing = [name for name in names if getattr(args, name, None) is None]
    if missing:
        print(f"error: model {args.model} takes {' and '.join(missing)}: pass "
              f"{' '.join(f'--{name} VALUE' for name in missing)}", file=sys.stderr)
        return 2
    side = tuple(getattr(args, name) / SCALES[name] for name in names)
    start = time.perf_counter()
    written, skipped = correct(model, int(info.get("channels", 1)), args.input, args.output, args.device, side,
                               int(info.get("min_size", 1)))
    seconds = time.perf_counter() - start
    message = f"wrote {written} images to {args.output} ({written / seconds:.3g} images/s)"
    print(message + (f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else ""))
    return 0 if written else 2


if __name__ == "__main__":
    sys.exit(main())
