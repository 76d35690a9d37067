"""The default model's training budget: test PSNR on the embedded photos against training compute.

The main job (``snakemake -c2 results/dncnn/metrics.csv``, issue 23) must train DnCNN-S in a few minutes on two
cores and keep its test PSNR. This script trains DnCNN on m3l's own default data (dead leaves, sigma 25, the
data module of ``model=dncnn``) with a plain loop and measures the test PSNR of the embedded photos (m3l's
metric: 8-bit rounding, seeded noise) at several steps, for one recipe per call:

    python benchmarks/default_budget.py --width 64 --batch 4 --steps 800 --eval 500,600,700
    python benchmarks/default_budget.py --init torch --batch 16 --steps 1000   # the recipe before issue 23

Each evaluation appends one JSON line to ``benchmarks/results/default_budget.jsonl`` (the recipe, the step, the
PSNR, the training compute in GFLOP and in plain steps of the recipe, seconds); ``--table`` prints and writes
``benchmarks/results/default_budget.csv`` from it. Compute, not seconds, is the yardstick: a DnCNN step costs
3 x (forward multiply-adds x 2) per pixel, which holds on any machine, and the runs can share one.

``--init torch`` is PyTorch's default init (DnCNN's before issue 23); ``he_zero`` is DnCNN's own
(:meth:`m3l.models.dncnn.DnCNN.reset_parameters`).
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch

from common import RESULTS, report

LOG = RESULTS / "default_budget.jsonl"


def gflop_per_step(width: int, depth: int, batch: int, patch: int) -> float:
    """Forward and backward of one DnCNN step: about 3x the forward's 2 FLOP per multiply-add."""
    macs = 9 * (width + (depth - 2) * width * width + width)  # per pixel: first, hidden and last 3x3 convs
    return 3 * 2 * macs * batch * patch * patch / 1e9


def train(args) -> None:
    from m3l.data.image_folders import ImageFolderDataModule
    from m3l.engine.metrics import psnr
    from m3l.models.dncnn import DnCNN

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = ImageFolderDataModule(patch_size=args.patch, train_batch_size=args.batch,
                                 patches_per_epoch=args.batch * args.steps, num_workers=0)
    data.setup(None)
    net = DnCNN(width=args.width, depth=args.depth)
    if args.init == "torch":  # PyTorch's default init of every layer
        for module in net.modules():
            if hasattr(module, "reset_parameters") and module is not net:
                module.reset_parameters()
    optimizer = torch.optim.Adam(net.parameters(), args.lr)
    drop = int(args.drop * args.steps)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [drop], 0.1)
    evaluations = {int(s) for s in args.eval.split(",") if s} | {args.steps}

    @torch.no_grad()
    def test_psnr() -> float:
        net.eval()
        values = [float(psnr(net(item["input"][None]), item["target"][None]))
                  for dataset in data.test_sets_ for item in (dataset[i] for i in range(len(dataset)))]
        net.train()
        return sum(values) / len(values)

    step, seconds, recipe = 0, 0.0, {k: v for k, v in vars(args).items() if k not in ("eval", "table", "threads")}
    per_step = gflop_per_step(args.width, args.depth, args.batch, args.patch)
    for batch in data.train_dataloader():
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(batch["input"]), batch["target"]).backward()
        optimizer.step()
        schedule.step()
        seconds += time.perf_counter() - start
        step += 1
        if step in evaluations:
            row = {**recipe, "at": step, "psnr": round(test_psnr(), 3), "gflop": round(step * per_step),
                   "train_s": round(seconds, 1), "threads": args.threads}
            print(json.dumps(row), flush=True)
            RESULTS.mkdir(exist_ok=True)
            with open(LOG, "a") as log:
                log.write(json.dumps(row) + "\n")
        if step >= args.steps:
            break


def table() -> None:
    rows = pd.read_json(LOG, lines=True)
    rows = rows.sort_values(["init", "width", "batch", "steps", "at"])
    columns = ["init", "width", "depth", "batch", "patch", "lr", "steps", "drop", "at", "gflop", "psnr"]
    report(rows[columns].to_dict("records"), "default_budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=17)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--steps", type=int, default=750)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--drop", type=float, default=0.8, help="the lr drops 10x after this share of the steps")
    parser.add_argument("--init", choices=["he_zero", "torch"], default="he_zero")
    parser.add_argument("--eval", default="", help="steps to measure at besides the last, e.g. 300,500")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (two runs can share 2 cores)")
    parser.add_argument("--table", action="store_true", help="only write the table of the runs logged so far")
    args = parser.parse_args()
    if args.table:
        table()
    else:
        train(args)


if __name__ == "__main__":
    main()
