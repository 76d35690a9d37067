"""Correction throughput: images/s of ``python -m m3l.run.correct`` against a plain loop of
``Image.open -> tensor -> net -> save`` over the same folder of BSD68-sized (481x321) gray images,
with the same DnCNN weights, in the same run.

m3l's rate is the one its serializer reports (from the start to the end of prediction, data loading
and PNG writing included); the plain loop is timed the same way.

    python benchmarks/correct_throughput.py [--images 12] [--repeats 2] [--tile 0]
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import correct_args, device_name, median, report, run_m3l

SHARED_BSD68 = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsd68"


def make_images(folder: Path, count: int) -> list[Path]:
    """BSD68 itself when ../shared/data is beside the checkout, else dead-leaves images of its size."""
    folder.mkdir(parents=True)
    sources = sorted(SHARED_BSD68.glob("*.png"))[:count] if SHARED_BSD68.is_dir() else []
    for i in range(count):
        if i < len(sources):
            Image.open(sources[i]).save(folder / sources[i].name)
        else:
            from m3l.data.deadleaves import dead_leaves

            array = dead_leaves(481, np.random.default_rng(i))[0, :321]
            Image.fromarray((array * 255).round().astype(np.uint8)).save(folder / f"synthetic{i:03d}.png")
    return sorted(folder.glob("*.png"))


def plain_loop(files: list[Path], net: torch.nn.Module, out: Path, device: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            x = torch.from_numpy(np.array(Image.open(path).convert("L"), dtype=np.float32) / 255)[None, None]
            y = net(x.to(device)).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()[0, 0]
            Image.fromarray(y).save(out / path.name)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    args = correct_args(__doc__.splitlines()[0])

    from m3l.data.image_folders import default_workers
    from m3l.models.dncnn import DnCNN

    torch.manual_seed(0)
    net = DnCNN().eval().to(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_images(tmp / "in", args.images)
        torch.save(net.state_dict(), tmp / "dncnn.pth")
        accelerator = "gpu" if args.device == "cuda" else "cpu"
        for repeat in range(args.repeats):
            plain = plain_loop(files, net, tmp / f"plain{repeat}", args.device)
            result = run_m3l("correct", "model=dncnn", f"checkpoint={tmp / 'dncnn.pth'}", f"data.correct_dir={tmp / 'in'}",
                             f"serializer.root_dir={tmp / f'm3l{repeat}'}", f"trainer.accelerator={accelerator}",
                             f"hydra.run.dir={tmp / f'run{repeat}'}", cwd=tmp)
            ours = float(re.search(r"\(([\d.]+) images/s\)", result.stdout).group(1))
            same = all(np.array_equal(np.array(Image.open(tmp / f"plain{repeat}" / f.name)),
                                      np.array(Image.open(tmp / f"m3l{repeat}" / f.name))) for f in files)
            rows += [{"runner": "plain", "repeat": repeat, "images_per_s": plain, "identical_outputs": same},
                     {"runner": "m3l", "repeat": repeat, "images_per_s": ours, "identical_outputs": same}]
    for row in rows:
        row.update(device=device_name(), images=args.images, workers=default_workers())
    report(rows, f"correct_throughput_{args.device}")
    ratio = median([r["images_per_s"] for r in rows if r["runner"] == "m3l"]) / median(
        [r["images_per_s"] for r in rows if r["runner"] == "plain"])
    print(f"m3l / plain images per second: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
