"""Deployment: the size of the exported file (torch.export and TorchScript) and the speed of the
torch-and-Pillow-only runner ``m3l/deploy.py`` (copied alone, as a user deploys it) against ``python -m m3l.run.correct``, on
the same folder of BSD68-sized (481x321) gray images with the same DnCNN weights, in the same run.

Both rates are the ones the commands print (from the first image to the last, reading and PNG
writing included, start-up and model loading not); ``wall_s`` is the whole process, start-up included.

    python benchmarks/export_runner.py [--images 12] [--repeats 2] [--device cpu|cuda]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import correct_args, device_name, median, report, run_m3l
from correct_throughput import make_images

RUNNER = Path(__file__).resolve().parents[1] / "m3l" / "deploy.py"
RATE = re.compile(r"\(([\d.]+) images/s\)")


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(images/s the command printed, wall-clock seconds of the whole process)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return float(RATE.search(result.stdout).group(1)), wall


def main() -> None:
    args = correct_args(__doc__.splitlines()[0])

    from m3l.models.dncnn import DnCNN

    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_images(tmp / "in", args.images)
        runner = Path(shutil.copy(RUNNER, tmp / "deploy.py"))  # the one file a deployment machine gets
        torch.save(DnCNN().state_dict(), tmp / "dncnn.pth")
        models = {"export": tmp / "dncnn.pt2", "torchscript": tmp / "dncnn.pt"}
        for format, path in models.items():
            run_m3l("export", "model=dncnn", f"checkpoint={tmp / 'dncnn.pth'}", f"format={format}", f"out={path}",
                    f"hydra.run.dir={tmp / f'export_{format}'}", cwd=tmp)
        accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
        for repeat in range(args.repeats):
            m3l_out = tmp / f"m3l{repeat}"
            rate, wall = timed([sys.executable, "-m", "m3l.run.correct", "model=dncnn",
                                f"checkpoint={tmp / 'dncnn.pth'}", f"data.correct_dir={tmp / 'in'}",
                                f"serializer.root_dir={m3l_out}", f"trainer.accelerator={accelerator}",
                                "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp / f'run{repeat}'}"], tmp)
            rows.append({"runner": "m3l.run.correct", "format": "checkpoint", "repeat": repeat,
                         "file_mib": (tmp / "dncnn.pth").stat().st_size / 2**20, "images_per_s": rate,
                         "wall_s": wall, "identical_outputs": True})
            for format, path in models.items():
                out = tmp / f"{format}{repeat}"
                rate, wall = timed([sys.executable, str(runner), str(path), str(tmp / "in"), str(out),
                                    "--device", args.device], tmp)
                same = all(np.array_equal(np.array(Image.open(out / f.name)), np.array(Image.open(m3l_out / f.name)))
                           for f in files)
                rows.append({"runner": "deploy.py", "format": format, "repeat": repeat,
                             "file_mib": path.stat().st_size / 2**20, "images_per_s": rate, "wall_s": wall,
                             "identical_outputs": same})
    for row in rows:
        row.update(device=device_name(), images=args.images)
    report(rows, f"export_runner_{args.device.split(':')[0]}")
    base = median([r["images_per_s"] for r in rows if r["format"] == "checkpoint"])
    for format in ("export", "torchscript"):
        rate = median([r["images_per_s"] for r in rows if r["format"] == format])
        print(f"runner ({format}) / m3l.run.correct images per second: {rate / base:.3f}")


if __name__ == "__main__":
    main()
