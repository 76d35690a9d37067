"""python -m m3l.run.score: another method's folder of results scored as m3l.run.test scores m3l's."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import write_images
from m3l.errors import M3LError


def noisy_copies(source, target, sigma=20, seed=0):
    rng = np.random.default_rng(seed)
    for path in sorted(source.rglob("*.png")):
        clean = np.asarray(Image.open(path), dtype=float)
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)).save(out)


def check_x8(checkpoint, source, written):
    """m3l.run.correct ensemble=x8 wrote the mean of the net's 8 passes over the flips / rotations of ``source``."""
    import torch

    from m3l.checkpoint import load_weights
    from m3l.io.images import read_image, to_uint8
    from m3l.models.dncnn import DnCNN
    from m3l.engine.restoration import RestorationModule
    from test_ensemble import D4

    module = RestorationModule(DnCNN(depth=3, width=8)).eval()
    load_weights(module, checkpoint)
    x = read_image(source)[None]
    with torch.no_grad():
        expected = to_uint8(torch.stack([inverse(module(forward(x))) for forward, inverse in D4]).mean(0)[0])
        plain = to_uint8(module(x)[0])
    difference = np.abs(np.asarray(Image.open(written)).astype(int) - expected)  # 1: a mean on a rounding edge
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    assert np.abs(expected.astype(int) - plain).max() > 1  # the plain pass is not the ensemble


@pytest.mark.slow
def test_scores_a_corrected_folder_as_skimage_measures_its_files(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "clean", {"a.png": (40, 30), "sub/b.png": (33, 47)})
    noisy_copies(tmp_path / "clean", tmp_path / "noisy")
    run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
            "data.correct_dir=noisy", "serializer.root_dir=restored", "data.num_workers=0", "ensemble=x8")
    check_x8(tiny_checkpoint, tmp_path / "noisy" / "a.png", tmp_path / "restored" / "a.png")
    (tmp_path / "noisy" / "a.png").rename(tmp_path / "noisy" / "a.bmp")  # matched by name, any extension
    result = run_m3l("score", "clean_dir=clean", "restored_dir=restored", "degraded_dir=noisy",
                     "degradation_name=sigma20", "hydra.run.dir=run")
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    assert list(per_image.columns) == ["dataset", "degradation", "image", "height", "width", "psnr", "ssim",
                                       "psnr_input", "ssim_input"]  # m3l.run.test's per_image.csv columns
    assert per_image.image.tolist() == ["a.png", "sub/b.png"] and set(per_image.dataset) == {"clean"}
    for row in per_image.itertuples():
        clean = np.asarray(Image.open(tmp_path / "clean" / row.image))
        for column, folder in (("", "restored"), ("_input", "noisy")):
            [other] = (tmp_path / folder).glob(row.image.replace(".png", ".*"))
            other = np.asarray(Image.open(other))
            assert getattr(row, "psnr" + column) == pytest.approx(
                peak_signal_noise_ratio(clean, other, data_range=255), abs=1e-4)
            assert getattr(row, "ssim" + column) == pytest.approx(structural_similarity(
                clean, other, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False), abs=1e-5)
    summary = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary[["dataset", "degradation", "n_images"]].values.tolist() == [["clean", "sigma20", 2]]
    assert summary.psnr[0] == pytest.approx(per_image.psnr.mean(), abs=1e-5)
    assert "sigma20" in result.stdout and "metrics:" in result.stdout

    (tmp_path / "restored" / "sub" / "b.png").unlink()
    missing = run_m3l("score", "clean_dir=clean", "restored_dir=restored", check=False)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "m3l score: error: restored_dir: restored lacks 1 of the clean images (sub/b.png); images are matched by "
        "relative name, any extension"]


def config(tmp_path, **keys):
    return OmegaConf.create({"clean_dir": str(tmp_path / "clean"), "restored_dir": str(tmp_path / "restored"),
                             "degraded_dir": None, "dataset_name": None, "degradation_name": None, "channels": None,
                             "metrics": {"psnrb": True, "y_channel": True, "crop_border": 2},
                             "metrics_csv": str(tmp_path / "m.csv"), "per_image_csv": str(tmp_path / "p.csv"), **keys})


def test_rgb_with_y_channel_crop_and_psnrb_uses_m3l_metrics(tmp_path):
    import torch

    from m3l.engine import metrics
    from m3l.io.images import read_image
    from m3l.run.score import score

    write_images(tmp_path / "clean", {"c.png": (24, 16)}, mode="RGB", seed=1)
    write_images(tmp_path / "restored", {"c.jpg": (24, 16)}, mode="RGB", seed=2)
    score(config(tmp_path))
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    clean, restored = (read_image(next((tmp_path / d).iterdir()), 3)[None] for d in ("clean", "restored"))
    expected = metrics.evaluate(restored, clean, ("psnr", "ssim", "psnrb"), y_channel=True, crop_border=2)
    for name, value in expected.items():
        assert row[name] == pytest.approx(float(value[0]), abs=1e-5)
    assert row["psnr"] != pytest.approx(float(metrics.psnr(restored, clean)[0]), abs=1e-3)  # options did apply
    assert "psnrb" in pd.read_csv(tmp_path / "m.csv").columns


def test_size_mismatch_and_duplicate_names_are_one_line_naming_the_file(tmp_path):
    from m3l.run.score import score

    write_images(tmp_path / "clean", {"a.png": (20, 20)})
    write_images(tmp_path / "restored", {"a.png": (20, 18)})
    with pytest.raises(M3LError, match=r"restored/a\.png: 20x18 pixels, but the clean .*a\.png is 20x20"):
        score(config(tmp_path))
    write_images(tmp_path / "restored", {"a.jpg": (20, 20)})
    with pytest.raises(M3LError, match=r"restored_dir: .*a\.jpg and .*a\.png have the same name"):
        score(config(tmp_path))
    assert not (tmp_path / "p.csv").exists()
