"""The measured and published numbers of the docs, written from their sources: never typed by hand.

README.md and docs/*.md hold marked blocks::

    <!-- numbers:NAME -->
    ...generated text...
    <!-- /numbers -->

Each NAME is a function of :data:`BLOCKS`, which writes the block from ``benchmarks/results/<csv>`` (what a
benchmark script measured and wrote) or from the weights table (``m3l.hub.WEIGHTS``: the published numbers).
A block whose CSV is not there says which script measures it; once the CSV is there, the block shows it.

    python docs/fill_numbers.py           # rewrite every block from the CSVs and the weights table
    python docs/fill_numbers.py --check   # exit 1, naming each stale block, when a rewrite would change a file (CI)

So after running a benchmark script (which rewrites its CSV), run ``python docs/fill_numbers.py`` and commit both;
``tests/test_docs.py`` runs ``--check``, so a number that no longer matches its CSV fails the suite.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- numbers:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /numbers -->)", re.S)


def files() -> list[Path]:
    """The files whose blocks are written: README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def read(name: str) -> pd.DataFrame | None:
    path = RESULTS / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def missing(csv: str, script: str | None) -> str:
    if script is None:
        return (f"*Not measured yet:* `benchmarks/results/{csv}.csv` is not there; once it is, "
                "`python docs/fill_numbers.py` puts its numbers here.")
    return (f"*Not measured in this checkout:* `{script}` writes `benchmarks/results/{csv}.csv`; "
            "`python docs/fill_numbers.py` then puts its numbers here.")


def fmt(value) -> str:
    """A measured value as the docs print it: about three significant digits, integers with separators."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.2g}"


def table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A markdown table of ``frame`` (every column, or ``columns``)."""
    frame = frame[columns] if columns else frame
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def csv_table(csv: str, script: str | None, columns: list[str] | None = None):
    """A block that is the CSV as a table (``columns`` of it), with the script that writes it."""
    def block() -> str:
        frame = read(csv)
        if frame is None:
            return missing(csv, script)
        return table(frame, columns) + f"\n\n({f'`{script}`, ' if script else ''}`benchmarks/results/{csv}.csv`)"
    return block


# ---------------------------------------------------------------------------------------------------- blocks


def correct_throughput() -> str:
    frame = read("correct_throughput")
    if frame is None:
        return missing("correct_throughput", "python benchmarks/correct_throughput.py")
    net = frame[frame.table == "net"].set_index("path")
    correct = frame[frame.table == "correct"].set_index("path")
    default, ort = net.loc["folded+channels_last"], net.loc["backend=onnxruntime"]
    end = correct.loc["correct default"]
    same = ("the same 8-bit outputs" if end.max_levels == 0
            else f"outputs within {fmt(end.max_levels)} 8-bit levels")
    g = net.gflop_per_cpu_s
    return (f"One CPU thread, DnCNN-17 on BSD68-sized images, GFLOP per CPU-second "
            f"(`python benchmarks/correct_throughput.py`, {default.device}, a shared machine at load "
            f"{default.load_1min:.1f}): the plain net as before {g['today']:.1f}, batch norm folded "
            f"{g['folded']:.1f}, folded + channels-last (the default) {default.gflop_per_cpu_s:.1f} = "
            f"{default.vs_today:.2f}x and {default.vs_peak:.2f} of the practical peak (a plain 3x3 conv loop, "
            f"{g['peak']:.1f}), `compile=true` {g['compile']:.1f}, `backend=onnxruntime` {ort.gflop_per_cpu_s:.1f} "
            f"= {ort.vs_onnxruntime:.2f}x a plain onnxruntime session on the same export ({g['onnxruntime']:.1f}); "
            f"end to end, `m3l.run.correct` {end.vs_today:.2f}x faster than with "
            f"`fold_batch_norm=false channels_last=false`, {same}.")


