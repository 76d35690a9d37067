"""Training overhead: steps/s of ``python -m m3l.run.train`` against a plain PyTorch loop.

Both train the same DnCNN on the same data (the embedded dead-leaves patches, same batch, patch size,
workers and Adam), in the same run, alternating ``--repeats`` times. m3l runs through its real entry
point with its data module, logging and checkpointing at their default settings; a ``StepTimer``
callback records each step's data wait and compute time. Steps/s is measured over the steps after
``--warmup`` (the first steps include worker start-up and allocator warm-up), within one epoch.

    python benchmarks/train_overhead.py [--steps 60] [--repeats 2] [--device cpu|cuda] [--precision 32-true|bf16-mixed]
                                        [--compile]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import device_name, median, report, run_m3l


def plain_loop(steps: int, batch: int, patch: int, workers: int, device: str, precision: str,
               compile: bool = False) -> dict:
    from torch.utils.data import DataLoader

    from m3l.data.datasets import PatchDataset, collate
    from m3l.data.degradations import GaussianNoise
    from m3l.data.embedded import dead_leaves_images
    from m3l.models.dncnn import DnCNN

    torch.manual_seed(0)
    images = list(torch.from_numpy(dead_leaves_images()))
    loader = DataLoader(PatchDataset(images, GaussianNoise(25), patch, steps * batch), batch_size=batch,
                        num_workers=workers, collate_fn=collate)
    net = DnCNN().to(device)
    if compile:
        net = torch.compile(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    data, compute = [], []
    end = time.perf_counter()
    for item in loader:
        start = time.perf_counter()
        data.append(start - end)
        x, y = item["input"].to(device), item["target"].to(device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # synchronise, as Lightning's logging does
        end = time.perf_counter()
        compute.append(end - start)
    return {"data": data, "compute": compute}


def m3l_train(steps: int, batch: int, patch: int, workers: int, device: str, precision: str, folder: Path,
              compile: bool = False) -> dict:
    accelerator = "gpu" if device == "cuda" else "cpu"
    run_m3l("train", "model=dncnn", f"compile={str(compile).lower()}", f"trainer.max_steps={steps}", f"data.patches_per_epoch={steps * batch}",
            f"data.train_batch_size={batch}", f"data.patch_size={patch}", f"data.num_workers={workers}",
            f"trainer.accelerator={accelerator}", f"trainer.precision={precision}",
            "+callbacks.step_timer._target_=m3l.engine.timing.StepTimer", f"hydra.run.dir={folder}", cwd=folder.parent)
    return json.loads((folder / "step_times.json").read_text())


def summarize(times: dict, warmup: int) -> dict:
    data, compute = times["data"][warmup:], times["compute"][warmup:]
    total = sum(data) + sum(compute)
    return {"steps_per_s": len(compute) / total, "data_ms": 1000 * median(data), "compute_ms": 1000 * median(compute),
            "first_step_s": times["compute"][0]}  # with --compile: the compile time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the net in both runners")
    args = parser.parse_args()

    from m3l.data.image_folders import default_workers

    workers = default_workers()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            plain = summarize(plain_loop(args.steps, args.batch, args.patch, workers, args.device, args.precision,
                                         args.compile),
                              args.warmup)
            ours = summarize(m3l_train(args.steps, args.batch, args.patch, workers, args.device, args.precision,
                                       Path(tmp) / f"run{repeat}", args.compile), args.warmup)
            rows += [{"runner": "plain", "repeat": repeat, **plain}, {"runner": "m3l", "repeat": repeat, **ours}]
    plain_rate = median([r["steps_per_s"] for r in rows if r["runner"] == "plain"])
    m3l_rate = median([r["steps_per_s"] for r in rows if r["runner"] == "m3l"])
    for row in rows:
        row.update(device=device_name(), precision=args.precision, compile=args.compile, batch=args.batch,
                   patch=args.patch, workers=workers)
    report(rows, f"train_overhead_{args.device}_{args.precision}{'_compile' if args.compile else ''}")
    print(f"m3l / plain steps per second: {m3l_rate / plain_rate:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
