"""SCUNet (Gaussian and real-noise denoising): m3l's net is the authors' network as their forward runs it.

The authors' network is spandrel's ``SCUNet`` class (the authors' ``models/network_scunet.py``, kept by spandrel;
test-only), with random weights, saved as KAIR saves it (a bare state dict); m3l reads the file through its loading
path (:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both run on the same input in
eval mode. The authors' forward pads the image at the bottom and right to a multiple of 64 by repeating its edge
(``ReplicationPad2d``) and crops back; spandrel's copy reflects instead, so the authors' net is run here on the
image padded as the authors pad it (a multiple of 64 needs none) and cropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import write_images
from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.scunet import ARCH, FAMILY, WEIGHTS, SCUNet

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
REAL = [4, 4, 4, 4, 4, 4, 4]  # the released nets' blocks (width 64, heads of 32 channels)


def authors_net(spandrel_arch, channels=3, config=(2, 1, 1, 2, 1, 1, 2), dim=64, input_resolution=256, seed=0):
    """The authors' SCUNet (heads of 32 channels: dim 64 at least), weights perturbed away from their
    initialisation (whose zero biases and unit norms would hide a misplaced bias or norm)."""
    torch.manual_seed(seed)
    net = spandrel_arch("SCUNet").SCUNet(in_nc=channels, config=list(config), dim=dim,
                                         input_resolution=input_resolution).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return net


def authors_forward(authors, x: torch.Tensor) -> torch.Tensor:
    """The authors' forward: ``ReplicationPad2d`` to a multiple of 64 at the bottom and right, then cropped."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")
    return authors(padded)[..., :h, :w]


def save_as_the_authors(net: torch.nn.Module, path):
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)  # KAIR's save_network: the state dict
    return path


