"""Scaling: correction time and peak memory against image size (256^2 to 4096^2), with and without
tiled inference, and the seam error of tiling (max |tiled - whole| over the image).

Each (size, tiling) point runs in a fresh process so that its peak resident memory (CPU) or peak
allocated memory (GPU) is its own. The default net is a narrower DnCNN-17 (``--width 16``) so that the
largest sizes finish on a 2-core CPU; pass ``--width 64`` for the real one on a GPU.

    python benchmarks/scaling.py [--sizes 256 512 1024 2048 4096] [--tile 512] [--overlap 32] [--width 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from common import device_name, report


def one(size: int, tile: int, overlap: int, width: int, device: str) -> dict:
    """Correct one random ``size x size`` image; returns seconds, peak MiB and a checksum of the output."""
    from m3l.models.dncnn import DnCNN
    from m3l.engine.tiling import tiled

    torch.manual_seed(0)
    net = DnCNN(width=width).eval().to(device)
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(size)).to(device)
    with torch.inference_mode():
        start = time.perf_counter()
        y = tiled(net, x, tile, overlap) if tile else net(x)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    torch.save(y.cpu(), f"/tmp/m3l_scaling_{size}_{tile}.pt")
    return {"seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)  # internal: size tile
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.overlap, args.width, args.device)))
        return

    rows = []
    for size in args.sizes:
        for tile in (0, args.tile):
            command = [sys.executable, __file__, "--one", str(size), str(tile), "--overlap", str(args.overlap),
                       "--width", str(args.width), "--device", args.device]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            rows.append({"size": size, "tile": tile or "none", **result})
        whole, tiles = (torch.load(f"/tmp/m3l_scaling_{size}_{t}.pt") for t in (0, args.tile))
        rows[-1]["seam_max_abs_error"] = float((whole - tiles).abs().max())
    for row in rows:
        row.update(device=device_name(), width=args.width, overlap=args.overlap)
    report(rows, f"scaling_{args.device}")


if __name__ == "__main__":
    main()
