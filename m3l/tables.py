"""Result tables: per-image rows to the per-test-set summary, and CSVs written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

SUMMARY_COLUMNS = ["dataset", "degradation", "n_images", "psnr", "ssim"]


def summarize(per_image) -> pd.DataFrame:
    """One row per (dataset, degradation): ``n_images`` and mean ``psnr`` / ``ssim``, in first-seen order."""
    frame = pd.DataFrame(per_image)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = frame.groupby(["dataset", "degradation"], sort=False)
    summary = grouped.agg(n_images=("image", "size"), psnr=("psnr", "mean"), ssim=("ssim", "mean"))
    return summary.reset_index()[SUMMARY_COLUMNS]


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False, float_format="%.6f")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
