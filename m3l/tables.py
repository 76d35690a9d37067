"""Result tables: per-image rows to the per-test-set summary, and CSVs written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

SUMMARY_COLUMNS = ["dataset", "degradation", "n_images", "psnr", "ssim"]


def summarize(per_image) -> pd.DataFrame:
    """One row per (dataset, degradation): ``n_images`` and mean ``psnr`` / ``ssim`` (and ``psnrb`` when
    measured, see the ``metrics`` config key), in first-seen order."""
    frame = pd.DataFrame(per_image)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    extra = {"psnrb": ("psnrb", "mean")} if "psnrb" in frame else {}
    grouped = frame.groupby(["dataset", "degradation"], sort=False)
    summary = grouped.agg(n_images=("image", "size"), psnr=("psnr", "mean"), ssim=("ssim", "mean"), **extra)
    return summary.reset_index()[SUMMARY_COLUMNS + list(extra)]


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


def benchmark(metrics) -> pd.DataFrame:
    """``{model: summary table}`` to one row per model, with columns ``<dataset>/<degradation>/psnr``
    and ``.../ssim`` in first-seen order (empty where a model lacks a pair)."""
    cells = {}
    for model, frame in metrics.items():
        for row in pd.DataFrame(frame).itertuples(index=False):
            for metric in ("psnr", "ssim"):
                cells.setdefault(f"{row.dataset}/{row.degradation}/{metric}", {})[model] = getattr(row, metric)
    table = pd.DataFrame(cells, index=pd.Index(list(metrics), name="model"))
    return table.reset_index()


def benchmark_markdown(table: pd.DataFrame) -> str:
    """The benchmark table in Markdown: a ``PSNR / SSIM`` cell per model and test set x degradation."""
    pairs = [c.removesuffix("/psnr") for c in table.columns if c.endswith("/psnr")]
    lines = ["| model | " + " | ".join(pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for _, row in table.iterrows():
        cells = [f"{row[p + '/psnr']:.2f} / {row[p + '/ssim']:.4f}" if pd.notna(row[p + "/psnr"]) else "–"
                 for p in pairs]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nPSNR (dB) / SSIM, mean over each test set.\n"