def data_scale() -> str:
    frame = read("data_scale")
    if frame is None:
        return missing("data_scale", "python benchmarks/data_scale.py")

    def part(name: str, path: str) -> pd.DataFrame:
        return frame[(frame.set == name) & (frame.path == path)].set_index("images")

    gray = {path: part("gray", path) for path in ("uncached", "cache")}
    low, high = gray["uncached"].index.min(), gray["uncached"].index.max()
    slope = {path: (rows.rss_mb[high] - rows.rss_mb[low]) / (high - low) for path, rows in gray.items()}
    first = {path: rows.first_batch_s[high] for path, rows in gray.items()}
    speed = {name: {path: part(name, path).patches_per_cpu_s.dropna().iloc[0] for path in ("uncached", "cache")}
             for name in ("pairs", "sidd")}
    return "\n".join([
        "| | uncached | cache |", "|---|---|---|",
        f"| RSS after setup, per DIV2K-size gray image ({low} → {high} images) | {slope['uncached']:.2f} MiB | "
        f"{slope['cache']:.2f} MiB |",
        f"| first batch, {high} DIV2K-size images (cache already built; building it: "
        f"{gray['cache'].build_s[high]:.1f} s, once) | {fmt(first['uncached'])} s | {fmt(first['cache'])} s |",
        f"| 256x256 RGB pair patches per worker CPU-second, GoPro-size (1280x720) | {fmt(speed['pairs']['uncached'])} "
        f"| {fmt(speed['pairs']['cache'])} |",
        f"| the same, SIDD-size (5328x3000) | {fmt(speed['sidd']['uncached'])} | {fmt(speed['sidd']['cache'])} |",
        "", "(`python benchmarks/data_scale.py`, `benchmarks/results/data_scale.csv`)"])


def main_job() -> str:
    """The main job (snakemake -c2 results/dncnn/metrics.csv from a fresh folder): its wall time and its split."""
    frame = read("main_job")
    if frame is None:
        return missing("main_job", "python benchmarks/main_job.py")
    lines = ["| part | seconds | share of the job | in plain steps |", "|---|---:|---:|---:|"]
    for row in frame.itertuples(index=False):
        share = "" if pd.isna(row.share) else f"{row.share * 100:.0f} %"
        lines.append(f"| {row.part} | {fmt(row.seconds)} | {share} | {fmt(row.plain_steps)} |")
    return "\n".join(lines + ["", "(`python benchmarks/main_job.py`, `benchmarks/results/main_job.csv`; a plain step: "
                                   "one step of a plain PyTorch loop of the same DnCNN, measured in the same run)"])


def published_rows(entries) -> pd.DataFrame:
    rows = [{"entry": e.name, "file": e.released_name, "dataset": key.split("/")[0],
             "degradation": key.split("/")[1], "metric": key.split("/")[2], "published": value}
            for e in entries for key, value in e.metrics.items()]
    return pd.DataFrame(rows)


def level(degradation: str) -> str:
    return degradation.replace("sigma", "σ").replace("jpeg", "q")


def exact(value: float) -> str:
    """A published number as the paper prints it: its own digits, at least two decimals (28.9 -> 28.90)."""
    text = f"{value:.4f}".rstrip("0")
    return text if len(text.split(".")[1]) >= 2 else f"{value:.2f}"


