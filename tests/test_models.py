import pytest
import torch

from m3l.models.dncnn import DnCNN


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_dncnn_parameter_count_matches_the_paper():
    # DnCNN-S gray, depth 17, width 64: 0.56M parameters in the paper (conv biases off under batch norm).
    assert n_params(DnCNN(channels=1)) == 556_097
    assert n_params(DnCNN(channels=3)) == 556_097 + 2 * 64 * 9 + 2 * 64 * 9 + 2  # 3-channel first and last conv


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(17, 23), (32, 32), (41, 8)])
def test_dncnn_keeps_the_image_size(channels, size):
    net = DnCNN(channels=channels, depth=5, width=16).eval()
    x = torch.rand(2, channels, *size)
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_a_fresh_dncnn_is_the_identity_denoiser_with_he_initialised_convolutions():
    torch.manual_seed(0)
    net = DnCNN(depth=5, width=64).eval()
    x = torch.rand(1, 1, 9, 9)
    assert torch.equal(net(x), x)  # the last convolution starts at zero
    hidden = net.body[2].weight  # a 64 -> 64 convolution: He-normal, std sqrt(2 / (9 * 64))
    assert abs(float(hidden.detach().std()) - (2 / (9 * 64)) ** 0.5) < 0.003 and hidden.abs().max() > 0.1


def test_dncnn_is_residual():
    net = DnCNN(depth=3, width=4).eval()
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 1, 9, 9)
    assert torch.equal(net(x), x)
