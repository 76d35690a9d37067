"""The authors' weights: m3l's nets are the authors' networks.

Each family: the authors' network, built by spandrel's class (the authors' code, kept by spandrel; random
weights, eval mode), saved as the authors save it (a bare state dict, ``torch.save``), read back by m3l
through its loading path (:func:`m3l.models._layouts.convert`, then ``load_state_dict`` into the net it implies),
and both run on the same input of an odd size: the outputs agree to 1e-5. Tiny configurations for speed,
and one test per family at the paper's configuration. Also: each file is recognised as its layout and no
other, and a file that does not fit says which key and shape in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import m3l.models._layouts
import m3l.models.nafnet
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

    layout, state, net_args = m3l.models._layouts.convert(path)
    assert layout.name == expected_layout
    net = get_class(layout.target)(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def layouts_detecting(path) -> list[str]:
    raw = m3l.models._layouts.read(path)
    return [layout.name for layout in m3l.models._layouts.all_layouts().values() if layout.detect(raw)]


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
        m3l.models._layouts.convert(tmp_path / "reshaped.pth")
    state["m_up2.1.res.1.weight"] = state.pop("m_up2.1.res.0.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(M3LError, match=r"kair_drunet: the file lacks key m_up2\.1\.res\.0\.weight of DRUNet"):
        m3l.models._layouts.convert(tmp_path / "renamed.pth")
    state["m_up2.1.res.0.weight"] = state["m_up2.1.res.1.weight"]
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(M3LError, match=r"kair_drunet: unexpected key m_up2\.1\.res\.1\.weight \(16, 8, 3, 3\)"):
        m3l.models._layouts.convert(tmp_path / "extra.pth")


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
        m3l.models._layouts.convert(tmp_path / "reshaped.pth")
    state["to_gamma_2.0.weight"] = gamma
    del state["qf_embed.2.bias"]
    torch.save(state, tmp_path / "incomplete.pth")
    with pytest.raises(M3LError, match=r"fbcnn: the file lacks key qf_embed\.2\.bias of FBCNN"):
        m3l.models._layouts.convert(tmp_path / "incomplete.pth")


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


# ---------------------------------------------------------------------------------------------------- NAFNet
# megvii-research/NAFNet's basicsr/models/archs/NAFNet_arch.py; spandrel's NAFNet is the same class. BasicSR
# saves {"params": state_dict} (and "params_ema" when training keeps an average); the authors' test loads
# "params". NAFBlock's beta and gamma start at zero (the blocks would be identities): drawn at random here.
NAFNET_PAPER = {"gopro_width32": (32, [1, 1, 1, 28], 1, [1, 1, 1, 1]), "sidd_width32": (32, [2, 2, 4, 8], 12, [2, 2, 2, 2]),
                "sidd_width64": (64, [2, 2, 4, 8], 12, [2, 2, 2, 2])}


def nafnet_authors(spandrel_arch, width, enc, middle, dec, seed=0):
    torch.manual_seed(seed)
    authors = spandrel_arch("NAFNet").NAFNet(img_channel=3, width=width, enc_blk_nums=list(enc), middle_blk_num=middle,
                                             dec_blk_nums=list(dec)).eval()
    with torch.no_grad():
        for name, parameter in authors.named_parameters():
            if name.endswith(("beta", "gamma")):
                parameter.normal_(std=0.3)
            elif ".sca.1." in name:  # the pooled statistics matter (for TLC)
                parameter.normal_(std=1.0)
    return authors


def nafnet_pair(spandrel_arch, tmp_path, width, enc, middle, dec, **extra):
    authors = nafnet_authors(spandrel_arch, width, enc, middle, dec)
    path = tmp_path / "nafnet.pth"
    torch.save({"params": {k: v.cpu() for k, v in authors.state_dict().items()}, **extra}, path)  # save_network
    net, net_args = load_as_m3l(path, "basicsr_nafnet")
    assert net_args == {"channels": 3, "width": width, "encoder_blocks": list(enc), "middle_blocks": middle,
                        "decoder_blocks": list(dec)}
    return authors, net, path


def max_diff(authors, net, x) -> float:
    with torch.no_grad():
        expected, got = authors(x), net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("enc, middle, dec", [([1, 2], 1, [2, 1]), ([1, 1, 1], 2, [1, 1, 1]), ([2, 0], 0, [0, 1])])
def test_nafnet_equals_the_authors_network(spandrel_arch, tmp_path, enc, middle, dec):
    authors, net, path = nafnet_pair(spandrel_arch, tmp_path, 8, enc, middle, dec)
    for size in [(37, 45), (32, 24), (9, 17)]:
        assert max_diff(authors, net, torch.rand(1, 3, *size)) < TOLERANCE
    assert layouts_detecting(path) == ["basicsr_nafnet"]


@pytest.mark.parametrize("config", ["gopro_width32", "sidd_width32", pytest.param("sidd_width64", marks=pytest.mark.slow)])
def test_nafnet_equals_the_authors_network_at_paper_size(spandrel_arch, tmp_path, config):
    from m3l.hub import WEIGHTS

    authors, net, path = nafnet_pair(spandrel_arch, tmp_path, *NAFNET_PAPER[config])
    assert {k: v for k, v in WEIGHTS[f"nafnet_{config}"].net.items() if k != "tlc_size"} == m3l.models._layouts.convert(path)[2]
    assert max_diff(authors, net, torch.rand(1, 3, 37, 45)) < TOLERANCE


def test_nafnet_reads_params_as_the_authors_test_does(spandrel_arch, tmp_path):
    """A file with both: ``params`` (BasicSR's load_network default), not ``params_ema``; a file with only
    ``params_ema`` loads too."""
    other = nafnet_authors(spandrel_arch, 8, [1, 1], 1, [1, 1], seed=1).state_dict()
    authors, net, _ = nafnet_pair(spandrel_arch, tmp_path, 8, [1, 1], 1, [1, 1], params_ema=other)
    x = torch.rand(1, 3, 20, 20)
    assert max_diff(authors, net, x) < TOLERANCE
    torch.save({"params_ema": authors.state_dict()}, tmp_path / "ema.pth")
    ema, _ = load_as_m3l(tmp_path / "ema.pth", "basicsr_nafnet")
    assert max_diff(authors, ema, x) < TOLERANCE


def test_nafnet_file_that_does_not_fit_names_the_key(spandrel_arch, tmp_path):
    state = nafnet_authors(spandrel_arch, 8, [1, 1], 1, [1, 1]).state_dict()
    del state["decoders.1.0.conv4.bias"]
    torch.save({"params": state}, tmp_path / "incomplete.pth")
    with pytest.raises(M3LError, match=r"basicsr_nafnet: the file lacks key decoders\.1\.0\.conv4\.bias of NAFNet"):
        m3l.models._layouts.convert(tmp_path / "incomplete.pth")


class WindowMean(torch.nn.Module):
    """TLC's local average, written from the paper (Chu et al. 2022, sec. 3): each pixel averages the window of
    ``kernel`` x ``kernel`` features around it, shifted to lie inside the image at the borders; the global mean
    when the image fits in the window. As the authors' ``AvgPool2d`` (Local_arch.py), the kernel is
    ``feature size * base_size // train_size``, fixed by a forward pass at the training size."""

    def __init__(self, base_size: int, train_size: int):
        super().__init__()
        self.base_size, self.train_size, self.kernel = base_size, train_size, None

    def forward(self, x):
        if self.kernel is None:
            self.kernel = x.shape[-1] * self.base_size // self.train_size
        h, w = x.shape[-2:]
        if self.kernel >= h and self.kernel >= w:
            return x.mean((-2, -1), keepdim=True)
        kh, kw = min(self.kernel, h), min(self.kernel, w)
        out = torch.empty_like(x)
        for i in range(h):
            top = min(max(i - (kh - 1) // 2, 0), h - kh)
            for j in range(w):
                left = min(max(j - (kw - 1) // 2, 0), w - kw)
                out[..., i, j] = x[..., top:top + kh, left:left + kw].mean((-2, -1))
        return out


def test_nafnet_tlc_equals_the_authors_local_network(spandrel_arch, tmp_path):
    """``tlc_size`` (the test-time local converter of the authors' ``NAFNetLocal``, train_size 16 here, base size
    1.5 times it) against the paper's local average put in place of the authors' global pooling."""
    authors, _, path = nafnet_pair(spandrel_arch, tmp_path, 8, [1, 1], 1, [1, 1])
    layout, state, net_args = m3l.models._layouts.convert(path)
    net = m3l.models.nafnet.NAFNet(**net_args, tlc_size=24)
    net.load_state_dict(state)
    for module in authors.modules():  # the authors' replace_layers, then a forward at the training size
        if hasattr(module, "sca"):
            module.sca[0] = WindowMean(24, 16)
    with torch.no_grad():
        authors(torch.rand(1, 3, 16, 16))
        assert sorted({m.kernel for m in authors.modules() if isinstance(m, WindowMean)}) == [6, 12, 24]
        x = torch.rand(1, 3, 45, 37)  # padded to 48 x 40: windows 24 / 12 / 6 are local at every level
        net.eval()
        assert max_diff(authors, net, x) < TOLERANCE
        global_pooling = net.train()(x)  # TLC is for evaluation only; it changes the output
        assert (global_pooling - authors(x)).abs().max() > 100 * TOLERANCE


# ------------------------------------------------------------------------------------- Restormer, FastDVDnet
# spandrel lacks both. tests/data/authors_keys/*.json hold the facts read from the authors' code (their nets
# built at the paper configuration in a scratch folder outside m3l, as their training code saves them): every
# key, shape and dtype. The closing note of issue 12 reports the max |diff| measured there against their nets.
AUTHORS_KEYS = Path(__file__).parent / "data" / "authors_keys"


def authors_file(tmp_path, name: str) -> tuple[Path, dict]:
    """A file in the authors' layout ``name`` with distinct random tensors, and those tensors by key."""
    facts = json.loads((AUTHORS_KEYS / f"{name}.json").read_text())
    generator = torch.Generator().manual_seed(0)
    state = {key: (torch.randint(0, 1000, shape, generator=generator) if dtype == "int64"
                   else torch.rand(shape, generator=generator) + 0.5).to(getattr(torch, dtype))
             for key, shape, dtype in facts["keys"]}
    path = tmp_path / f"{name}.pth"
    torch.save({"params": state} if facts["saved_as"].startswith("{'params'") else state, path)
    return path, state


def assert_every_tensor_used_once(authors: dict, converted: dict):
    """m3l's state holds exactly the authors' tensors (every one, none twice), each under one key."""
    assert len(converted) == len(authors)
    fingerprints = lambda state: sorted((tuple(v.shape), round(v.double().sum().item(), 4)) for v in state.values())
    assert fingerprints(converted) == fingerprints(authors)


RESTORMER_FILES = {  # the option file's network_g: what the file must imply
    "restormer_motion_deblurring": {"channels": 3, "layer_norm": "with_bias", "weights": "restormer_motion_deblurring"},
    "restormer_real_denoising": {"channels": 3, "layer_norm": "bias_free", "weights": "restormer_real_denoising"},
    "restormer_gaussian_gray_denoising": {"channels": 1, "layer_norm": "bias_free",
                                          "weights": "restormer_gaussian_gray_blind"},
}


@pytest.mark.parametrize("name", RESTORMER_FILES)
def test_restormer_authors_files_load_with_the_architecture_they_imply(tmp_path, name):
    from m3l.hub import WEIGHTS

    path, authors = authors_file(tmp_path, name)
    expected = RESTORMER_FILES[name]
    net, net_args = load_as_m3l(path, "restormer")  # strict: every key of m3l's net filled
    assert net_args == {**WEIGHTS[expected["weights"]].net, "layer_norm": expected["layer_norm"]}
    assert net_args["channels"] == expected["channels"] and net_args["num_blocks"] == [4, 6, 6, 8]
    assert_every_tensor_used_once(authors, m3l.models._layouts.convert(path)[1])
    assert layouts_detecting(path) == ["restormer"]
    with torch.no_grad():
        assert net(torch.rand(1, expected["channels"], 9, 13)).shape == (1, expected["channels"], 9, 13)


def test_restormer_bias_free_layer_norm_is_the_authors():
    """Their ``BiasFree_LayerNorm``: ``x / sqrt(var(x) + 1e-5) * weight`` over the channels (not centred)."""
    from m3l.models.restormer import BiasFreeLayerNorm2d

    norm = BiasFreeLayerNorm2d(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))
    x = torch.rand(2, 4, 3, 5) + 1.0
    pixels = x.permute(0, 2, 3, 1)  # the authors' to_3d: channels last
    expected = pixels / torch.sqrt(pixels.var(-1, keepdim=True, unbiased=False) + 1e-5) * norm.weight
    assert (norm(x) - expected.permute(0, 3, 1, 2)).abs().max() < TOLERANCE
    assert (norm(x).mean(1) - 0).abs().min() > 0.1  # not centred, as a WithBias norm would be


def test_restormer_dual_pixel_and_biased_files_are_refused_in_one_line(tmp_path):
    path, authors = authors_file(tmp_path, "restormer_motion_deblurring")
    torch.save({"params": {**authors, "skip_conv.weight": torch.zeros(48, 6, 1, 1)}}, tmp_path / "dp.pth")
    with pytest.raises(M3LError, match="dual-pixel"):
        m3l.models._layouts.convert(tmp_path / "dp.pth")
    del authors["encoder_level2.0.ffn.dwconv.weight"]
    torch.save({"params": authors}, tmp_path / "incomplete.pth")
    with pytest.raises(M3LError, match=r"encoder_level2\.0\.ffn\.dwconv\.weight"):
        m3l.models._layouts.convert(tmp_path / "incomplete.pth")


def test_fastdvdnet_authors_file_loads_with_the_architecture_it_implies(tmp_path):
    from m3l.hub import WEIGHTS

    path, authors = authors_file(tmp_path, "fastdvdnet")
    assert all(key.startswith("module.") for key in authors)  # nn.DataParallel's, as released
    net, net_args = load_as_m3l(path, "fastdvdnet")
    assert net_args == WEIGHTS["fastdvdnet_authors"].net
    assert_every_tensor_used_once(authors, m3l.models._layouts.convert(path)[1])
    assert layouts_detecting(path) == ["fastdvdnet"]
    # Batch norms keep the file's running statistics (evaluation uses them, not the batch's).
    assert torch.equal(net.stage1.inc[1].running_var, authors["module.temp1.inc.convblock.1.running_var"])
    assert torch.equal(net.stage2.out[3].weight, authors["module.temp2.outc.convblock.3.weight"])