def alike(value: float, published: float) -> str:
    """A measured number with as many decimals as the published one beside it."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{len(exact(published).split('.')[1])}f}"


def published() -> str:
    """Every published number of the weights table, and what benchmarks/published.py measured of it."""
    from m3l import hub

    frame = published_rows(hub.WEIGHTS.values())
    measured = read("published")
    if measured is not None:
        measured = measured[measured.ensemble == "none"][["entry", "dataset", "degradation", "metric", "measured"]]
        frame = frame.merge(measured, how="left", on=["entry", "dataset", "degradation", "metric"])
    lines = ["| entry (file) | " + ("measured here (published)" if measured is not None else "published")
             + ": test set, level, PSNR (/ SSIM / PSNR-B) |", "|---|---|"]
    for (entry, file), rows in frame.groupby(["entry", "file"], sort=False):
        sets = []
        for dataset, by_set in rows.groupby("dataset", sort=False):
            cells = []
            for degradation, group in by_set.groupby("degradation", sort=False):
                values = "/".join(exact(v) for v in group.published)
                if measured is not None:
                    values = "/".join(alike(m, v) for m, v in zip(group.measured, group.published)) + f" ({values})"
                cells.append(f"{level(degradation) + ' ' if degradation != 'clean' else ''}{values}")
            sets.append(f"{dataset} {', '.join(cells)}")
        lines.append(f"| `{entry}` (`{file}`) | {'; '.join(sets)} |")
    if measured is None:
        lines += ["", missing("published", "python benchmarks/published.py --data-root DIR --weights DIR")
                  .replace("its numbers", "the measured numbers")]
    else:
        lines += ["", "(`python benchmarks/published.py`, `benchmarks/results/published.csv`; published: "
                  "`m3l.hub.WEIGHTS`)"]
    return "\n".join(lines)


def published_deltas() -> str:
    """The measured numbers that are more than 0.02 dB from the published ones."""
    measured = read("published")
    if measured is None:
        return missing("published", "python benchmarks/published.py --data-root DIR --weights DIR")
    measured = measured[measured.ensemble == "none"].dropna(subset=["measured"])
    far = measured[measured.delta.abs() > 0.02 + 1e-9]
    head = (f"Of {len(measured)} published numbers measured here, {len(measured) - len(far)} are within 0.02 of the "
            "published value")
    if not len(far):
        return head + "."
    return head + "; these are not: " + "; ".join(
        f"`{r.entry}` {r.dataset} {level(r.degradation)} {r.metric} {r.measured:.2f} ({r.published:.2f}, "
        f"{r.delta:+.2f})" for r in far.itertuples()) + "."


def ensemble_gain() -> str:
    """The x8 self-ensemble's gain: published.py's rows with --ensemble x8 minus those without."""
    measured = read("published")
    if measured is None or "x8" not in set(measured.ensemble):
        return missing("published", "python benchmarks/published.py --data-root DIR --weights DIR --ensemble x8")
    keys = ["entry", "dataset", "degradation", "metric"]
    both = measured[measured.ensemble == "none"].merge(measured[measured.ensemble == "x8"], on=keys,
                                                       suffixes=("", "_x8"))
    both = both[both.metric == "psnr"].dropna(subset=["measured", "measured_x8"])
    lines = ["| entry | test set | PSNR gain of `ensemble=x8`, dB |", "|---|---|---|"]
    for (entry, dataset), group in both.groupby(["entry", "dataset"], sort=False):
        gains = ", ".join(f"{level(r.degradation)} {r.measured_x8 - r.measured:+.3f}" for r in group.itertuples())
        lines.append(f"| `{entry}` | {dataset} | {gains} |")
    return "\n".join(lines + ["", "(`python benchmarks/published.py --ensemble x8`, "
                                  "`benchmarks/results/published.csv`)"])


def model_net(name: str, configs: Path, seen: tuple = ()) -> str | None:
    """The net config a model config uses: its ``/net: X`` default, else that of the model config it extends."""
    import yaml

    path = configs / "model" / f"{name}.yaml"
    if name in seen or not path.is_file():
        return None
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
    for item in defaults:
        if isinstance(item, dict) and "/net" in item:
            return item["/net"]
    base = next((item for item in defaults if isinstance(item, str) and item != "_self_"), None)
    return model_net(base, configs, (*seen, name)) if base else None


def zoo() -> str:
    """The families of the registry (m3l/models/_registry.py), their model configs and their released weights."""
    import yaml

    from m3l.models._registry import families

    configs = ROOT / "m3l" / "configs"
    target_of = {p.stem: (yaml.safe_load(p.read_text()) or {}).get("_target_") for p in (configs / "net").glob("*.yaml")}
    models: dict[str, list[str]] = {}
    for path in sorted((configs / "model").glob("*.yaml")):
        models.setdefault(target_of.get(model_net(path.stem, configs)), []).append(path.stem)
    lines = ["| family (`m3l/models/`) | `model=` | released weights | what |", "|---|---|---|---|"]
    for name, family in families().items():
        what = " ".join(family.doc.replace("``", "`").split()).split(". `pretrained")[0].split("; ")[0].rstrip(". ")
        names = ", ".join(f"`{m}`" for m in models.get(family.target, [])) or "–"
        module = family.net.__module__.rsplit(".", 1)[-1]
        lines.append(f"| `{name}` (`{module}.py`) | {names} | {len(family.weights) or '–'} | {what} |")
    others = [m for target, names in models.items() if target not in {f.target for f in families().values()}
              for m in names]
    if others:
        lines.append(f"| (other nets) | {', '.join(f'`{m}`' for m in others)} | – | |")
    return "\n".join(lines + ["", "(the registry, `m3l/models/_registry.py`; `python -m m3l.run.list` prints more)"])


def parameters(net_cfg: dict, **fixed) -> int | None:
    """Parameters of the net a net config (plain containers) builds with ``fixed`` arguments, on the meta device."""
    import torch
    from hydra.utils import instantiate

    config = {k: v for k, v in net_cfg.items() if k != "pretrained"}
    try:
        with torch.device("meta"):
            net = instantiate({k: v for k, v in config.items() if k not in fixed}, _convert_="all", _partial_=True)(
                **fixed)
    except Exception:  # noqa: BLE001 - a net that cannot be built on the meta device gets no number
        return None
    return sum(p.numel() for p in net.parameters())


def millions(count: int | None) -> str:
    return "–" if count is None else f"{count:,}" if count < 100_000 else f"{count / 1e6:.2f}M"


def zoo_models() -> str:
    """Per model config: its net, the parameters of its CPU default and of its paper protocol's net (composed
    with Hydra, built on the meta device), and its released weights with their parameters."""
    import os

    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from m3l import hub
    from m3l.run.common import register_search_path

    os.environ.setdefault("XDG_CONFIG_HOME", "/nonexistent")  # the built-in configs only, not a user's
    register_search_path()
    configs = ROOT / "m3l" / "configs"
    by_model: dict[str, list] = {}
    for entry in hub.WEIGHTS.values():
        by_model.setdefault(entry.model, []).append(entry)

    def composed(*overrides: str) -> dict | None:
        try:
            return OmegaConf.to_container(compose("train", overrides=[*overrides, "++data_root=/data"]).net,
                                          resolve=True)
        except Exception:  # noqa: BLE001 - e.g. a paper protocol that needs data=paired: the caller tries that
            return None

    lines = ["| `model=` | net | parameters: CPU default | `preset=paper` | released weights (`net.pretrained=`) by "
             "parameters |", "|---|---|---|---|---|"]
    with initialize_config_module("m3l.configs", version_base="1.3"):
        for path in sorted((configs / "model").glob("*.yaml")):
            model = path.stem
            default = composed(f"model={model}")
            if default is None:
                continue
            paper = None
            if (configs / "protocol" / "paper" / f"{model}.yaml").is_file():
                paper = composed(f"model={model}", "preset=paper") or composed(f"model={model}", "data=paired",
                                                                                 "preset=paper")
            target = str(default.get("_target_", ""))
            net = f"`{target.rsplit('.', 1)[-1]}` (`{target.split('.')[-2]}.py`)" if target.startswith("m3l.") \
                else target
            released: dict[str, list[str]] = {}
            for entry in by_model.get(model, []):
                count = parameters({**default, "_target_": entry.target}, **entry.net) if entry.target else None
                released.setdefault(millions(count), []).append(f"`{entry.variant}`")
            weights = "; ".join(f"{count}: {', '.join(names)}" for count, names in released.items()) or "–"
            lines.append(f"| `{model}` | {net} | {millions(parameters(default))} | "
                         f"{millions(parameters(paper)) if paper else '–'} | {weights} |")
    return "\n".join(lines + ["", "(the model configs composed by Hydra and the weights table `m3l.hub.WEIGHTS`, "
                                  "built on the meta device by `docs/fill_numbers.py`)"])

def paper_protocols() -> str:
    """Every paper protocol (m3l/configs/protocol/paper/<model>.yaml): the command its header gives and the file,
    whose header names the authors' options it follows and any deliberate difference."""
    lines = ["| `model=` | command (and the folders of `data_root`) | protocol file (sources in its header) |",
             "|---|---|---|"]
    for path in sorted((ROOT / "m3l" / "configs" / "protocol" / "paper").glob("*.yaml")):
        found = re.search(r"^#\s+(python -m m3l\.run\.train [^\n]*)", path.read_text(), re.M)
        command = re.sub(r"\s{2,}", " ", found.group(1)).strip() if found else "–"
        command, _, folders = command.partition(" (")
        folders = f" ({folders}" if folders else ""
        lines.append(f"| `{path.stem}` | `{command}`{folders} | `{path.relative_to(ROOT)}` |")
    return "\n".join(lines)


