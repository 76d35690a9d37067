"""A figure of a few test images (the first ones of each test set and degradation), a row each: the degraded
input, the model's correction and the clean image, each corrected or degraded panel with its PSNR against the
clean one, for ``snakemake --report``. Panels are at native resolution (an image pixel is a figure pixel); an
image larger than ``CROP`` shows its centre ``CROP`` x ``CROP`` region (the row's title says so)."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from m3l.io.atomic import atomic_write
from m3l.run.extras import require

matplotlib = require("matplotlib", "workflow", "the workflow's example figure")  # first: a missing one is one line
matplotlib.use("Agg")
plt = require("matplotlib.pyplot", "workflow", "the workflow's example figure")

from m3l.io.images import list_images, read_image  # noqa: E402
from m3l.engine.metrics import psnr  # noqa: E402

CROP = 256  # largest panel side, in pixels
DPI = 100
PAD, LABEL, MIN_COLUMN = 8, 30, 130  # pixels: between panels, above a panel (title, label), narrowest column

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
model = snakemake.wildcards.model  # noqa: F821
rows = []
inputs = snakemake.input  # noqa: F821
for degraded, corrected, clean in zip(inputs.degraded, inputs.corrected, inputs.clean):
    for folder in sorted(p for p in Path(degraded).iterdir() if p.is_dir()):
        for image in list_images(folder)[: snakemake.params.per_set]:  # noqa: F821
            relative = image.relative_to(degraded)
            title = f"{Path(degraded).name}/{relative}"
            rows.append((title, image, Path(corrected) / relative, Path(clean) / relative))


def centre(pixels: np.ndarray) -> np.ndarray:
    """The centre ``CROP`` x ``CROP`` region of ``pixels`` (all of it where smaller)."""
    h, w = pixels.shape[:2]
    top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    return pixels[top : top + CROP, left : left + CROP]


panels = []  # per row: title, [(label, pixels)]
for title, degraded, corrected, clean in rows:
    with Image.open(clean) as image:
        channels = 1 if image.mode in ("L", "I;16", "I") else 3
        size = image.size
    target = read_image(clean, channels)[None]
    row = []  # (label, PSNR against the clean image or "", pixels)
    for label, path in (("degraded", degraded), (model, corrected), ("clean", clean)):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # uint8 RGB: drawn as they are, no colour map
        score = "" if path == clean else f"{psnr(read_image(path, channels)[None], target).item():.2f} dB"
        row.append((label, score, centre(pixels)))
    shown = row[-1][2].shape[1::-1]  # width, height of the panels
    panels.append((f"{title} ({size[0]}x{size[1]}{f', centre {shown[0]}x{shown[1]}' if shown != size else ''})", row))

column = max([MIN_COLUMN] + [p.shape[1] for _, row in panels for _, _, p in row])
heights = [LABEL + max(p.shape[0] for _, _, p in row) + PAD for _, row in panels]
width, height = 3 * column + 4 * PAD, sum(heights) + PAD
figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
top = PAD
for (title, row), row_height in zip(panels, heights):
    figure.text(PAD / width, 1 - top / height, title, fontsize=7, va="top", ha="left")
    for i, (label, score, pixels) in enumerate(row):
        x = PAD + i * (column + PAD)
        text = f"{label}: {score}" if score else label
        figure.text(x / width, 1 - (top + LABEL / 2) / height, text, fontsize=7, va="top", ha="left")
        # figimage: pixels placed 1:1 from the figure's bottom-left corner, no resampling
        figure.figimage(pixels, xo=x, yo=height - (top + LABEL + pixels.shape[0]), origin="upper")
    top += row_height
with atomic_write(snakemake.output[0]) as f:  # noqa: F821
    figure.savefig(f, format="png", dpi=DPI)
print("\n".join(f"{title}: {', '.join(f'{label} {score}' for label, score, _ in row[:2])}" for title, row in panels))
