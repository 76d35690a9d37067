"""The authors' weights: m3l's nets are the authors' networks.

Each family: the authors' network, built by spandrel's class (the authors' code, kept by spandrel; random
weights, eval mode), saved as the authors save it (a bare state dict, ``torch.save``), read back by m3l
through its loading path (:func:`m3l.layouts.convert`, then ``load_state_dict`` into the net it implies),
and both run on the same input of an odd size: the outputs agree to 1e-5. Tiny configurations for speed,
and one test per family at the paper's configuration. Also: each file is recognised as its layout and no
other, and a file that does not fit says which key and shape in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import m3l.layouts
from conftest import write_images
from m3l.errors import M3LError

TOLERANCE = 1e-5


def save_as_the_authors(net: torch.nn.Module, path):
    """KAIR's and FBCNN's ``save_network``: the bare state dict, on the CPU."""
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)
    return path


def load_as_m3l(path, expected_layout: str):
    """m3l's net for the weights file at ``path``, built with the arguments the file implies."""
    from hydra.utils import get_class

    layout, state, net_args = m3l.layouts.convert(path)
    assert layout.name == expected_layout
    net = get_class(layout.target)(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def layouts_detecting(path) -> list[str]:
    raw = m3l.layouts.read(path)
    return [layout.name for layout in m3l.layouts.load_all().values() if layout.detect(raw)]


def correct_with_the_authors_file(run_m3l, tmp_path, model: str, path, *overrides: str) -> tuple[np.ndarray, torch.Tensor]:
    """``python -m m3l.run.correct model=MODEL net.pretrained=PATH`` on one gray image of an odd size: the
    corrected image, and the input as the authors' scripts read it (``(1, 1, H, W)`` in [0, 1])."""
    image, = write_images(tmp_path / "in", {"x.png": (45, 37)})
    run_m3l("correct", f"model={model}", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            "data.num_workers=0", "trainer.enable_progress_bar=false", *overrides)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255)[None, None]
    return np.asarray(Image.open(tmp_path / "out" / "x.png")), x


def uint8(y: torch.Tensor) -> np.ndarray:
    """The authors' ``util.tensor2uint``: clamp to [0, 1], times 255, rounded."""
    return y.squeeze().clamp(0, 1).mul(255).round().byte().numpy()


