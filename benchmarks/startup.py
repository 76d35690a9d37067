"""Start-up: wall time of ``python -m m3l.run.train --help`` against ``python -c "import torch,
pytorch_lightning"``, median of ``--repeats`` alternating runs.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import median, report

COMMANDS = {
    "m3l.run.train --help": [sys.executable, "-m", "m3l.run.train", "--help"],
    "import torch, pytorch_lightning": [sys.executable, "-c", "import torch, pytorch_lightning"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    rows = [{"command": name, "median_s": median(t), "min_s": min(t)} for name, t in times.items()]
    report(rows, "startup")
    ratio = rows[0]["median_s"] / rows[1]["median_s"]
    print(f"m3l --help / import torch, pytorch_lightning: {ratio:.3f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
