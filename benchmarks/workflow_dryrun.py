"""Workflow: wall time of a dry run of the full benchmark (the shipped models plus ``--models`` DnCNN
variants, the tables and the report figures) from a fresh folder, median of ``--repeats``. Goal: under 3 s.

Note: snakemake-executor-plugin-slurm runs ``scontrol show config`` when it is imported; on a machine
with Slurm's client installed but no controller answering, that alone waits ~9 s.

    python benchmarks/workflow_dryrun.py [--repeats 3] [--models 12]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import median, report

SNAKEFILE = Path(__file__).resolve().parents[1] / "workflow" / "Snakefile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=int, default=12, help="DnCNN variants in the benchmark")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        models = {f"dncnn_w{8 + i}": {"model": "dncnn", "overrides": [f"net.width={8 + i}"]} for i in range(args.models)}
        config.write_text(yaml.safe_dump({"models": models}))
        for repeat in range(args.repeats):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "--snakefile",
                                     str(SNAKEFILE), "--directory", tmp, "--configfile", str(config)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(result.stderr[-2000:])
            rows.append({"repeat": repeat, "models": args.models, "seconds": time.perf_counter() - start})
    report(rows, "workflow_dryrun")
    print(f"median dry run: {median([r['seconds'] for r in rows]):.2f} s (goal < 3 s)")


if __name__ == "__main__":
    main()