def pad8(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """KAIR's ``utils_model.test_pad`` with ``modulo=8``: replicate the bottom and right edges (FBCNN's
    ``forward`` does the same itself)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate"), (h, w)


# ----------------------------------------------------------------------------------------------------- DnCNN
# KAIR's DnCNN (models/network_dncnn.py, act_mode="R": batch norm merged, as in dncnn_25.pth); spandrel's
# DnCNN is the same class.

def dncnn_pair(spandrel_arch, tmp_path, channels, nb, nc):
    torch.manual_seed(0)
    authors = spandrel_arch("DnCNN").DnCNN(in_nc=channels, out_nc=channels, nc=nc, nb=nb, act_mode="R").eval()
    path = save_as_the_authors(authors, tmp_path / "dncnn.pth")
    net, net_args = load_as_m3l(path, "kair_dncnn")
    return authors, net, net_args, path


def dncnn_diff(authors, net, channels, size) -> float:
    x = torch.rand(1, channels, *size)
    with torch.no_grad():
        expected, got = authors(x), net(x)
    assert (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("channels", [1, 3])
def test_dncnn_equals_kair_network(spandrel_arch, tmp_path, channels):
    authors, net, net_args, _ = dncnn_pair(spandrel_arch, tmp_path, channels, 4, 8)
    assert net_args == {"channels": channels, "depth": 4, "width": 8, "batch_norm": False}
    assert dncnn_diff(authors, net, channels, (37, 45)) < TOLERANCE


def test_dncnn_equals_kair_network_at_paper_size(spandrel_arch, tmp_path):
    authors, net, net_args, path = dncnn_pair(spandrel_arch, tmp_path, 1, 17, 64)
    assert net_args == {"channels": 1, "depth": 17, "width": 64, "batch_norm": False}
    assert dncnn_diff(authors, net, 1, (37, 45)) < TOLERANCE
    assert layouts_detecting(path) == ["kair_dncnn"]


# ---------------------------------------------------------------------------------------------------- DRUNet
# KAIR's / DPIR's UNetRes (models/network_unet.py); spandrel's DRUNet is the same class.

def drunet_pair(spandrel_arch, tmp_path, channels, nc, nb, dtype=torch.float32):
    torch.manual_seed(0)
    authors = spandrel_arch("DRUNet").DRUNet(in_nc=channels + 1, out_nc=channels, nc=list(nc), nb=nb).eval()
    path = save_as_the_authors(authors, tmp_path / "drunet.pth")
    net, net_args = load_as_m3l(path, "kair_drunet")
    return authors.to(dtype), net.to(dtype), net_args, path


def drunet_diff(authors, net, channels, size, sigma=25 / 255, dtype=torch.float32) -> float:
    x = torch.rand(1, channels, *size, dtype=dtype)
    with torch.no_grad():
        padded, (h, w) = pad8(torch.cat([x, torch.full_like(x[:, :1], sigma)], 1))
        expected = authors(padded)[..., :h, :w]
        got = net(x, torch.tensor([sigma], dtype=dtype))
    assert got.shape == x.shape and expected.abs().max() > 0.01  # the net is not trivially zero
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("channels", [1, 3])
def test_drunet_equals_the_authors_network(spandrel_arch, tmp_path, channels):
    authors, net, net_args, _ = drunet_pair(spandrel_arch, tmp_path, channels, (8, 16, 32, 64), 1)
    assert net_args == {"channels": channels, "widths": [8, 16, 32, 64], "blocks": 1, "bias": False}
    for size in [(37, 45), (32, 24), (9, 17)]:
        assert drunet_diff(authors, net, channels, size) < TOLERANCE


def test_drunet_noise_level_matters(spandrel_arch, tmp_path):
    """The comparison above can fail: the noise level map changes the output beyond the tolerance."""
    authors, net, _, _ = drunet_pair(spandrel_arch, tmp_path, 1, (8, 16, 32, 64), 1)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert (net(x, torch.tensor([0.05])) - net(x, torch.tensor([0.5]))).abs().max() > 100 * TOLERANCE


def test_drunet_equals_the_authors_network_at_paper_size(spandrel_arch, tmp_path):
    authors, net, net_args, _ = drunet_pair(spandrel_arch, tmp_path, 1, (64, 128, 256, 512), 4)
    assert net_args == {"channels": 1, "widths": [64, 128, 256, 512], "blocks": 4, "bias": False}
    assert sum(p.numel() for p in net.parameters()) == 32_638_656
    assert drunet_diff(authors, net, 1, (37, 45)) < TOLERANCE


def test_drunet_file_is_recognised_as_kair_drunet_only(spandrel_arch, tmp_path):
    _, _, _, path = drunet_pair(spandrel_arch, tmp_path, 3, (8, 16, 32, 64), 1)
    assert layouts_detecting(path) == ["kair_drunet"]


def test_drunet_file_that_does_not_fit_names_the_key_and_shape(spandrel_arch, tmp_path):
    authors = spandrel_arch("DRUNet").DRUNet(in_nc=2, out_nc=1, nc=[8, 16, 32, 64], nb=1)
    state = authors.state_dict()
    state["m_up2.1.res.0.weight"] = state["m_up2.1.res.0.weight"][:, :8]  # (16, 8, 3, 3)
    torch.save(state, tmp_path / "reshaped.pth")
    with pytest.raises(M3LError, match=r"kair_drunet: m_up2\.1\.res\.0\.weight has shape \(16, 8, 3, 3\) "
                                       r"where DRUNet .* needs \(16, 16, 3, 3\)"):
        m3l.layouts.convert(tmp_path / "reshaped.pth")
    state["m_up2.1.res.1.weight"] = state.pop("m_up2.1.res.0.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(M3LError, match=r"kair_drunet: the file lacks key m_up2\.1\.res\.0\.weight of DRUNet"):
        m3l.layouts.convert(tmp_path / "renamed.pth")
    state["m_up2.1.res.0.weight"] = state["m_up2.1.res.1.weight"]
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(M3LError, match=r"kair_drunet: unexpected key m_up2\.1\.res\.1\.weight \(16, 8, 3, 3\)"):
        m3l.layouts.convert(tmp_path / "extra.pth")


@pytest.mark.slow
def test_drunet_corrects_with_the_released_file_as_the_authors_network(spandrel_arch, tmp_path, run_m3l):
    """The user's command on a KAIR file: the net's arguments come from the file (model=drunet's config
    differs), the noise level from data.correct_side.sigma (0-255)."""
    authors, _, _, path = drunet_pair(spandrel_arch, tmp_path, 1, (8, 16, 32, 64), 2)
    corrected, x = correct_with_the_authors_file(run_m3l, tmp_path, "drunet", path, "data.correct_side.sigma=25")
    with torch.no_grad():
        padded, (h, w) = pad8(torch.cat([x, torch.full_like(x, 25 / 255)], 1))
        expected = uint8(authors(padded)[..., :h, :w])
    assert corrected.shape == expected.shape == (37, 45)
    assert np.abs(corrected.astype(int) - expected).max() <= 1 and (corrected == expected).mean() > 0.99


# ----------------------------------------------------------------------------------------------------- FBCNN
# jiaxi-jiang/FBCNN's models/network_fbcnn.py; spandrel's FBCNN is the same class. Its quality-factor
# predictor and embedding are 512 wide whatever ``nc``, so the tiny nets keep 512 channels at the bottom.

def fbcnn_pair(spandrel_arch, tmp_path, channels, nc, nb):
    torch.manual_seed(0)
    authors = spandrel_arch("FBCNN").FBCNN(in_nc=channels, out_nc=channels, nc=list(nc), nb=nb).eval()
    path = save_as_the_authors(authors, tmp_path / "fbcnn.pth")
    net, net_args = load_as_m3l(path, "fbcnn")
    return authors, net, net_args, path


def fbcnn_diffs(authors, net, channels, size, quality: float) -> tuple[float, float, float]:
    """Max |diff| of the outputs blind, of the predicted quality factors, and of the outputs at ``quality``
    given (the authors' ``qf_input`` is 1 - quality)."""
    x = torch.rand(1, channels, *size)
    with torch.no_grad():
        expected, qf = authors(x)
        net.blind = True
        blind = (net(x, quality=torch.tensor([quality])) - expected).abs().max().item()  # blind: ignored
        predicted = (net.predicted_quality - (1 - qf.reshape(-1))).abs().max().item()
        expected_given, _ = authors(x, torch.tensor([[1 - quality]]))
        net.blind = False
        given = (net(x, quality=torch.tensor([quality])) - expected_given).abs().max().item()
    assert (expected_given - expected).abs().max() > 100 * TOLERANCE  # the quality factor matters
    return blind, predicted, given


@pytest.mark.parametrize("channels", [1, 3])
def test_fbcnn_equals_the_authors_network_blind_and_with_a_given_quality(spandrel_arch, tmp_path, channels):
    authors, net, net_args, _ = fbcnn_pair(spandrel_arch, tmp_path, channels, (8, 16, 32, 512), 1)
    assert net_args == {"channels": channels, "widths": [8, 16, 32, 512], "blocks": 1, "embedding": 512}
    for size, quality in [((37, 45), 0.1), ((24, 16), 0.7)]:
        assert max(fbcnn_diffs(authors, net, channels, size, quality)) < TOLERANCE


def test_fbcnn_equals_the_authors_network_at_paper_size(spandrel_arch, tmp_path):
    authors, net, net_args, _ = fbcnn_pair(spandrel_arch, tmp_path, 3, (64, 128, 256, 512), 4)
    assert net_args == {"channels": 3, "widths": [64, 128, 256, 512], "blocks": 4, "embedding": 512}
    assert sum(p.numel() for p in net.parameters()) == 71_921_796
    assert max(fbcnn_diffs(authors, net, 3, (37, 45), 0.3)) < TOLERANCE


def test_fbcnn_file_is_recognised_as_fbcnn_only(spandrel_arch, tmp_path):
    _, _, _, path = fbcnn_pair(spandrel_arch, tmp_path, 1, (8, 16, 32, 512), 1)
    assert layouts_detecting(path) == ["fbcnn"]


def test_fbcnn_file_that_does_not_fit_names_the_key_and_shape(spandrel_arch, tmp_path):
    state = spandrel_arch("FBCNN").FBCNN(in_nc=1, out_nc=1, nc=[8, 16, 32, 512], nb=1).state_dict()
    gamma = state["to_gamma_2.0.weight"]
    state["to_gamma_2.0.weight"] = gamma[:8]
    torch.save(state, tmp_path / "reshaped.pth")
    with pytest.raises(M3LError, match=r"fbcnn: to_gamma_2\.0\.weight has shape \(8, 512\) where FBCNN .* "
                                       r"needs \(16, 512\)"):
        m3l.layouts.convert(tmp_path / "reshaped.pth")
    state["to_gamma_2.0.weight"] = gamma
    del state["qf_embed.2.bias"]
    torch.save(state, tmp_path / "incomplete.pth")
    with pytest.raises(M3LError, match=r"fbcnn: the file lacks key qf_embed\.2\.bias of FBCNN"):
        m3l.layouts.convert(tmp_path / "incomplete.pth")


@pytest.mark.slow
def test_fbcnn_corrects_with_the_released_file_at_a_given_quality_as_the_authors_network(spandrel_arch, tmp_path,
                                                                                        run_m3l):
    """The user's command with the quality set by hand (0-100): the authors' ``qf_input`` is 1 - quality / 100."""
    torch.manual_seed(0)
    authors = spandrel_arch("FBCNN").FBCNN(in_nc=1, out_nc=1, nc=[8, 16, 32, 512], nb=1).eval()
    for name, parameter in authors.named_parameters():  # make the quality matter more than default init does
        if name.startswith(("qf_embed", "to_beta")):
            torch.nn.init.normal_(parameter, std=0.3)
    path = save_as_the_authors(authors, tmp_path / "fbcnn.pth")
    corrected, x = correct_with_the_authors_file(run_m3l, tmp_path, "fbcnn", path, "net.blind=false",
                                                 "data.correct_side.quality=30")
    with torch.no_grad():
        expected = uint8(authors(x, torch.tensor([[0.7]]))[0])
        inverted = uint8(authors(x, torch.tensor([[0.3]]))[0])  # quality / 100 taken for the authors' qf
    assert np.abs(corrected.astype(int) - expected).max() <= 1 and (corrected == expected).mean() > 0.99
    assert (np.abs(corrected.astype(int) - inverted) > 1).mean() > 0.1  # which would be seen
