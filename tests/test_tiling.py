import pytest
import torch

from conftest import perturbed
from m3l.models.dncnn import DnCNN
from m3l.engine.tiling import tiled


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return perturbed(DnCNN(depth=6, width=8)).eval()  # receptive-field radius 6


@torch.no_grad()
def test_tiles_with_enough_context_equal_the_whole_image(net):
    x = torch.rand(1, 1, 70, 53)
    torch.testing.assert_close(tiled(net, x, tile=16, overlap=6), net(x), atol=1e-5, rtol=0)


@torch.no_grad()
def test_short_context_differs_only_near_tile_borders(net):
    x = torch.rand(1, 1, 64, 64)
    error = (tiled(net, x, tile=32, overlap=2) - net(x)).abs()[0, 0]
    assert error.max() > 1e-4  # too little context: not exact
    away = torch.ones_like(error, dtype=torch.bool)
    for border in (32,):
        away[border - 8:border + 8, :] = False
        away[:, border - 8:border + 8] = False
    assert error[away].max() < 1e-5


@torch.no_grad()
def test_small_images_run_whole(net):
    calls = []
    x = torch.rand(2, 1, 10, 12)
    tiled(lambda t: calls.append(t.shape) or net(t), x, tile=16)
    assert calls == [x.shape]