BLOCKS = {
    "paper_protocols": paper_protocols,
    "zoo": zoo,
    "zoo_models": zoo_models,
    "correct_throughput": correct_throughput,
    "data_scale": data_scale,
    "published": published,
    "published_deltas": published_deltas,
    "ensemble_gain": ensemble_gain,
    "main_job": main_job,
    "zoo_budget": csv_table("zoo_budget", "python benchmarks/zoo_budget.py --data-root DIR"),
    "scaling": csv_table("scaling_cpu", "python benchmarks/scaling.py"),
    "correct_load": csv_table("correct_load_cpu", "python benchmarks/correct_load.py"),
    "export_runner": csv_table("export_runner_cpu", "python benchmarks/export_runner.py"),
    "video_memory": csv_table("video_memory", "python benchmarks/video_memory.py"),
    "fastdvdnet_reuse": csv_table("fastdvdnet_reuse", "python benchmarks/fastdvdnet_reuse.py"),
}


def rewrite(text: str, where: str) -> str:
    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"{where}: unknown numbers block {name!r} (known: {', '.join(BLOCKS)})")
        return match.group(1) + BLOCKS[name]().rstrip("\n") + "\n" + match.group(4)
    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in files():
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, str(path.relative_to(ROOT)))
        if new == text:
            continue
        old_blocks = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
        names = [m["name"] for m in BLOCK.finditer(new) if old_blocks.get(m["name"]) != m["body"]]
        stale.append(f"{path.relative_to(ROOT)}: {', '.join(names)}")
        if not args.check:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
    for line in stale:
        print(("stale: " if args.check else "rewrote: ") + line, file=sys.stderr)
    if args.check and stale:
        print("run `python docs/fill_numbers.py` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
