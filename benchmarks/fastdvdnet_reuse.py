"""FastDVDnet on a whole clip: every window through the net (before) vs each stage-1 output computed once (after).

Restores a ``--frames``-frame noisy clip (ends mirrored, sigma 25 as side input) with
:class:`m3l.engine.video_restoration.VideoRestorationModule` twice in the same process, alternating: ``reuse=False``
runs every 5-frame window through ``FastDVDnet.forward`` (its 3 stage-1 blocks each time), ``reuse=True`` goes
through ``FastDVDnet.forward_clip``. Reports the median seconds of ``--repeats`` runs, frames/s, the speed ratio
before / after, the largest absolute difference of the outputs, and the peak memory of each path: on CUDA the
peak allocated by torch, on CPU the peak resident memory of a fresh process running that path once, less what
it held before restoring (the clip, the net, torch).

    python benchmarks/fastdvdnet_reuse.py [--frames 100] [--channels 3] [--size 64 64] [--repeats 3] [--device cuda]

The net is the paper's (widths 32 / 64 / 128, 30 channels a frame), freshly initialised: speed and memory do not
depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from common import device_name, median, report


def setup(args):
    from m3l.models.video import FastDVDnet
    from m3l.engine.video_restoration import VideoRestorationModule

    torch.manual_seed(0)
    module = VideoRestorationModule(FastDVDnet(channels=args.channels)).eval().to(args.device)
    clean = torch.rand(1, args.frames, args.channels, *args.size, device=args.device)
    sigma = torch.full((1, args.frames), 25 / 255, device=args.device)
    batch = {"input": clean + torch.randn_like(clean) * sigma[..., None, None, None], "side": {"sigma": sigma}}
    return module, batch


def restore(module, batch, reuse: bool, device: str) -> tuple[torch.Tensor, float]:
    module.reuse = reuse
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = module.restore(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def peak_memory(args, reuse: bool) -> float:
    """MiB the restore adds at its peak: CUDA peak allocation, or a fresh process's peak RSS over its RSS before."""
    if args.device.startswith("cuda"):
        module, batch = setup(args)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        restore(module, batch, reuse, args.device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    command = [sys.executable, __file__, "--memory-of", "after" if reuse else "before", "--frames", str(args.frames),
               "--channels", str(args.channels), "--size", *map(str, args.size), "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["added_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-of", choices=["before", "after"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()

    if args.memory_of:  # one path once, in this fresh process
        module, batch = setup(args)
        before = rss_mib()
        restore(module, batch, args.memory_of == "after", args.device)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(json.dumps({"added_mib": peak - before}))
        return

    module, batch = setup(args)
    restore(module, batch, True, args.device)  # warm-up (allocator, kernels)
    times = {False: [], True: []}
    outputs = {}
    for _ in range(args.repeats):
        for reuse in (False, True):
            outputs[reuse], seconds = restore(module, batch, reuse, args.device)
            times[reuse].append(seconds)
    difference = float((outputs[True] - outputs[False]).abs().max())
    before_s, after_s = median(times[False]), median(times[True])
    rows = []
    for reuse, seconds in ((False, before_s), (True, after_s)):
        rows.append({"path": "forward_clip (after)" if reuse else "every window (before)", "frames": args.frames,
                     "size": f"{args.channels}x{args.size[0]}x{args.size[1]}", "seconds": seconds,
                     "frames_per_s": args.frames / seconds, "speedup": before_s / seconds,
                     "max_abs_diff": difference if reuse else 0.0, "peak_added_mib": peak_memory(args, reuse),
                     "device": device_name() if args.device == "cpu" or args.device.startswith("cuda") else args.device})
    report(rows, "fastdvdnet_reuse")


if __name__ == "__main__":
    main()
