"""A figure of a few corrected images next to their degraded inputs (the first ones of each test set
and degradation), for ``snakemake --report``."""

import os
import sys
from pathlib import Path

from PIL import Image

from m3l.extras import require
from m3l.imageio import list_images

matplotlib = require("matplotlib", "workflow", "the workflow's example figure")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
pairs = []
for degraded, corrected in zip(snakemake.input.degraded, snakemake.input.corrected):  # noqa: F821
    for folder in sorted(p for p in Path(degraded).iterdir() if p.is_dir()):
        for image in list_images(folder)[: snakemake.params.per_set]:  # noqa: F821
            relative = image.relative_to(degraded)
            pairs.append((f"{Path(degraded).name}/{relative}", image, Path(corrected) / relative))

figure, axes = plt.subplots(len(pairs), 2, figsize=(8, 4 * len(pairs)), squeeze=False)
for row, (title, degraded, corrected) in zip(axes, pairs):
    for ax, path, what in zip(row, (degraded, corrected), ("input", "corrected")):
        image = Image.open(path)
        ax.imshow(image, cmap="gray" if image.mode == "L" else None, vmin=0, vmax=255)
        ax.set_title(f"{title}: {what}", fontsize="small")
        ax.axis("off")
plt.tight_layout()
out = Path(snakemake.output[0])  # noqa: F821
plt.savefig(out.with_name(f".{out.name}.tmp"), format="png", dpi=80)
os.replace(out.with_name(f".{out.name}.tmp"), out)
print("\n".join(title for title, _, _ in pairs))
