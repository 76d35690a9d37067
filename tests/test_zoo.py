"""The model zoo: parameter counts against the papers (full size, no forward) and forward passes on odd
image sizes (small widths), with side information where the net takes it."""

import pytest
import torch

from m3l.models.arcnn import ARCNN
from m3l.models.dncnn import DnCNN
from m3l.models.drunet import DRUNet
from m3l.models.fbcnn import FBCNN
from m3l.models.ffdnet import FFDNet
from m3l.models.identity import Identity
from m3l.models.nafnet import NAFNet, local_mean
from m3l.models.restormer import Restormer
from m3l.engine.restoration import RestorationModule, required_arguments
from m3l.models._registry import families


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# (net at the paper's size, exact count, the paper's number in millions as printed there)
PAPER_SIZES = {
    "dncnn-b": (lambda: DnCNN(1, depth=20), 667_073, "0.67"),            # DnCNN-B / -3: depth 20 (derived, not printed)
    "ffdnet-gray": (lambda: FFDNet(1, 15, 64), 486_148, "0.49"),         # DPIR's table: FFDNet 0.49M
    "ffdnet-color": (lambda: FFDNet(3, 12, 96), 853_068, "0.85"),        # FFDNet: 12 layers of 96 channels
    "drunet": (lambda: DRUNet(3), 32_640_960, "32.64"),                  # DPIR: DRUNet 32.64M
    "arcnn": (lambda: ARCNN(1), 106_561, "0.11"),                       # ARCNN gives the layers (9-7-1-5, 64-32-16)
    "fbcnn": (lambda: FBCNN(3), 71_921_796, "71.92"),                    # FBCNN: 71.92M
    "nafnet-gopro": (lambda: NAFNet(3, 32, (1, 1, 1, 28), 1, (1, 1, 1, 1)), 17_111_907, "17.11"),  # NAFNet-32
    "nafnet-w64": (lambda: NAFNet(3, 64, (1, 1, 1, 28), 1, (1, 1, 1, 1)), 67_888_835, "67.89"),    # NAFNet-64
    "restormer": (lambda: Restormer(3), 26_126_644, "26.13"),           # Restormer: 26.13M
}


@pytest.mark.parametrize("name", list(PAPER_SIZES))
def test_parameter_count_matches_the_paper(name):
    build, exact, paper = PAPER_SIZES[name]
    count = n_params(build())
    assert count == exact
    assert f"{count / 1e6:.{len(paper.split('.')[1])}f}" == paper


# Every family of the registry with its tiny settings (a new family is tested without editing this test), and
# variants that are not families of their own: (net with a small width, side information).
SMALL = {name: (lambda c, family=family: family.build(c), None) for name, family in families().items()}
SMALL |= {
    "fbcnn-quality": (lambda c: FBCNN(c, (8, 16, 32, 64), 1, 16, blind=False), {"quality": torch.tensor([0.1, 0.9])}),
    "nafnet-tlc": (lambda c: NAFNet(c, 8, (1, 1), 1, (1, 1), tlc_size=12), {}),
}
SIDE = {"sigma": torch.tensor([0.1, 0.2]), "quality": torch.tensor([0.1, 0.9])}


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("channels,size", [(1, (17, 23)), (3, (33, 9))])
def test_forward_keeps_odd_sizes(name, channels, size):
    build, side = SMALL[name]
    net = build(channels).eval()
    side = {k: SIDE[k] for k in required_arguments(net)} if side is None else side  # what forward needs
    frames = getattr(net, "frames", None)  # a video net: a window of frames in, its centre frame out
    x = torch.rand(2, channels, *size) if frames is None else torch.rand(2, frames, channels, *size)
    with torch.no_grad():
        y = net(x, **side)
    assert y.shape == (2, channels, *size) and torch.isfinite(y).all()


def test_every_family_is_registered_with_working_tiny_settings():
    """The registry lists every family file of m3l/models/ (each registers itself) and each tiny net is small."""
    from pathlib import Path

    import m3l.models

    files = {p.stem for p in Path(m3l.models.__file__).parent.glob("*.py")} - {"__init__", "common"}
    assert {f.net.__module__.rsplit(".", 1)[-1] for f in families().values()} == {f for f in files if f[0] != "_"}
    # Shift-Net's fusion stage has a fixed set of shift blocks (the authors' levels) of 16 channels at least
    larger = {"shiftnet": 400_000}
    for family in families().values():
        assert n_params(family.build(1)) < larger.get(family.name, 100_000), family.name


def test_noise_level_map_changes_the_output():
    net = FFDNet(1, depth=3, width=8).eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(net(x, sigma=0.05), net(x, sigma=0.3))


def test_fbcnn_blind_ignores_the_given_quality_but_trains_its_predictor():
    torch.manual_seed(0)
    net = FBCNN(1, (8, 16), 1, 8).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), net(x, quality=torch.tensor([0.1, 0.9])))
        assert net.predicted_quality.shape == (2,) and net.extra_loss is None
        net.blind = False
        assert not torch.equal(net(x), net(x, quality=torch.tensor([0.1, 0.9])))
    net.train()
    net(x, quality=torch.tensor([0.1, 0.9]))
    assert net.extra_loss is not None and net.extra_loss.requires_grad


def test_restoration_module_adds_the_net_extra_loss():
    torch.manual_seed(0)
    module = RestorationModule(FBCNN(1, (8, 16), 1, 8))
    batch = {"input": torch.rand(2, 1, 16, 16), "target": torch.rand(2, 1, 16, 16),
             "side": {"quality": torch.tensor([0.1, 0.5])}}
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    assert loss > torch.nn.functional.mse_loss(module.restore(batch), batch["target"]) - 1e-6
    assert module.net.extra_loss > 0


def test_missing_side_information_is_one_clear_error():
    from m3l.errors import M3LError

    module = RestorationModule(FFDNet(1, depth=3, width=4))
    with pytest.raises(M3LError, match="sigma.*data.correct_side.sigma"):
        module.restore({"input": torch.rand(1, 1, 8, 8), "side": {}})


def test_tlc_local_mean_is_global_on_small_images_and_local_on_large_ones():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    assert torch.equal(local_mean(x, 8), x.mean((-2, -1), keepdim=True).expand_as(x))
    assert torch.equal(local_mean(x[..., :5], 6)[0, 0, 4], x[0, 0, 2:8, :5].mean().expand(5))  # a short side: all
    local = local_mean(x, 3)
    assert local.shape == x.shape
    assert local[0, 0, 4, 4] == x[0, 0, 3:6, 3:6].mean()
    assert local[0, 0, 0, 0] == local[0, 0, 1, 1]  # clamped at the border


def test_tlc_changes_only_evaluation():
    torch.manual_seed(0)
    net = NAFNet(1, 8, (1,), 1, (1,), tlc_size=4)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        net.train()
        trained = net(x)
        net.eval()
        assert not torch.allclose(net(x), trained)
        net.tlc_size = None
        assert torch.allclose(net(x), trained)