def m3l_net(path, **override) -> tuple[SCUNet, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "scunet"
    net = SCUNet(**{**net_args, **override})
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def max_diff(authors, net, x) -> float:
    with torch.no_grad():
        expected = authors_forward(authors, x)
        got = net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


TINY = {  # the authors' arguments
    "color": {"channels": 3},
    "gray-uneven": {"channels": 1, "config": (1, 2, 1, 3, 1, 2, 1)},
    "color-unshifted-body": {"channels": 3, "input_resolution": 64},  # 64 / 8 <= the window: the body never shifts
}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size", [(64, 128), (70, 100)])  # a multiple of 64 (no padding), and one padded
def test_scunet_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    authors = authors_net(spandrel_arch, **TINY[name])
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "scunet_tiny.pth"))
    # the file does not say input_resolution (the released nets' 256): the test gives the authors' value
    net = SCUNet(**{**args, "input_resolution": TINY[name].get("input_resolution", 256)}).eval()
    net.load_state_dict(authors.state_dict())
    x = torch.rand(1, TINY[name]["channels"], *size)
    difference = max_diff(authors, net, x)
    print(f"SCUNet {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


@pytest.mark.parametrize("channels", [3, pytest.param(1, marks=pytest.mark.slow)])
def test_scunet_equals_the_authors_network_at_the_released_size(spandrel_arch, tmp_path, channels):
    """The released nets' shape (width 64, 4 blocks a stage): the file's architecture and the output."""
    authors = authors_net(spandrel_arch, channels=channels, config=REAL)
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "scunet_real.pth"))
    assert args == {"channels": channels, **ARCH}
    assert sum(p.numel() for p in net.parameters()) == {3: 17_946_072, 1: 17_943_768}[channels]
    difference = max_diff(authors, net, torch.rand(1, channels, 64, 72))
    print(f"SCUNet released size, {channels} channels, 64x72: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_padding_repeats_the_edge_as_the_authors_forward():
    """An image and the same image with its bottom-right edge already repeated to 64 give the same pixels."""
    torch.manual_seed(0)
    net = FAMILY.build(1).eval()
    x = torch.rand(1, 1, 50, 37)
    with torch.no_grad():
        padded = net(F.pad(x, (0, 64 - 37, 0, 64 - 50), mode="replicate"))[..., :50, :37]
        reflected = net(F.pad(x, (0, 64 - 37, 0, 64 - 50), mode="reflect"))[..., :50, :37]
        assert torch.allclose(net(x), padded, atol=1e-6)
        assert not torch.allclose(net(x), reflected, atol=1e-4)


def test_the_layout_gives_the_architecture_and_only_scunet_files_have_it(spandrel_arch, tmp_path):
    authors = authors_net(spandrel_arch, channels=1, config=(1, 2, 1, 3, 1, 2, 1))
    path = save_as_the_authors(authors, tmp_path / "scunet.pth")
    layout, _, args = _layouts.convert(path)
    assert layout.name == "scunet"
    assert args == {"channels": 1, "blocks": [1, 2, 1, 3, 1, 2, 1], "width": 64, "head_dim": 32, "window": 8,
                    "input_resolution": 256}

    def detecting(file) -> list[str]:
        raw = _layouts.read(file)
        return [name for name, candidate in _layouts.all_layouts().items() if candidate.detect(raw)]

    assert detecting(path) == ["scunet"]
    drunet = tmp_path / "drunet.pth"  # KAIR's other U-Nets have m_head / m_tail keys too (unwrapped)
    torch.save({"m_head.weight": torch.zeros(4, 2, 3, 3), "m_body.0.res.0.weight": torch.zeros(4, 4, 3, 3),
                "m_tail.weight": torch.zeros(1, 4, 3, 3)}, drunet)
    assert detecting(drunet) == ["kair_drunet"]


def test_incomplete_or_foreign_files_are_refused_in_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch, channels=3, config=(1, 1, 1, 1, 1, 1, 1)).state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "m_up2.1.conv1_2.bias"}, missing)
    with pytest.raises(M3LError, match=r"^scunet: the file lacks key m_up2\.1\.conv1_2\.bias") as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({**state, "m_body.0.trans_block.mlp.0.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(M3LError, match=r"m_body\.0\.trans_block\.mlp\.0\.weight has shape \(3, 3\)"):
        _layouts.convert(wrong)


def test_weights_entries_are_the_authors_release():
    from m3l import hub

    names = {w.name for w in FAMILY.weights}
    assert names == {f"scunet_{kind}_{s}" for kind in ("color", "gray") for s in (15, 25, 50)} | {
        "scunet_color_real_psnr", "scunet_color_real_gan"}
    assert FAMILY.weights[0].name == "scunet_color_real_psnr"  # pretrained=True: the real-noise net, for photos
    for entry in FAMILY.weights:
        assert hub.WEIGHTS[entry.name] == entry and entry.layout == "scunet" and entry.sha256 is None
        assert entry.url == f"https://github.com/cszn/KAIR/releases/download/v1.0/{entry.name}.pth"
        assert entry.net == {"channels": 1 if "gray" in entry.name else 3, **ARCH}
        assert entry.target == "m3l.models.scunet.SCUNet"
        if "real" in entry.name:  # no PSNR table: for correct
            assert not entry.metrics and not entry.protocol and "correct" in entry.source
    color25, gray50 = hub.WEIGHTS["scunet_color_25"], hub.WEIGHTS["scunet_gray_50"]
    assert color25.metrics == {"cbsd68/sigma25/psnr": 31.79, "kodak24/sigma25/psnr": 32.92,
                               "mcmaster/sigma25/psnr": 33.34, "urban100/sigma25/psnr": 33.03}
    assert gray50.metrics == {"set12/sigma50/psnr": 28.04, "bsd68/sigma50/psnr": 26.67, "urban100/sigma50/psnr": 28.56}
    assert "degradation@data.degradation=sigma25" in color25.protocol and "data.channels=3" in color25.protocol
    assert "data.channels=1" in gray50.protocol and "data.test_degradations=null" in gray50.protocol


def test_paper_preset_and_cpu_default():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=scunet", "preset=paper", "data_root=/sets", "trainer.gpus=4"])
        default = compose("train", overrides=["model=scunet"])
        gray = compose("test", overrides=["model=scunet", *(o.replace("{data_root}", "/sets")
                                                               for o in WEIGHTS[-1].protocol)])
    assert list(cfg.net.blocks) == REAL and cfg.net.width == 64 and cfg.net.head_dim == 32
    assert cfg.data.patch_size == 128 and cfg.data.train_batch_size == 6 and cfg.data.train_dir == "/sets/trainH"
    assert set(cfg.data.test_sets) == {"cbsd68", "kodak24", "mcmaster", "urban100"} and cfg.data.channels == 3
    assert cfg.optimizer.lr == 1e-4 and cfg.loss._target_ == "torch.nn.L1Loss" and cfg.scheduler.gamma == 0.5
    assert list(cfg.scheduler.milestones) == [200_000, 400_000, 600_000, 800_000, 1_000_000]
    assert cfg.scheduler_interval == "step" and cfg.trainer.max_steps == 1_200_000
    assert default.net.width == 16 and default.data.train_dir is None and default.data.channels == 3
    assert gray.data.channels == 1 and set(gray.data.test_sets) == {"set12", "bsd68", "urban100"}
    assert gray.data.degradation.sigma == 50 and gray.data.test_degradations is None


def test_tiny_family_net_trains_a_step():
    torch.manual_seed(0)
    net = FAMILY.build(3, drop_path=0.1).train()
    x = torch.rand(2, 3, 40, 72)
    loss = (net(x) - x).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.slow
def test_scunet_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.width=8", "net.head_dim=4", "net.blocks=[1,1,1,1,1,1,1]"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=4", "data.train_batch_size=2", "data.deadleaves.count=2",
             "data.deadleaves.size=64"]
    run_m3l("train", "model=scunet", *net, *train, *QUICK, "checkpoint_out=scunet.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)}, mode="RGB")
    run_m3l("test", "model=scunet", *QUICK, "checkpoint=scunet.ckpt", "data.test_sets={S: set}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["sigma25"] and rows.psnr.notna().all()
    run_m3l("correct", "model=scunet", *QUICK, "checkpoint=scunet.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33, 3)


@pytest.mark.slow
def test_scunet_corrects_with_an_authors_file_as_their_forward(spandrel_arch, run_m3l, tmp_path):
    """net.pretrained=FILE of the authors' layout (the architecture comes from the file); the corrected image is the
    authors' output, rounded to 8 bits as their script saves it."""
    authors = authors_net(spandrel_arch, channels=3, config=(1, 1, 1, 1, 1, 1, 1))
    path = save_as_the_authors(authors, tmp_path / "scunet_color_real_tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 70)}, mode="RGB")
    run_m3l("correct", "model=scunet", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors_forward(authors, x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most


@pytest.mark.slow
def test_scunet_exports_with_dynamic_height_and_width(tmp_path):
    """The file pads to a multiple of 64 inside, so sizes from 65 on work (the exporter needs the example above one
    multiple); a smaller image is refused by the file, and the default check size is refused in one line."""
    from m3l.io.export import export_net, load_exported

    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    with pytest.raises(M3LError, match=r"^check_size: \[45, 77\] is smaller than SCUNet takes \(65\): pass "
                                       r"example_size=\[128,128\] check_size=\[109,141\]$"):
        export_net(net, tmp_path / "default.pt2", channels=3)
    with pytest.raises(M3LError, match=r"^example_size: \[64, 64\] is smaller than SCUNet takes \(65\)"):
        export_net(net, tmp_path / "default.pt2", channels=3, check_size=(109, 141))
    assert not list(tmp_path.iterdir())
    path = tmp_path / "scunet.pt2"
    assert export_net(net, path, channels=3, example_size=(128, 128), check_size=(109, 141)) <= 1e-4
    module, info = load_exported(path)
    assert info["min_size"] == 65
    for batch, size in [(1, (65, 70)), (2, (130, 100)), (1, (200, 65))]:
        x = torch.rand(batch, 3, *size)
        with torch.no_grad():
            assert (module(x) - net(x)).abs().max().item() < TOLERANCE
    with pytest.raises(Exception, match=">= 65"):
        module(torch.rand(1, 3, 64, 80))
