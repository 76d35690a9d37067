"""Training data at paper scale: the decoded-pixel cache (``data.cache=true``) against the uncached path, same run.

Writes synthetic sets to a temp dir: DIV2K-size gray images (2040x1356 PNG; smooth random fields with a little
texture, so they compress and decode like photos) for ``ImageFolderDataModule``, GoPro-size RGB pairs (1280x720,
the blurred side a box blur of the sharp one) for ``PairedFolderDataModule``, and a few SIDD-size pairs (5328x3000,
patch speed only). For each set size, each path runs in a
fresh process (no data-loading worker: one process holds everything):

- ``rss_mb``: resident memory of the process after ``prepare_data`` + ``setup("fit")``; the slope per image between
  the smallest and the largest set is what a set of any size costs (a DDP rank decodes its own copy uncached);
- ``setup_s`` / ``first_batch_s``: seconds to set up, and to the first training batch (the start of the first
  epoch), the cache already built; ``build_s``: building the cache once (per node, then reused);
- ``patches_per_cpu_s`` (``--seconds`` of drawing patches from the dataset, as one loader worker does): 128x128
  gray patches with Gaussian noise, 256x256 RGB pairs; per CPU-second of the process, so that a noisy shared
  machine changes the numbers little.

The need of a GPU is estimated from NAFNet-width32's FLOPs at 256x256 (``torch.utils.flop_counter``, forward; a
training step ~3x) at ``--tflops`` sustained: patches/s per GPU, and per worker with ``--workers`` workers a rank.

    python benchmarks/data_scale.py [--counts 10 40 160] [--pairs 10 40] [--seconds 5] [--tflops 80]

Writes ``benchmarks/results/data_scale.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common import device_name, report

GRAY = (2040, 1356)  # DIV2K (width, height)
PAIR = (1280, 720)   # GoPro
SIDD = (5328, 3000)  # SIDD Medium's largest (GP phone) frames


def smooth_image(size: tuple[int, int], channels: int, rng: np.random.Generator) -> Image.Image:
    """A smooth random field (bicubic from 1/40 size) plus a little texture: decodes like a photo's PNG."""
    w, h = size
    low = rng.integers(0, 256, (h // 40 + 1, w // 40 + 1, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    base = Image.fromarray(low[..., 0] if channels == 1 else low, mode).resize(size, Image.BICUBIC)
    texture = rng.normal(0, 4, (h, w) if channels == 1 else (h, w, channels))
    return Image.fromarray(np.clip(np.asarray(base, np.float32) + texture, 0, 255).astype(np.uint8), mode)


def write_sets(root: Path, counts: list[int], pairs: list[int], sidd: list[int]) -> None:
    """``gray/``, ``pairs/``, ``sidd/`` (all images), and ``gray{N}/``... of hard links to the first N."""
    rng = np.random.default_rng(0)
    (root / "gray").mkdir()
    for i in range(max(counts)):
        smooth_image(GRAY, 1, rng).save(root / "gray" / f"{i:04d}.png")
    for name, size, count in (("pairs", PAIR, max(pairs)), ("sidd", SIDD, max(sidd, default=0))):
        for i in range(count):
            sharp = smooth_image(size, 3, rng)
            for side, image in (("sharp", sharp), ("blur", sharp.filter(ImageFilter.BoxBlur(3)))):
                path = root / name / f"seq{i // 10:02d}" / side / f"{i:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path)
    for name, sizes in (("gray", counts), ("pairs", pairs), ("sidd", sidd)):
        files = sorted((root / name).rglob("*.png"))
        for n in sizes:
            keep = [f for f in files if int(f.stem) < n]
            for f in keep:
                link = root / f"{name}{n}" / f.relative_to(root / name)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, link)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    """One measurement, in this fresh process."""
    import torch

    torch.set_num_threads(1)
    if spec["set"] in ("pairs", "sidd"):
        from m3l.data.paired_folders import PairedFolderDataModule as Module

        options = dict(input="/blur/", target="/sharp/", channels=3, val_dir=spec["dir"])
    else:
        from m3l.data.image_folders import ImageFolderDataModule as Module

        options = dict(channels=1)
    data = Module(train_dir=spec["dir"], cache=spec["cache"], cache_dir=spec["cache_dir"], num_workers=0,
                  patch_size=spec["patch"], **options)
    start = time.perf_counter()
    data.prepare_data()
    if spec.get("build_only"):
        return {"build_s": time.perf_counter() - start}
    data.setup("fit")
    out = {"setup_s": time.perf_counter() - start, "rss_mb": rss_mb()}
    torch.manual_seed(0)
    next(iter(data.train_dataloader()))
    out["first_batch_s"] = time.perf_counter() - start
    if spec.get("seconds"):
        dataset, count = data.train_set, 0
        wall, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < spec["seconds"]:
            dataset[count]
            count += 1
        out["patches_per_cpu_s"] = count / (time.process_time() - cpu)
        out["patches_per_s"] = count / (time.perf_counter() - wall)
    return out


def measure(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"measurement {spec} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def nafnet_gflop() -> float:
    """NAFNet-width32 (GoPro config) forward GFLOP on one 256x256 RGB patch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from m3l.models.nafnet import NAFNet

    net = NAFNet(width=32, encoder_blocks=(1, 1, 1, 28)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, 256, 256))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--sidd", type=int, nargs="*", default=[2], help="SIDD-size pairs (5328x3000), for patches/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tflops", type=float, default=80.0, help="sustained TFLOP/s of the GPU (H100, bf16)")
    parser.add_argument("--workers", type=int, default=4, help="data-loading workers per rank")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_sets(root, args.counts, args.pairs, args.sidd)
        print(f"wrote the sets in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for name, sizes, patch in (("gray", args.counts, 128), ("pairs", args.pairs, 256), ("sidd", args.sidd, 256)):
            for n in sizes:
                common = {"set": name, "dir": str(root / f"{name}{n}"), "patch": patch,
                          "cache_dir": str(root / "cache"), "seconds": args.seconds if n == sizes[0] else 0}
                uncached = measure({**common, "cache": False})
                build = measure({**common, "cache": True, "build_only": True})
                cached = measure({**common, "cache": True})
                for path, values in (("uncached", uncached), ("cache", {**cached, **build})):
                    rows.append({"set": name, "images": n, "path": path, **values})
                    print(rows[-1], file=sys.stderr)
    gflop = nafnet_gflop()
    need = args.tflops * 1e3 / (3 * gflop)
    frame = report(rows, "data_scale")
    print(f"\ndevice: {device_name()} (a shared machine: absolute numbers are noisy, ratios within this run hold)")
    for name, sizes in (("gray", args.counts), ("pairs", args.pairs), ("sidd", args.sidd)):
        if not sizes:
            continue
        part = frame[frame.set == name]
        for path in ("uncached", "cache"):
            rss = part[part.path == path].set_index("images").rss_mb
            if len(sizes) > 1:
                print(f"{name} {path}: RSS slope {(rss[sizes[-1]] - rss[sizes[0]]) / (sizes[-1] - sizes[0]):.2f} MB "
                      f"per image")
        speed = part[part.images == sizes[0]].set_index("path").patches_per_cpu_s
        start = part[part.images == sizes[-1]].set_index("path").first_batch_s
        print(f"{name}: patches per worker CPU-second cache / uncached {speed['cache'] / speed['uncached']:.1f}x; "
              f"first batch at {sizes[-1]} images {start['uncached']:.2f} s uncached, {start['cache']:.2f} s cached")
    print(f"NAFNet-width32 at 256x256: {gflop:.1f} GFLOP forward, ~{3 * gflop:.0f} a training step; at "
          f"{args.tflops:.0f} TFLOP/s a GPU consumes ~{need:.0f} patches/s, {need / args.workers:.0f} per worker "
          f"with {args.workers} workers")


if __name__ == "__main__":
    main()
