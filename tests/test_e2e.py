"""train -> test -> correct through the real commands, in a temporary folder, on a tiny DnCNN."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import TINY, write_images

pytestmark = pytest.mark.slow


def test_train_writes_checkpoints_run_record_and_exact_final_path(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=run", "checkpoint_out=out/dncnn.ckpt")
    run = tmp_path / "run"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(tmp_path / "out" / "dncnn.ckpt", weights_only=True)  # plain containers only
    assert checkpoint["m3l_config"]["net"]["depth"] == 3
    assert "net.body.0.weight" in checkpoint["state_dict"]
    info = yaml.safe_load((run / "run.yaml").read_text())
    assert info["command"] == ("python -m m3l.run.train model=dncnn " + " ".join(TINY)
                               + " hydra.run.dir=run checkpoint_out=out/dncnn.ckpt")
    assert info["config"]["data"]["patches_per_epoch"] == 32 and info["config"]["seed"] == 0
    assert {"torch", "pytorch-lightning", "hydra-core", "m3l"} <= set(info["versions"])
    assert len(info["git"]["m3l"]["commit"]) == 40
    logged = pd.read_csv(run / "csv" / "version_0" / "metrics.csv")  # the default logger, logger=csv
    assert logged["val/psnr"].notna().any()


def test_reruns_are_bit_identical(run_m3l, tmp_path):
    write_images(tmp_path / "set", {"a.png": (40, 30), "b.png": (33, 47)})
    for name in ("a", "b"):
        run_m3l("train", "model=dncnn", *TINY, f"hydra.run.dir={name}", "trainer.max_epochs=1")
        run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", "data.num_workers=0", "data.test_sets={s: set}",
                f"checkpoint={name}/checkpoints/last.ckpt", f"hydra.run.dir={name}/test")
    a, b = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for table in ("metrics.csv", "per_image.csv"):
        assert (tmp_path / "a" / "test" / table).read_bytes() == (tmp_path / "b" / "test" / table).read_bytes()


def test_resume_continues_from_a_checkpoint(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=run")
    run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=run", "trainer.max_epochs=2", "resume=auto")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_whether_or_not_it_improved(run_m3l, tmp_path):
    """resume=auto continues from last.ckpt: it must hold the last epoch, not the last improvement (mode=min makes
    every later, better epoch a non-improvement)."""
    run_m3l("train", "model=dncnn", *TINY, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=min",
            "hydra.run.dir=run")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 12) and best["epoch"] < 2


def test_resume_auto_finds_the_latest_run_of_the_same_settings(run_m3l, tmp_path):
    """Timestamped run dirs (no hydra.run.dir): resume=auto continues the newest earlier run of the same model and
    settings (a longer max_epochs allowed), and says in one line where it looked when there is none."""
    first = run_m3l("train", "model=dncnn", *TINY, "resume=auto")
    assert "resume=auto: no earlier run with these settings in" in first.stdout
    [first_ckpt] = (tmp_path / "runs" / "train" / "dncnn").glob("*/checkpoints/last.ckpt")
    second = run_m3l("train", "model=dncnn", *TINY, "trainer.max_epochs=2", "resume=auto")
    assert f"resume=auto: continuing from {first_ckpt}" in second.stdout, second.stdout
    runs = sorted((tmp_path / "runs" / "train" / "dncnn").glob("*/checkpoints/last.ckpt"))
    assert len(runs) == 2
    first_state, second_state = (torch.load(r, weights_only=True) for r in (first_ckpt, *set(runs) - {first_ckpt}))
    assert (first_state["epoch"], second_state["epoch"]) == (0, 1)
    assert second_state["global_step"] == 2 * first_state["global_step"]
    changed = run_m3l("train", "model=dncnn", *TINY, "net.width=6", "resume=auto")
    assert "resume=auto: no earlier run with these settings" in changed.stdout and "continuing" not in changed.stdout


def test_test_writes_summary_and_per_image_tables(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "setA", {"a.png": (40, 30), "b.png": (33, 47)}, seed=1)
    write_images(tmp_path / "setB", {"c.png": (24, 24)}, seed=2)
    result = run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
                     "data.test_sets={A: setA, B: setB}", "data.num_workers=0",
                     "data.test_degradations=[{_target_: m3l.data.degradations.GaussianNoise, sigma: 15},"
                     "{_target_: m3l.data.degradations.GaussianNoise, sigma: 50}]",
                     "metrics_csv=res/metrics.csv", "per_image_csv=res/per_image.csv")
    summary = pd.read_csv(tmp_path / "res" / "metrics.csv")
    assert list(summary.columns) == ["dataset", "degradation", "n_images", "psnr", "ssim"]
    assert summary[["dataset", "degradation", "n_images"]].values.tolist() == [
        ["A", "sigma15", 2], ["A", "sigma50", 2], ["B", "sigma15", 1], ["B", "sigma50", 1]]
    per_image = pd.read_csv(tmp_path / "res" / "per_image.csv")
    assert len(per_image) == 6 and set(per_image.image) == {"a.png", "b.png", "c.png"}
    means = per_image.groupby(["dataset", "degradation"], sort=False).psnr.mean().values
    np.testing.assert_allclose(summary.psnr.values, means, atol=1e-5)
    # noisier input, lower PSNR; the input PSNR at sigma 15 is the published ~24.6 dB
    assert (per_image[per_image.degradation == "sigma15"].psnr_input.mean() - 24.6) ** 2 < 0.25
    assert summary.psnr[0] > summary.psnr[1]
    assert "sigma50" in result.stdout and "metrics:" in result.stdout


def test_test_defaults_to_embedded_photos(run_m3l, tmp_path, tiny_checkpoint):
    run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
            "hydra.run.dir=run", "data.num_workers=0")
    summary = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary[["dataset", "degradation", "n_images"]].values.tolist() == [["photos", "sigma25", 4]]


def test_correct_folder_keeps_relative_paths_and_sizes(run_m3l, tmp_path, tiny_checkpoint):
    inputs = write_images(tmp_path / "in", {"a.png": (31, 17), "sub/b.png": (20, 40), "sub/deeper/c.jpg": (16, 16)})
    write_images(tmp_path / "in", {"rgb.png": (12, 10)}, mode="RGB")
    result = run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
                     "data.correct_dir=in", "serializer.root_dir=out", "data.num_workers=0")
    outputs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert outputs == [".m3l_correct.yaml", "a.png", "rgb.png", "sub/b.png", "sub/deeper/c.png"]
    assert Image.open(tmp_path / "out" / "rgb.png").mode == "RGB"  # colour in, colour out (its luminance restored)
    for source in inputs:
        out = tmp_path / "out" / source.relative_to(tmp_path / "in").with_suffix(".png")
        assert Image.open(out).size == Image.open(source).size and Image.open(out).mode == "L"
    assert "wrote 4 images" in result.stdout


def test_correct_single_image_matches_the_net(run_m3l, tmp_path, tiny_checkpoint):
    from m3l.checkpoint import load_weights
    from m3l.models.dncnn import DnCNN
    from m3l.io.images import read_image, to_uint8
    from m3l.engine.restoration import RestorationModule

    (source,) = write_images(tmp_path, {"photo.png": (33, 21)})
    run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
            f"data.correct_dir={source}", "serializer.root_dir=out", "data.num_workers=0")
    module = RestorationModule(DnCNN(depth=3, width=8)).eval()
    load_weights(module, tiny_checkpoint)
    with torch.no_grad():
        expected = to_uint8(module(read_image(source)[None])[0])
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "photo.png")), expected)


def test_tiled_correction_equals_whole_image(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "in", {"big.png": (45, 38)})
    common = ["model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}", "data.correct_dir=in",
              "data.num_workers=0"]
    run_m3l("correct", *common, "serializer.root_dir=whole")
    run_m3l("correct", *common, "serializer.root_dir=tiled", "tile=16", "tile_overlap=3", "channels_last=true")
    whole, tiles = (np.array(Image.open(tmp_path / d / "big.png")) for d in ("whole", "tiled"))
    assert np.array_equal(whole, tiles)


def test_without_a_progress_bar_runs_print_progress_lines(run_m3l, tmp_path, tiny_checkpoint):
    """The workflow's jobs run with trainer.enable_progress_bar=false: their logs still show where they are."""
    import re

    result = run_m3l("train", "model=dncnn", *TINY, "progress_every=0", "hydra.run.dir=run")
    lines = re.findall(r"^epoch (\d+)/1 step (\d+)/(\d+) train_loss \S+.* it/s \S+ ETA \S+$", result.stdout, re.M)
    assert [int(step) for _, step, _ in lines[:4]] == [1, 2, 3, 4] and lines[-1][1] == lines[-1][2] == "4"
    assert {epoch for epoch, _, _ in lines} == {"1"}
    write_images(tmp_path / "in", {"a.png": (24, 20), "b.png": (20, 24)})
    result = run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
                     "data.correct_dir=in", "serializer.root_dir=out", "data.num_workers=0",
                     "trainer.enable_progress_bar=false", "progress_every=0")
    assert re.search(r"^correct images 2/2 ETA \S+$", result.stdout, re.M), result.stdout
    quiet = run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=quiet")  # progress_every=30: the end line only
    assert len(re.findall(r"^epoch \d+/1 step", quiet.stdout, re.M)) == 1
    # the bar left on (the default), stdout not a terminal (nohup, sbatch, CI): progress lines instead of a bar
    barred = [a for a in TINY if "progress_bar" not in a]
    logged = run_m3l("train", "model=dncnn", *barred, "trainer.enable_progress_bar=true", "progress_every=0",
                     "hydra.run.dir=logged")
    assert re.findall(r"^epoch 1/1 step 4/4 train_loss", logged.stdout, re.M) and "━" not in logged.stdout
