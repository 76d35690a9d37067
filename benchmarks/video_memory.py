"""Peak memory of correcting long clips through the sliding window: it should stay flat as the clip grows.

Makes synthetic gray clips of ``--lengths`` frames (a window panning over a dead-leaves image, written
losslessly as FFV1 ``.mkv``), then corrects each with ``python -m m3l.run.correct model=fastdvdnet`` in its
own process (no data-loading worker, so one process holds everything) and reports that process's peak
resident memory (``ru_maxrss``), the time per frame (decoding, restoring and writing, as the serializer
reports it), the size the decoded clip would take held whole, and
the ratio of each peak to the first one.

    python benchmarks/video_memory.py [--lengths 100 400] [--size 240 320] [--checkpoint PATH] [--net-widths 8 16 32]

Without ``--checkpoint`` the net is freshly initialised (memory does not depend on the weights); the net
defaults to a narrow FastDVDnet so the run takes a few CPU minutes (``--net-widths 32 64 128`` for the paper's).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import device_name, report

MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def make_clip(path: Path, frames: int, height: int, width: int) -> None:
    from m3l.data.deadleaves import dead_leaves
    from m3l.io.clips import ClipWriter
    from m3l.data.video import moving_crops

    image = torch.from_numpy(dead_leaves(2 * max(height, width), np.random.default_rng(0))[:1].astype(np.float32))
    rng = np.random.RandomState(0)
    writer = ClipWriter(path, fps=25)
    for start in range(0, frames, 50):  # a chunk at a time: the generator holds no whole clip either
        for frame in moving_crops(image, min(50, frames - start), height, width, rng, max_speed=3):
            writer.write(frame)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--net-widths", type=int, nargs=3, default=[8, 16, 32])
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args()
    height, width = args.size
    net = [f"net.widths=[{','.join(map(str, args.net_widths))}]", f"net.per_frame={max(2, args.net_widths[0] * 30 // 32)}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:  # fresh weights, in the checkpoint layout m3l writes
            from hydra import compose, initialize_config_module

            from m3l.run.common import build_module

            with initialize_config_module("m3l.configs", version_base="1.3"):
                cfg = compose("correct", overrides=["model=fastdvdnet", *net])
            checkpoint = tmp / "fresh.ckpt"
            torch.save({"state_dict": build_module(cfg).state_dict()}, checkpoint)
        for frames in args.lengths:
            clip = tmp / f"clip{frames}.mkv"
            make_clip(clip, frames, height, width)
            command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "m3l.run.correct", "model=fastdvdnet",
                       *([] if args.checkpoint else net), f"checkpoint={checkpoint}", f"data.correct_dir={clip}",
                       f"serializer.root_dir={tmp / f'out{frames}'}", "data.num_workers=0", f"data.chunk={args.chunk}",
                       "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp / f'run{frames}'}"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"correction failed:\n{result.stderr[-3000:]}")
            seconds = float(re.search(r"frames\) to .* in ([\d.]+) s", result.stdout).group(1))  # the serializer's
            peak_mib = int(result.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux
            rows.append({"frames": frames, "height": height, "width": width, "chunk": args.chunk,
                         "peak_rss_mib": peak_mib, "whole_clip_float_mib": frames * height * width * 4 / 2**20,
                         "seconds_per_frame": seconds / frames, "device": device_name()})
    for row in rows:
        row["peak_ratio"] = row["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    report(rows, "video_memory")


if __name__ == "__main__":
    main()
