"""Correction under load: memory over a long run, every output written, and a resume half-way.

Corrects a folder of many small images and one of a few large ones with ``python -m m3l.run.correct``
(a small DnCNN, 3 layers of width 8, random weights: the data path is what is measured), sampling the
resident memory (RSS) of the process and its data-loading workers every 50 ms together with the number
of outputs written. Memory is flat when the peak RSS over the last quarter of the outputs is no higher
than over the first quarter (beyond a small margin). Then corrects the small folder again into a fresh
folder, SIGKILLs it once half of the outputs exist, and reruns it: the rerun must skip exactly the
outputs already written (their modification times unchanged) and write the rest.

    python benchmarks/correct_load.py [--small 2000] [--small-size 64] [--large 20] [--large-size 2048]

Writes ``benchmarks/results/correct_load_cpu.csv`` (one row per folder, and one for the resume).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from common import report

NET = ["model=dncnn", "net.depth=3", "net.width=8", "trainer.enable_progress_bar=false"]


def make_images(folder: Path, count: int, size: int, seed: int) -> list[str]:
    """``count`` smooth random gray images of ``size`` x ``size`` (PNG), named ``00000.png`` ..."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = []
    for i in range(count):
        coarse = rng.integers(0, 256, (max(2, size // 16),) * 2, dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
        names.append(f"{i:05d}.png")
        image.save(folder / names[-1])
    return names


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and its children (data-loading workers)."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def correct(source: Path, out: Path, checkpoint: Path, run_dir: Path, kill_at: int | None = None):
    """Run the correction, sampling (seconds, RSS, outputs); SIGKILL once ``kill_at`` outputs exist."""
    command = [sys.executable, "-m", "m3l.run.correct", *NET, f"checkpoint={checkpoint}",
               f"data.correct_dir={source}", f"serializer.root_dir={out}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    handle = psutil.Process(process.pid)
    samples = []
    while process.poll() is None:
        written = sum(1 for _ in out.glob("*.png")) if out.is_dir() else 0
        samples.append((time.perf_counter() - start, tree_rss(handle), written))
        if kill_at is not None and written >= kill_at:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    output = process.communicate()[0]
    if kill_at is None and process.returncode != 0:
        raise SystemExit(f"correction failed ({process.returncode}):\n{output[-3000:]}")
    return samples, output, time.perf_counter() - start


def quarter_peaks(samples, total: int) -> tuple[float, float, float]:
    """Peak RSS (MiB) over the whole run, while the first quarter of the outputs was written, and the last."""
    mib = 2**20
    first = [rss for _, rss, n in samples if 0 < n <= total / 4] or [0]
    last = [rss for _, rss, n in samples if n >= 3 * total / 4] or [0]
    return max(rss for _, rss, _ in samples) / mib, max(first) / mib, max(last) / mib


def check_outputs(out: Path, names: list[str], size: int) -> None:
    missing = [n for n in names if not (out / n).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} outputs missing in {out}, e.g. {missing[0]}")
    for name in names:
        with Image.open(out / name) as image:
            image.load()
            assert image.size == (size, size), (name, image.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--small-size", type=int, default=64)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-size", type=int, default=2048)
    args = parser.parse_args()

    from m3l.models.dncnn import DnCNN
    from m3l.engine.restoration import RestorationModule

    rows = []
    with tempfile.TemporaryDirectory(prefix="m3l-load-") as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "dncnn.ckpt"
        torch.manual_seed(0)
        torch.save({"state_dict": RestorationModule(DnCNN(depth=3, width=8)).state_dict()}, checkpoint)
        folders = {"small": (args.small, args.small_size), "large": (args.large, args.large_size)}
        for name, (count, size) in folders.items():
            names = make_images(tmp / name, count, size, seed=len(name))
            samples, output, seconds = correct(tmp / name, tmp / f"out_{name}", checkpoint, tmp / f"run_{name}")
            check_outputs(tmp / f"out_{name}", names, size)
            peak, first, last = quarter_peaks(samples, count)
            rows.append({"folder": name, "images": count, "size": f"{size}x{size}", "seconds": seconds,
                         "images_per_s": count / seconds, "peak_rss_mib": peak, "first_quarter_peak_mib": first,
                         "last_quarter_peak_mib": last, "last_minus_first_mib": last - first,
                         "all_outputs": True, "skipped_on_rerun": None, "rewritten_on_rerun": None})

        # resume: SIGKILL half-way, then rerun into the same folder
        count, size = folders["small"]
        out = tmp / "out_resume"
        _, _, killed_after = correct(tmp / "small", out, checkpoint, tmp / "run_resume1", kill_at=count // 2)
        before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
        samples, output, seconds = correct(tmp / "small", out, checkpoint, tmp / "run_resume2")
        check_outputs(out, [f"{i:05d}.png" for i in range(count)], size)
        skipped = int(re.search(r"skipped (\d+) already done", output).group(1))
        rewritten = sum(1 for n, stamp in before.items() if (out / n).stat().st_mtime_ns != stamp)
        if skipped != len(before) or rewritten:
            raise SystemExit(f"resume: {len(before)} outputs before the rerun, {skipped} skipped, "
                             f"{rewritten} rewritten")
        rows.append({"folder": "small, killed half-way then rerun", "images": count, "size": f"{size}x{size}",
                     "seconds": seconds, "images_per_s": (count - skipped) / seconds,
                     "peak_rss_mib": max(rss for _, rss, _ in samples) / 2**20, "first_quarter_peak_mib": None,
                     "last_quarter_peak_mib": None, "last_minus_first_mib": None, "all_outputs": True,
                     "skipped_on_rerun": skipped, "rewritten_on_rerun": rewritten})
    report(rows, "correct_load_cpu")


if __name__ == "__main__":
    main()
