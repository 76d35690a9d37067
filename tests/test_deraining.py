"""Deraining as a task (data=deraining): rainy input/ and clean target/ pairs, measured on the Y channel as the
deraining papers (Restormer's and MPRNet's evaluate_PSNR_SSIM.m: MATLAB rgb2ycbcr luma, no border cropped)."""

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from conftest import write_images
from m3l.engine import metrics
from m3l.models.restormer import Restormer

QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TINY = {"channels": 3, "width": 4, "num_blocks": [1, 1], "heads": [1, 1], "refinement_blocks": 1}


def compose_test(*overrides: str):
    with initialize_config_module("m3l.configs", version_base=None):
        return compose("test", ["model=restormer", "checkpoint=x", *overrides])


def test_deraining_reads_input_target_pairs_and_measures_the_luma():
    cfg = compose_test("data=deraining", "data.test_sets={rain100l: /sets/rain100l}")
    assert cfg.data._target_ == "m3l.data.paired_folders.PairedFolderDataModule"
    assert (cfg.data.input, cfg.data.target, cfg.data.degradation) == ("/input/", "/target/", "rain")
    assert dict(cfg.metrics) == {"psnrb": False, "y_channel": True, "crop_border": 0}
    assert dict(cfg.data.test_sets) == {"rain100l": "/sets/rain100l"}
    # the command line still wins over the data config's metrics; other data configs keep RGB metrics
    assert compose_test("data=deraining", "metrics.y_channel=false").metrics.y_channel is False
    assert compose_test("data=paired").metrics.y_channel is False


def read(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float().div(255).permute(2, 0, 1)[None]


@pytest.mark.slow
def test_restormer_on_deraining_pairs_reports_y_channel_psnr_and_ssim(run_m3l, tmp_path):
    """``m3l.run.test model=restormer data=deraining net.pretrained=FILE data.test_sets={rain100l: DIR}``: the
    table's PSNR / SSIM are metrics.psnr / ssim with y_channel=True on the same files (and not the RGB ones)."""
    torch.manual_seed(1)
    net = Restormer(**TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.eval()
    path = tmp_path / "deraining_tiny.pth"
    torch.save({"state_dict": net.state_dict(), "m3l_layout": 1, "m3l_net_args": TINY,
                "m3l_target": "m3l.models.restormer.Restormer"}, path)
    sizes = {"1.png": (37, 29), "2.png": (24, 32)}
    write_images(tmp_path / "rain100l" / "target", sizes, mode="RGB", seed=1)
    for name in sizes:  # "rain": bright streaks over the clean image
        clean = np.array(Image.open(tmp_path / "rain100l" / "target" / name)).astype(int)
        clean[:, ::5] = np.minimum(clean[:, ::5] + 90, 255)
        (tmp_path / "rain100l" / "input").mkdir(exist_ok=True)
        Image.fromarray(clean.astype(np.uint8)).save(tmp_path / "rain100l" / "input" / name)
    run_m3l("test", "model=restormer", "data=deraining", f"net.pretrained={path}",
            "data.test_sets={rain100l: rain100l}", *QUICK, "hydra.run.dir=test")
    table = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert table[["dataset", "degradation", "n_images"]].values.tolist() == [["rain100l", "rain", 2]]
    per_image = pd.read_csv(tmp_path / "test" / "per_image.csv").set_index("image")
    psnr, ssim, psnr_input, psnr_rgb = [], [], [], []
    for name in sizes:
        x, target = read(tmp_path / "rain100l" / "input" / name), read(tmp_path / "rain100l" / "target" / name)
        with torch.no_grad():
            output = net(x)
        psnr.append(metrics.psnr(output, target, y_channel=True).item())
        ssim.append(metrics.ssim(output, target, y_channel=True).item())
        psnr_input.append(metrics.psnr(x, target, y_channel=True).item())
        psnr_rgb.append(metrics.psnr(output, target).item())
        row = per_image.loc[next(i for i in per_image.index if i.endswith(name))]
        assert row.psnr == pytest.approx(psnr[-1], abs=1e-3) and row.ssim == pytest.approx(ssim[-1], abs=1e-4)
        assert row.psnr_input == pytest.approx(psnr_input[-1], abs=1e-3)
    assert table.psnr[0] == pytest.approx(np.mean(psnr), abs=1e-3)
    assert table.ssim[0] == pytest.approx(np.mean(ssim), abs=1e-4)
    assert abs(table.psnr[0] - np.mean(psnr_rgb)) > 0.05  # Y, not RGB


def test_deraining_and_defocus_weights_are_the_motion_deblurring_architecture():
    """Their option files' network_g is Deblurring_Restormer.yml's (width 48, blocks 4-6-6-8, WithBias, no dual
    pixel), whose file implies motion_deblurring's net (tests/test_authors_weights.py checks it on its keys)."""
    from m3l.hub import WEIGHTS

    motion = WEIGHTS["restormer_motion_deblurring"]
    for name in ("restormer_deraining", "restormer_defocus_deblurring"):
        entry = WEIGHTS[name]
        assert entry.net == motion.net and entry.layout == "restormer" and entry.family == "restormer"
        assert entry.url.startswith("https://github.com/swz30/Restormer/releases/download/v1.0/")


def test_the_entries_protocols_test_the_standard_sets_as_the_authors():
    from m3l.data.standard_sets import SETS
    from m3l.hub import WEIGHTS

    derain, defocus = WEIGHTS["restormer_deraining"], WEIGHTS["restormer_defocus_deblurring"]
    cfg = compose_test(*(o.replace("{data_root}", "/sets") for o in derain.protocol))
    assert cfg.metrics.y_channel and cfg.metrics.crop_border == 0 and cfg.data.degradation == "rain"
    assert dict(cfg.data.test_sets) == {s: f"/sets/{s}" for s in ("test100", "rain100h", "rain100l", "test2800",
                                                                    "test1200")}
    cfg = compose_test(*(o.replace("{data_root}", "/sets") for o in defocus.protocol))
    assert not cfg.metrics.y_channel and (cfg.data.input, cfg.data.target) == ("/inputC/", "/target/")
    assert dict(cfg.data.test_sets) == {"dpdd": "/sets/dpdd"}
    for entry, degradation in ((derain, "rain"), (defocus, "defocus")):
        sets = {key.split("/")[0] for key in entry.metrics}
        assert sets <= set(SETS) and {key.split("/")[1] for key in entry.metrics} == {degradation}
