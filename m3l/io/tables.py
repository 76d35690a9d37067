"""Result tables: per-image rows to the per-test-set summary, and CSVs written atomically."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pandas as pd

from m3l.io.atomic import atomic_write, remove_temporaries
from m3l.errors import M3LError

from m3l.engine.metrics import DEFAULT_METRICS, METRICS

SUMMARY_COLUMNS = ["dataset", "degradation", "n_images", *DEFAULT_METRICS]
INPUT_ROW = "degraded input"  # the benchmark's row of the test images before correction
METRIC_ORDER = tuple(METRICS)  # every metric column, in m3l.engine.metrics.METRICS's order
METRIC_LABELS = {name: metric.label for name, metric in METRICS.items()}


def summarize(per_image) -> pd.DataFrame:
    """One row per (dataset, degradation): ``n_images`` and the mean of every metric column measured (those of
    :data:`m3l.engine.metrics.METRICS` the rows have: the default ones, and ``psnrb`` when the ``metrics``
    config key asks for it), in first-seen order."""
    frame = pd.DataFrame(per_image)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    measured = [name for name in METRICS if name in frame]
    grouped = frame.groupby(["dataset", "degradation"], sort=False)
    summary = grouped.agg(n_images=("image", "size"), **{name: (name, "mean") for name in measured})
    return summary.reset_index()[["dataset", "degradation", "n_images", *measured]]


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` to ``path`` atomically (see :mod:`m3l.io.atomic`): a killed run leaves the table
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



def paper_order(pairs) -> list[tuple[str, str]]:
    """``(dataset, degradation)`` pairs in the order papers print them: the test sets as the standard sets list
    them (Set12 before BSD68; others after, by name), then each set's degradations by kind and level
    (sigma15, sigma25, sigma50; jpeg10 ... jpeg40), numbers compared as numbers."""
    from m3l.data.standard_sets import SETS

    known = list(SETS)

    def level(name: str):
        return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]

    def key(pair):
        dataset, degradation = pair
        names = [dataset, dataset.removesuffix("_gray").removesuffix("_color"), f"{dataset}_gray"]
        rank = min((known.index(n) for n in names if n in known), default=len(known))
        return rank, level(dataset), level(degradation)

    return sorted(dict.fromkeys(pairs), key=key)


def benchmark(metrics) -> pd.DataFrame:
    """``{model: summary table}`` to one row per model, with columns ``<dataset>/<degradation>/psnr``,
    ``.../ssim`` and, where measured, ``.../psnrb``, the pairs in paper order (:func:`paper_order`; empty where a
    model lacks a pair)."""
    cells = {}
    for model, frame in metrics.items():
        frame = pd.DataFrame(frame)
        measured = [m for m in METRIC_ORDER if m in frame]
        for row in frame.to_dict("records"):
            for metric in measured:
                cells.setdefault((row["dataset"], row["degradation"]), {}).setdefault(metric, {})[model] = row[metric]
    columns = {f"{d}/{g}/{m}": cells[(d, g)][m] for d, g in paper_order(cells) for m in METRIC_ORDER
               if m in cells[(d, g)]}
    table = pd.DataFrame(columns, index=pd.Index(list(metrics), name="model"))
    return table.reset_index()


def best(table: pd.DataFrame, skip=(INPUT_ROW,)) -> dict[str, set[str]]:
    """``{column: models}`` holding each column's best value (highest; ties all marked), rows in ``skip`` (the
    degraded input) left out, values compared as printed (PSNR to 0.01 dB, SSIM to 1e-4)."""
    out = {}
    rows = table[~table["model"].isin(skip)]
    for column in table.columns[1:]:
        digits = 4 if column.endswith("/ssim") else 2
        values = rows[column].round(digits)
        if values.notna().sum() > 1:
            out[column] = set(rows.loc[values == values.max(), "model"])
    return out


def input_summary(per_image) -> pd.DataFrame:
    """The summary (as :func:`summarize`) of the degraded inputs themselves: the ``<metric>_input`` columns of
    per-image tables (``m3l.run.test``'s ``per_image.csv``; one frame or a list, an image scored twice counts
    once). Empty where no table has them."""
    frames = [pd.DataFrame(f) for f in (per_image if isinstance(per_image, (list, tuple)) else [per_image])]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    inputs = {f"{m}_input": m for m in METRICS}
    if not {f"{m}_input" for m in DEFAULT_METRICS} <= set(frame.columns):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = frame.drop_duplicates(["dataset", "degradation", "image"])
    keep = ["dataset", "degradation", "image", *(c for c in inputs if c in frame)]
    return summarize(frame[keep].rename(columns=inputs))


def benchmark_html(table: pd.DataFrame, caption: str, published: str = "") -> str:
    """The benchmark table as an HTML fragment (a ``<p>`` caption and a ``<table>``): a row per model, a column
    group (PSNR, SSIM; PSNR-B where measured) per test set x degradation in paper order, two header rows, each
    column's best value in bold (:func:`best`), ``–`` for an absent cell; then ``published`` (an HTML fragment,
    the released weights' measured | published | delta table) when given."""
    columns = list(table.columns[1:])
    groups = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in columns))
    marked = best(table)
    head = ['<tr><th rowspan="2">model</th>' + "".join(
        f'<th colspan="{sum(c.rsplit("/", 1)[0] == g for c in columns)}">{html.escape(g)}</th>' for g in groups)
        + "</tr>", "<tr>" + "".join(f"<th>{METRIC_LABELS.get(c.rsplit('/', 1)[1], c)}</th>" for c in columns)
        + "</tr>"]
    body = []
    for _, row in table.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            text = "–" if pd.isna(value) else f"{value:.{4 if column.endswith('/ssim') else 2}f}"
            cells.append(f"<td><b>{text}</b></td>" if row["model"] in marked.get(column, ()) else f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(str(row['model']))}</th>{''.join(cells)}</tr>")
    return (f"<p>{html.escape(caption)}</p>\n<table border=\"1\" class=\"dataframe\">\n<thead>\n"
            + "\n".join(head) + "\n</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n" + published)


