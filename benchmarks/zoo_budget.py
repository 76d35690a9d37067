"""The image zoo at a CPU-sized budget: train each model on its task, test it on the standard sets.

Trains on Train400 (gray) and tests with the published protocol: denoisers on Set12 and BSD68, JPEG
models on LIVE1 (gray) and Classic5 with PSNR-B, deblurring nets on Set12 with the synthetic camera-shake
blur of ``degradation=motion`` (GoPro is not at hand offline). The budget is a number of training steps
of batch 16, the same for every model of a task, so the table compares nets at equal training, far
below the papers' (GPU days): it shows every model trains through the same commands and what it gains
over the degraded input, next to its parameter count and the paper's.

    python benchmarks/zoo_budget.py --data-root ../shared/data [--steps 800] [--only dncnn nafnet]

Writes ``benchmarks/results/zoo_budget.csv`` (one row per model, test set and degradation) and keeps
each run's folder (checkpoint, run.yaml, metrics) under ``benchmarks/results/zoo_budget/<name>/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from common import RESULTS, report, run_m3l

NOISE = "data.test_degradations=[{_target_:m3l.data.degradations.GaussianNoise,sigma:%d}]"
JPEG_TESTS = ("data.test_degradations=[" + ",".join(
    "{_target_:m3l.data.degradations.JPEG,quality:%d}" % q for q in (10, 20, 30, 40)) + "]")
BLIND_NOISE_TESTS = ("data.test_degradations=[" + ",".join(
    "{_target_:m3l.data.degradations.GaussianNoise,sigma:%d}" % s for s in (15, 25, 50)) + "]")

# name: (model config, task, extra overrides for train and test, paper's parameter count)
MODELS = {
    "dncnn": ("dncnn", "noise", [], 556_097),
    "dncnn_b": ("dncnn_b", "blind_noise", [], 667_073),
    "ffdnet": ("ffdnet", "blind_noise", [], 486_148),
    "drunet_small": ("drunet", "blind_noise", [], 32_640_960),
    "arcnn": ("arcnn", "jpeg", [], 106_561),
    "dncnn3": ("dncnn3", "jpeg", [], 667_073),
    "fbcnn_small": ("fbcnn", "jpeg", [], 71_921_796),
    "nafnet_small": ("nafnet", "blur", [], 17_111_907),
    "restormer_small": ("restormer", "blur", [], 26_126_644),
}


def uncovered() -> list[str]:
    """The image families of the registry (m3l.models._registry) that no row of MODELS trains: a new family is
    named here (add its row) rather than silently left out of the table."""
    from m3l.models._registry import families

    trained = {model for model, *_ in MODELS.values()}
    return [name for name, family in families().items() if name not in trained
            and not hasattr(family.net, "frames") and any(True for _ in family.build(1).parameters())]


def sets(task: str, root: Path) -> list[str]:
    if task == "jpeg":
        return [f"data.test_sets={{live1:{root / 'live1_gray'},classic5:{root / 'classic5'}}}", JPEG_TESTS,
                "metrics.psnrb=true"]
    if task == "blur":
        return [f"data.test_sets={{set12:{root / 'set12'}}}", "data.channels=1"]
    tests = NOISE % 25 if task == "noise" else BLIND_NOISE_TESTS
    return [f"data.test_sets={{set12:{root / 'set12'},bsd68:{root / 'bsd68'}}}", tests]


def params(checkpoint: Path) -> int:
    from m3l.checkpoint import read_checkpoint

    state = read_checkpoint(checkpoint)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith("net.") and v.is_floating_point()
               and "running_" not in k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=800, help="training steps of batch 16 per model")
    parser.add_argument("--only", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    if uncovered():
        print(f"zoo_budget: no row for the families {', '.join(uncovered())} (add them to MODELS)")
    root = args.data_root.resolve()
    out = RESULTS / "zoo_budget"

    rows = []
    for name in args.only:
        model, task, extra, paper = MODELS[name]
        folder = (out / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        common = [f"model={model}", *extra, *sets(task, root)]
        start = time.perf_counter()
        run_m3l("train", *common, f"data.train_dir={root / 'train400'}", f"data.val_dir={root / 'set12'}",
                "data.patches_per_epoch=1600", f"trainer.max_epochs={max(1, args.steps // 100)}",
                f"checkpoint_out={folder / 'model.ckpt'}", f"hydra.run.dir={folder / 'train'}", cwd=folder)
        minutes = (time.perf_counter() - start) / 60
        run_m3l("test", *common, f"checkpoint={folder / 'model.ckpt'}", f"metrics_csv={folder / 'metrics.csv'}",
                f"per_image_csv={folder / 'per_image.csv'}", f"hydra.run.dir={folder / 'test'}", cwd=folder)
        per_image = pd.read_csv(folder / "per_image.csv")
        measured = [c for c in ("psnr", "ssim", "psnrb") if c in per_image]
        means = per_image.groupby(["dataset", "degradation"], sort=False)[
            measured + [c + "_input" for c in measured]].mean()
        for (dataset, degradation), row in means.iterrows():
            rows.append({"name": name, "params": params(folder / "model.ckpt"), "paper_params": paper,
                         "train_min": round(minutes, 1), "dataset": dataset, "degradation": degradation,
                         **row.to_dict(), "gain_db": row["psnr"] - row["psnr_input"]})
        report(rows, "zoo_budget")


if __name__ == "__main__":
    main()
