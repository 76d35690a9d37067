"""Result tables: per-image rows to the per-test-set summary, and CSVs written atomically."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from m3l.atomic import atomic_write, remove_temporaries
from m3l.errors import M3LError

SUMMARY_COLUMNS = ["dataset", "degradation", "n_images", "psnr", "ssim"]
INPUT_ROW = "degraded input"  # the benchmark's row of the test images before correction
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "psnrb": "PSNR-B (dB)"}


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
    """Write ``frame`` to ``path`` atomically (see :mod:`m3l.atomic`): a killed run leaves the table
    complete or absent, never truncated. A write error (a full disk) names the path; an earlier table
    stays as it was."""
    path = Path(path)
    remove_temporaries([path])  # what a killed earlier write left
    try:
        with atomic_write(path, "w", newline="") as f:
            frame.to_csv(f, index=False, float_format="%.6f")
    except OSError as error:
        raise M3LError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def benchmark(metrics) -> pd.DataFrame:
    """``{model: summary table}`` to one row per model, with columns ``<dataset>/<degradation>/psnr``,
    ``.../ssim`` and, where measured, ``.../psnrb`` in first-seen order (empty where a model lacks a pair)."""
    cells = {}
    for model, frame in metrics.items():
        frame = pd.DataFrame(frame)
        measured = [m for m in ("psnr", "ssim", "psnrb") if m in frame]
        for row in frame.to_dict("records"):
            for metric in measured:
                cells.setdefault(f"{row['dataset']}/{row['degradation']}/{metric}", {})[model] = row[metric]
    table = pd.DataFrame(cells, index=pd.Index(list(metrics), name="model"))
    return table.reset_index()


def input_summary(per_image) -> pd.DataFrame:
    """The summary (as :func:`summarize`) of the degraded inputs themselves: the ``<metric>_input`` columns of
    per-image tables (``m3l.run.test``'s ``per_image.csv``; one frame or a list, an image scored twice counts
    once). Empty where no table has them."""
    frames = [pd.DataFrame(f) for f in (per_image if isinstance(per_image, (list, tuple)) else [per_image])]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    inputs = {f"{m}_input": m for m in ("psnr", "ssim", "psnrb")}
    if not {"psnr_input", "ssim_input"} <= set(frame.columns):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = frame.drop_duplicates(["dataset", "degradation", "image"])
    keep = ["dataset", "degradation", "image", *(c for c in inputs if c in frame)]
    return summarize(frame[keep].rename(columns=inputs))


def benchmark_html(table: pd.DataFrame, caption: str) -> str:
    """The benchmark table as an HTML fragment (a ``<p>`` caption and a ``<table>``): a row per model, a column
    pair (PSNR, SSIM; PSNR-B where measured) per test set x degradation, rounded as in the Markdown table."""
    frame = table.set_index("model")
    keys = [tuple(c.rsplit("/", 1)) for c in frame.columns]
    frame.columns = pd.MultiIndex.from_tuples([(k[0], METRIC_LABELS.get(k[1], k[1])) for k in keys],
                                              names=["test set / degradation", None])
    digits = [4 if k[1] == "ssim" else 2 for k in keys]
    formatters = [(lambda d: lambda v: "–" if pd.isna(v) else f"{v:.{d}f}")(d) for d in digits]
    return f"<p>{html.escape(caption)}</p>\n" + frame.to_html(formatters=formatters, border=1) + "\n"


def published_markdown(table: pd.DataFrame, published: dict[str, dict]) -> str:
    """The benchmark's numbers next to the published ones (``{model: {"set/degradation/metric": value}}``, the
    weights table's ``metrics``): a Markdown table with a row per published number the benchmark measured,
    or ``""`` when there is none."""
    lines = []
    for _, row in table.iterrows():
        for key, value in published.get(row["model"], {}).items():
            if key in row and pd.notna(row[key]):
                digits = 4 if key.endswith("/ssim") else 2
                lines.append(f"| {row['model']} | {key} | {row[key]:.{digits}f} | {value:.{digits}f} | "
                             f"{row[key] - value:+.{digits}f} |")
    if not lines:
        return ""
    return ("\nThe released weights next to their published results:\n\n| model | test set / degradation / metric "
            "| measured | published | delta |\n|---|---|---:|---:|---:|\n" + "\n".join(lines) + "\n")


def benchmark_markdown(table: pd.DataFrame) -> str:
    """The benchmark table in Markdown: a ``PSNR / SSIM`` cell (``/ PSNR-B`` where measured) per model and
    test set x degradation."""
    pairs = [c.removesuffix("/psnr") for c in table.columns if c.endswith("/psnr")]
    lines = ["| model | " + " | ".join(pairs) + " |", "|---|" + "---:|" * len(pairs)]
    for _, row in table.iterrows():
        cells = []
        for p in pairs:
            if pd.isna(row[p + "/psnr"]):
                cells.append("–")
                continue
            cell = f"{row[p + '/psnr']:.2f} / {row[p + '/ssim']:.4f}"
            if pd.notna(row.get(p + "/psnrb")):
                cell += f" / {row[p + '/psnrb']:.2f}"
            cells.append(cell)
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    psnrb = any(c.endswith("/psnrb") for c in table.columns)
    return ("\n".join(lines) + "\n\nPSNR (dB) / SSIM" + (" / PSNR-B (dB, JPEG)" if psnrb else "")
            + ", mean over each test set.\n")