def published_rows(table: pd.DataFrame, published: dict[str, dict]) -> list[tuple]:
    """``(model, "set/degradation/metric", measured, published, digits)`` for every published number (``{model:
    {"set/degradation/metric": value}}``, the weights table's ``metrics``) that the benchmark measured."""
    rows = []
    for _, row in table.iterrows():
        for key, value in published.get(row["model"], {}).items():
            if key in row and pd.notna(row[key]):
                rows.append((row["model"], key, row[key], value, 4 if key.endswith("/ssim") else 2))
    return rows


def published_markdown(table: pd.DataFrame, published: dict[str, dict]) -> str:
    """The benchmark's numbers next to the published ones: a Markdown table with a row per published number the
    benchmark measured, or ``""`` when there is none."""
    lines = [f"| {m} | {k} | {v:.{d}f} | {p:.{d}f} | {v - p:+.{d}f} |" for m, k, v, p, d in
             published_rows(table, published)]
    if not lines:
        return ""
    return ("\nThe released weights next to their published results:\n\n| model | test set / degradation / metric "
            "| measured | published | delta |\n|---|---|---:|---:|---:|\n" + "\n".join(lines) + "\n")


def published_html(table: pd.DataFrame, published: dict[str, dict]) -> str:
    """:func:`published_markdown` as an HTML fragment for the report, or ``""``."""
    rows = published_rows(table, published)
    if not rows:
        return ""
    body = "\n".join(f"<tr><th>{html.escape(str(m))}</th><td>{html.escape(k)}</td><td>{v:.{d}f}</td>"
                     f"<td>{p:.{d}f}</td><td>{v - p:+.{d}f}</td></tr>" for m, k, v, p, d in rows)
    return ("<p>The released weights next to their published results:</p>\n<table border=\"1\" class=\"published\">"
            "\n<thead><tr><th>model</th><th>test set / degradation / metric</th><th>measured</th><th>published</th>"
            f"<th>delta</th></tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n")


def benchmark_markdown(table: pd.DataFrame) -> str:
    """The benchmark table in Markdown: a ``PSNR / SSIM`` cell (``/ PSNR-B`` where measured) per model and
    test set x degradation."""
    pairs = [c.removesuffix("/psnr") for c in table.columns if c.endswith("/psnr")]
    lines = ["| model | " + " | ".join(pairs) + " |", "|---|" + "---:|" * len(pairs)]
    marked = best(table)
    for _, row in table.iterrows():
        cells = []
        for p in pairs:
            if pd.isna(row[p + "/psnr"]):
                cells.append("–")
                continue
            psnr = f"{row[p + '/psnr']:.2f}"
            cell = f"{f'**{psnr}**' if row['model'] in marked.get(p + '/psnr', ()) else psnr} / {row[p + '/ssim']:.4f}"
            if pd.notna(row.get(p + "/psnrb")):
                cell += f" / {row[p + '/psnrb']:.2f}"
            cells.append(cell)
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    psnrb = any(c.endswith("/psnrb") for c in table.columns)
    return ("\n".join(lines) + "\n\nPSNR (dB) / SSIM" + (" / PSNR-B (dB, JPEG)" if psnrb else "")
            + ", mean over each test set; the best PSNR of each column in bold.\n")
