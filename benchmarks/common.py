"""Helpers shared by the benchmark scripts: running m3l commands, medians, and printing/writing tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU x{torch.get_num_threads()} threads"


def run_m3l(task: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", f"m3l.run.{task}", *overrides], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"m3l.run.{task} failed:\n{result.stderr[-3000:]}")
    return result


def correct_args(description: str):
    """The arguments of the correction benchmarks: ``--images``, ``--repeats`` and ``--device``."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def median(values) -> float:
    return statistics.median(values)


def report(rows: list[dict], name: str) -> pd.DataFrame:
    """Print ``rows`` as a table and write them to ``benchmarks/results/<name>.csv``."""
    frame = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    frame.to_csv(RESULTS / f"{name}.csv", index=False, float_format="%.4f")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> {RESULTS / (name + '.csv')}")
    return frame
