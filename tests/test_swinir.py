"""SwinIR (denoising, JPEG artifact removal): m3l's net is the authors' network as their test script runs it.

The authors' network is spandrel's ``SwinIR`` class (the authors' code, kept by spandrel; test-only), with random
weights, saved as the authors' training code saves it (``{"params": state}``, buffers included); m3l reads the file
through its loading path (:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both run
on the same input in eval mode: m3l's net on the image, the authors' on the image padded as their
``main_test_swinir.py`` pads it (mirror, up to the next multiple of the window strictly above), then cropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_images
from PIL import Image

from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.swinir import WEIGHTS, SwinIR, mirror_pad, shifted_window_mask

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def authors_test_pad(x: torch.Tensor, window: int) -> torch.Tensor:
    """main_test_swinir.py's padding, as it reads: concatenate the vertically (then horizontally) flipped image
    below (right of) the image and keep ``(size // window + 1) * window`` rows (columns)."""
    h, w = x.shape[-2:]
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :(h // window + 1) * window, :]
    return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :(w // window + 1) * window]


def authors_net(spandrel_arch, channels=1, embed_dim=12, depths=(2, 2), heads=(2, 3), window=4, mlp_ratio=2.0,
                img_range=1.0, resi_connection="1conv", seed=0):
    """The authors' SwinIR without upsampler, weights perturbed away from their initialisation (whose zero biases
    and unit norms would hide a misplaced bias or norm)."""
    torch.manual_seed(seed)
    net = spandrel_arch("SwinIR").SwinIR(
        img_size=window * 8, patch_size=1, in_chans=channels, embed_dim=embed_dim, depths=list(depths),
        num_heads=list(heads), window_size=window, mlp_ratio=mlp_ratio, img_range=img_range, upscale=1, upsampler="",
        resi_connection=resi_connection, drop_path_rate=0.0).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return net


def save_as_the_authors(net: torch.nn.Module, path):
    torch.save({"params": {k: v.cpu() for k, v in net.state_dict().items()}}, path)  # KAIR's save_network
    return path


def m3l_net(path, **override) -> tuple[SwinIR, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "swinir"
    net = SwinIR(**{**net_args, **override})
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def layouts_detecting(path) -> list[str]:
    raw = _layouts.read(path)
    return [layout.name for layout in _layouts.all_layouts().values() if layout.detect(raw)]


def max_diff(authors, net, x, window) -> float:
    with torch.no_grad():
        expected = authors(authors_test_pad(x, window))[..., :x.shape[-2], :x.shape[-1]]
        got = net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


TINY = {  # the authors' arguments; img_range is what the file implies (255 for window 7, else 1)
    "gray-w4": {"channels": 1, "embed_dim": 12, "depths": (2, 2), "heads": (2, 3), "window": 4},
    "color-w5-3conv": {"channels": 3, "embed_dim": 16, "depths": (3,), "heads": (4,), "window": 5, "mlp_ratio": 1.5,
                       "resi_connection": "3conv"},
    "color-w7-jpeg": {"channels": 3, "embed_dim": 12, "depths": (2, 1), "heads": (3, 2), "window": 7,
                      "img_range": 255.0},
}


@pytest.mark.parametrize("name", TINY)
def test_swinir_equals_the_authors_network_as_their_test_script_runs_it(spandrel_arch, tmp_path, name):
    config = TINY[name]
    authors = authors_net(spandrel_arch, **config)
    path = save_as_the_authors(authors, tmp_path / "swinir.pth")
    net, net_args = m3l_net(path)
    window = config["window"]
    assert net_args == {"channels": config["channels"], "embed_dim": config["embed_dim"],
                        "depths": list(config["depths"]), "heads": list(config["heads"]), "window_size": window,
                        "mlp_ratio": config.get("mlp_ratio", 2.0), "img_range": config.get("img_range", 1.0),
                        "resi_connection": config.get("resi_connection", "1conv")}
    # odd sizes, multiples of the window (padded by a whole window), the smallest the net takes
    for size in [(37, 45), (4 * window, 3 * window), (window + 1, 2 * window + 3)]:
        assert max_diff(authors, net, torch.rand(1, config["channels"], *size), window) < TOLERANCE
    assert layouts_detecting(path) == ["swinir"]


def test_swinir_in_training_mode_pads_as_the_authors_network(spandrel_arch, tmp_path):
    """Training: no test-script padding, the authors' net's own (reflection to a multiple; none for a multiple)."""
    authors = authors_net(spandrel_arch, channels=3, window=4).train()
    net, _ = m3l_net(save_as_the_authors(authors, tmp_path / "swinir.pth"), drop_path=0.0)
    net.train()
    for size in [(16, 12), (18, 13)]:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            assert (net(x) - authors(x)).abs().max().item() < TOLERANCE


def test_mirror_padding_is_the_authors_and_reaches_one_window_past_a_multiple():
    x = torch.rand(1, 2, 13, 16)
    assert torch.equal(mirror_pad(x, 8), authors_test_pad(x, 8))
    assert mirror_pad(x, 8).shape[-2:] == (16, 24)  # 16 is a multiple: a whole window more, as the authors


def test_shifted_window_mask_separates_the_pixels_the_roll_brought_together():
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert not mask[0].any()  # the top-left window holds one region
    last = mask[3]  # the bottom-right window: 4 regions of 2x2 pixels (row-major 4x4 window)
    same = [0, 1, 4, 5]
    assert not last[0, same].any() and (last[0, [2, 3, 8, 12, 15]] == -100).all()


# The paper's nets (SwinIR-M) as the authors' main_test_swinir.py defines them, one weights entry of each kind.
PAPER = {
    "swinir_color_sigma15": {"channels": 3, "window": 8, "img_range": 1.0},
    "swinir_gray_sigma25": {"channels": 1, "window": 8, "img_range": 1.0},
    "swinir_gray_jpeg10": {"channels": 1, "window": 7, "img_range": 255.0},
    "swinir_color_jpeg40": {"channels": 3, "window": 7, "img_range": 255.0},
}


@pytest.mark.parametrize("entry", [pytest.param(e, marks=pytest.mark.slow) if e != "swinir_gray_jpeg10" else e
                                   for e in PAPER])
def test_swinir_equals_the_authors_network_at_paper_size(spandrel_arch, tmp_path, entry):
    config = PAPER[entry]
    authors = authors_net(spandrel_arch, config["channels"], 180, [6] * 6, [6] * 6, config["window"], 2.0,
                          config["img_range"])
    path = save_as_the_authors(authors, tmp_path / "swinir.pth")
    net, net_args = m3l_net(path)
    assert net_args == WEIGHTS_BY_NAME[entry].net
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in authors.parameters())
    assert max_diff(authors, net, torch.rand(1, config["channels"], 11, 13), config["window"]) < TOLERANCE


WEIGHTS_BY_NAME = {entry.name: entry for entry in WEIGHTS}


def test_weights_entries_are_the_authors_release():
    assert len(WEIGHTS) == 14
    urls = {entry.name: entry.url for entry in WEIGHTS}
    release = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
    assert urls["swinir_gray_sigma50"] == release + "004_grayDN_DFWB_s128w8_SwinIR-M_noise50.pth"
    assert urls["swinir_color_sigma15"] == release + "005_colorDN_DFWB_s128w8_SwinIR-M_noise15.pth"
    assert urls["swinir_gray_jpeg10"] == release + "006_CAR_DFWB_s126w7_SwinIR-M_jpeg10.pth"
    assert urls["swinir_color_jpeg30"] == release + "006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg30.pth"
    for entry in WEIGHTS:
        assert entry.layout == "swinir" and entry.sha256 is None
        window = 7 if "jpeg" in entry.variant else 8
        assert entry.net["window_size"] == window and entry.net["img_range"] == (255.0 if window == 7 else 1.0)
        assert entry.net["channels"] == (3 if entry.variant.startswith("color") else 1)
        level = entry.variant.rsplit("_", 1)[1]  # sigma15, jpeg40: each file is tested at its own level only
        assert {key.split("/")[1] for key in entry.metrics} == {level}
        value = "".join(filter(str.isdigit, level))
        assert any(o.startswith("data.test_degradations=") and o.endswith(f":{value}}}]") for o in entry.protocol)
    assert WEIGHTS_BY_NAME["swinir_gray_sigma15"].metrics["set12/sigma15/psnr"] == 33.36
    assert WEIGHTS_BY_NAME["swinir_gray_jpeg10"].metrics == {
        "classic5/jpeg10/psnr": 30.27, "classic5/jpeg10/ssim": 0.8249, "classic5/jpeg10/psnrb": 29.95,
        "live1_gray/jpeg10/psnr": 29.86, "live1_gray/jpeg10/ssim": 0.8287, "live1_gray/jpeg10/psnrb": 29.50}


def test_super_resolution_and_incomplete_files_are_refused_in_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch).state_dict()
    torch.save({"params": {**state, "upsample.0.weight": torch.zeros(16, 12, 3, 3)}}, tmp_path / "sr.pth")
    with pytest.raises(M3LError, match="super-resolution SwinIR .*upsample.0.weight"):
        _layouts.convert(tmp_path / "sr.pth")
    del state["layers.1.residual_group.blocks.1.mlp.fc2.bias"]
    torch.save({"params": state}, tmp_path / "incomplete.pth")
    with pytest.raises(M3LError, match=r"lacks key layers\.1\.residual_group\.blocks\.1\.mlp\.fc2\.bias"):
        _layouts.convert(tmp_path / "incomplete.pth")


def test_charbonnier_loss_is_kairs():
    from m3l.engine.losses import CharbonnierLoss

    x, y = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.1)
    assert torch.isclose(CharbonnierLoss()(x, x), torch.tensor(1e-3).sqrt())  # eps added, not squared
    assert torch.isclose(CharbonnierLoss(eps=1e-3)(x, y), torch.tensor(0.01 + 1e-3).sqrt())


def test_paper_preset_is_the_authors_training_options():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=swinir", "preset=paper", "data_root=/sets", "trainer.devices=8"])
        default = compose("train", overrides=["model=swinir"])
    assert cfg.net.embed_dim == 180 and list(cfg.net.depths) == [6] * 6 and cfg.net.window_size == 8
    assert cfg.data.patch_size == 128 and cfg.data.train_batch_size == 1 and cfg.data.degradation.sigma == 15
    assert set(cfg.data.test_sets) == {"set12", "bsd68", "urban100"} and cfg.data.train_dir == "/sets/trainH"
    assert cfg.optimizer.lr == 2e-4 and cfg.loss._target_.endswith("CharbonnierLoss") and cfg.loss.eps == 1e-3
    assert list(cfg.scheduler.milestones) == [800000, 1200000, 1400000, 1500000, 1600000]
    assert cfg.scheduler.gamma == 0.5 and cfg.scheduler_interval == "step" and cfg.trainer.max_steps == 1_600_000
    assert default.net.embed_dim == 24 and default.data.train_dir is None


@pytest.mark.slow
def test_swinir_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.embed_dim=8", "net.depths=[2]", "net.heads=[2]", "net.window_size=4"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=8", "data.train_batch_size=4", "data.deadleaves.count=2",
             "data.deadleaves.size=64", "data.patch_size=32"]
    run_m3l("train", "model=swinir", *net, *train, *QUICK, "checkpoint_out=swinir.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)})
    run_m3l("test", "model=swinir", *QUICK, "checkpoint=swinir.ckpt", "data.test_sets={S: set}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["sigma25"] and rows.psnr.notna().all()
    run_m3l("correct", "model=swinir", *QUICK, "checkpoint=swinir.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33)


@pytest.mark.slow
def test_swinir_corrects_with_an_authors_file_as_their_test_script(spandrel_arch, run_m3l, tmp_path):
    """net.pretrained=FILE of the authors' layout: the architecture comes from the file (JPEG: window 7, img_range
    255); the corrected image is the authors' output, rounded to 8 bits as their script saves it."""
    authors = authors_net(spandrel_arch, channels=1, window=7, img_range=255.0)
    path = save_as_the_authors(authors, tmp_path / "006_CAR_tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 37)})
    run_m3l("correct", "model=swinir", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255)[None, None]
    with torch.no_grad():
        expected = authors(authors_test_pad(x, 7))[..., :37, :45].squeeze().clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most


@pytest.mark.slow
def test_swinir_exports_with_dynamic_height_and_width(tmp_path):
    from m3l.io.export import export_net, load_exported

    torch.manual_seed(0)
    net = SwinIR(3, 8, [2], [2], window_size=4, drop_path=0.0).eval()
    path = tmp_path / "swinir.pt2"
    assert export_net(net, path, channels=3) <= 1e-4
    module, info = load_exported(path)
    assert info["min_size"] == 5  # window + 1
    for batch, size in [(1, (19, 30)), (2, (37, 11)), (1, (16, 8))]:
        x = torch.rand(batch, 3, *size)
        with torch.no_grad():
            assert (module(x) - net(x)).abs().max().item() < TOLERANCE
