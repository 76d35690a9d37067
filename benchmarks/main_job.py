"""The main job's wall time and where it goes: ``snakemake -c2 results/dncnn/metrics.csv`` as a user runs it.

Runs the real workflow of this checkout in a fresh folder with a fresh m3l cache (a new machine: the dead-leaves
images and the pixel cache are built inside the job), then splits the wall time by

- snakemake's plan (start until the first job starts) and its bookkeeping after the last job;
- each job (train, test): snakemake's start and finish lines;
- inside training, ``results/dncnn/train/timing.json`` (m3l.engine.timing.TimeSplit): steps, data wait,
  validation, the rest of the fit; the process start-up (imports, data setup, writing the checkpoint) is the
  job's time minus the fit.

The yardstick, measured in the same run: a plain PyTorch loop of the same DnCNN steps (the default model's width,
depth, batch and patch size as ``model=dncnn`` composes them, Adam, the same compute threads) in a fresh process, so the table says what the job costs in plain steps and holds
on a faster or a busier machine: ``job / plain`` is the ratio to read.

    python benchmarks/main_job.py [--cores 2] [--plain-steps 20] [--preset tiny]

writes ``benchmarks/results/main_job.csv`` (part, seconds, share of the job, plain-step equivalents).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import report

REPO = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")

PLAIN = """
import sys, time, torch
from m3l.models.dncnn import DnCNN
threads, steps, width, depth, batch, patch = map(int, sys.argv[1:])
torch.set_num_threads(threads); torch.manual_seed(0)
net = DnCNN(width=width, depth=depth); opt = torch.optim.Adam(net.parameters(), 1e-3)
x, y = torch.rand(batch, 1, patch, patch), torch.rand(batch, 1, patch, patch)
for i in range(steps + 3):
    if i == 3:
        start = time.perf_counter()
    opt.zero_grad(); torch.nn.functional.mse_loss(net(x), y).backward(); opt.step()
print((time.perf_counter() - start) / steps)
"""


def default_recipe() -> dict[str, int]:
    """The default model's net and training batch, as ``python -m m3l.run.train model=dncnn`` composes them."""
    from hydra import initialize_config_module

    from m3l.run.precedence import compose_as_run

    with initialize_config_module("m3l.configs", version_base=None):
        cfg = compose_as_run("train", ["model=dncnn"])
    return {"width": cfg.net.width, "depth": cfg.net.depth, "batch": cfg.data.train_batch_size,
            "patch": cfg.data.patch_size}


def plain_step(threads: int, steps: int, recipe: dict[str, int]) -> float:
    """Seconds per plain training step of the default DnCNN (a fresh process, ``threads`` torch threads)."""
    out = subprocess.run([sys.executable, "-c", PLAIN, str(threads), str(steps), *map(str, recipe.values())],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def job_times(log: str) -> dict[str, tuple[datetime, datetime]]:
    """{rule: (start, finish)} from snakemake's log: a time stamp line, then ``rule X:`` or ``Finished ...``."""
    times: dict[str, list] = {}
    stamp = None
    for line in log.splitlines():
        match = STAMP.match(line.strip())
        if match:
            stamp = datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        started = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        finished = re.search(r"Finished job(?:id)?:? \d+ \(Rule: (\w+)\)", line)
        if started and stamp:
            times.setdefault(started.group(1), [stamp, None])
        elif finished and stamp and finished.group(1) in times:
            times[finished.group(1)][1] = stamp
    return {rule: (a, b) for rule, (a, b) in times.items() if b is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2, help="snakemake -c (the README's main job: 2)")
    parser.add_argument("--plain-steps", type=int, default=20)
    parser.add_argument("--preset", default=None, help="another workflow preset (tiny: a check of this script)")
    args = parser.parse_args()

    from m3l.run.common import usable_cores

    threads = min(args.cores, usable_cores())
    recipe = default_recipe()
    before = plain_step(threads, args.plain_steps, recipe)
    with tempfile.TemporaryDirectory(prefix="m3l-main-job-") as folder:
        work = Path(folder)
        env = {**os.environ, "M3L_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "snakemake", "-c", str(args.cores), "--snakefile",
                   str(REPO / "workflow" / "Snakefile"), "--directory", str(work), "results/dncnn/metrics.csv"]
        command += ["--config", f"preset={args.preset}"] if args.preset else []
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"the main job failed:\n{result.stderr[-3000:]}")
        jobs = job_times(result.stderr + result.stdout)
        split = json.loads((work / "results" / "dncnn" / "train" / "timing.json").read_text())
        metrics = (work / "results" / "dncnn" / "metrics.csv").read_text()
    after = plain_step(threads, args.plain_steps, recipe)
    plain = (before + after) / 2

    import io

    import pandas as pd

    psnr = float(pd.read_csv(io.StringIO(metrics))["psnr"].iloc[0])
    train = (jobs["train"][1] - jobs["train"][0]).total_seconds()
    test = (jobs["test"][1] - jobs["test"][0]).total_seconds()
    rows = [
        ("main job (wall)", wall),
        ("train job", train),
        ("  training steps", split["train_steps"]),
        ("  data wait", split["data_wait"]),
        ("  validation", split["validation"]),
        ("  rest of the fit (checkpoints, loggers)", split["other"]),
        ("  start-up and end (imports, data setup, copies)", max(0.0, train - split["fit"])),
        (f"test job (test PSNR {psnr:.2f} dB, embedded photos, sigma 25)", test),
        ("snakemake (plan, bookkeeping)", max(0.0, wall - train - test)),
    ]
    table = [{"part": part, "seconds": round(seconds, 1), "share": round(seconds / wall, 3),
              "plain_steps": round(seconds / plain)} for part, seconds in rows]
    size = f"batch {recipe['batch']} of {recipe['patch']}x{recipe['patch']}"
    table.append({"part": f"plain step ({threads} threads, {size}, {split['steps']} in the job)", "seconds": round(plain, 4),
                  "share": float("nan"), "plain_steps": 1})
    report(table, "main_job" if not args.preset else f"main_job_{args.preset}")
    print(f"steps in the job: {split['steps']}; training steps / plain steps: "
          f"{split['train_steps'] / (split['steps'] * plain):.3f}; the job is {wall / plain:.0f} plain steps")
    print(metrics)


if __name__ == "__main__":
    main()
