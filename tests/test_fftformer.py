"""FFTformer (GoPro deblurring): m3l's net is the authors' network as their test script runs it.

The authors' network is spandrel's ``FFTformer`` class (the authors' ``basicsr/models/archs/fftformer_arch.py``,
kept by spandrel; test-only), with random weights, saved as the authors' file is (a bare state dict); m3l reads the
file through its loading path (:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both
run on the same input in eval mode. The authors' ``test.py`` pads the image at the bottom and right by reflection to
a multiple of 32 and crops the output back; m3l's net does that inside, so the authors' net is run here on the image
padded as their script pads it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import write_images
from PIL import Image

from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.fftformer import ARCH, FAMILY, FFTformer

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def authors_net(spandrel_arch, dim=8, num_blocks=(1, 2, 1), num_refinement_blocks=1, ffn_expansion_factor=3,
                channels=3, seed=0, scale=0.05):
    """The authors' FFTformer, weights perturbed away from their initialisation (whose unit FFT filters and norms
    would hide a misplaced one); ``scale`` the perturbation's (the FFT filters' six times it)."""
    torch.manual_seed(seed)
    net = spandrel_arch("FFTformer").FFTformer(
        inp_channels=channels, out_channels=channels, dim=dim, num_blocks=list(num_blocks),
        num_refinement_blocks=num_refinement_blocks, ffn_expansion_factor=ffn_expansion_factor).eval()
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            parameter.add_(torch.randn_like(parameter) * (6 * scale if name.endswith(".fft") else scale))
    return net


def authors_forward(authors, x: torch.Tensor) -> torch.Tensor:
    """The authors' test.py: reflection to a multiple of 32 at the bottom and right, the net, cropped back."""
    h, w = x.shape[-2:]
    return authors(F.pad(x, (0, -w % 32, 0, -h % 32), mode="reflect"))[..., :h, :w]


def save_as_the_authors(net: torch.nn.Module, path):
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, path)  # fftformer_GoPro.pth: the state dict
    return path


def m3l_net(path) -> tuple[FFTformer, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "fftformer"
    net = FFTformer(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def max_diff(authors, net, x) -> float:
    with torch.no_grad():
        expected = authors_forward(authors, x)
        got = net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


TINY = {  # the authors' arguments
    "expansion-3": {},
    "expansion-2.66-gray": {"ffn_expansion_factor": 2.66, "channels": 1, "num_blocks": (2, 1, 1),
                            "num_refinement_blocks": 2},
}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size", [(64, 96), (40, 50)])  # a multiple of 32 (no padding), and one padded
def test_fftformer_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    authors = authors_net(spandrel_arch, **TINY[name])
    net, _ = m3l_net(save_as_the_authors(authors, tmp_path / "fftformer.pth"))
    difference = max_diff(authors, net, torch.rand(2, TINY[name].get("channels", 3), *size))
    print(f"FFTformer {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


@pytest.mark.slow
def test_fftformer_equals_the_authors_network_at_the_released_size(spandrel_arch, tmp_path):
    """The GoPro net's shape (16.56M parameters): the file's architecture and the output."""
    # perturbed less: through 62 blocks, float32 rounding grows with the perturbation (1.2e-5 at 0.01, 6.7e-6 here)
    authors = authors_net(spandrel_arch, dim=48, num_blocks=(6, 6, 12), num_refinement_blocks=4, scale=0.003)
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "fftformer_GoPro.pth"))
    assert args == ARCH
    assert sum(p.numel() for p in net.parameters()) == 16_560_474  # the paper's 16.6M
    difference = max_diff(authors, net, torch.rand(1, 3, 40, 70))
    print(f"FFTformer GoPro size, 40x70: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_padding_reflects_to_a_multiple_of_32_and_small_images_work():
    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    assert net.multiple == 32
    x = torch.rand(1, 3, 21, 40)
    with torch.no_grad():
        reflected = net(F.pad(x, (0, 24, 0, 11), mode="reflect"))[..., :21, :40]
        replicated = net(F.pad(x, (0, 24, 0, 11), mode="replicate"))[..., :21, :40]
        assert torch.allclose(net(x), reflected, atol=1e-6)
        assert not torch.allclose(net(x), replicated, atol=1e-4)
        assert net(torch.rand(1, 3, 5, 9)).shape == (1, 3, 5, 9)  # padding longer than the image (F.pad refuses)


def test_the_layout_gives_the_architecture_and_is_found_first(spandrel_arch, tmp_path):
    authors = authors_net(spandrel_arch, **TINY["expansion-2.66-gray"])
    path = save_as_the_authors(authors, tmp_path / "fftformer.pth")
    layout, _, args = _layouts.convert(path)
    assert layout.name == "fftformer"
    assert args == {"channels": 1, "width": 8, "blocks": [2, 1, 1], "refinement_blocks": 2, "expansion": 2.66,
                    "bias": False}  # int(8, 16, 32 x 2.66): 21, 42, 85 hidden channels
    # Restormer's layout (patch_embed / output keys) claims the file too; FFTformer's is found first, and with no
    # model's class preferred the file is FFTformer's
    raw = _layouts.read(path)
    assert next(name for name, candidate in _layouts.all_layouts().items() if candidate.detect(raw)) == "fftformer"
    assert _layouts.find_layout(raw, path).name == "fftformer"
    restormer = tmp_path / "restormer.pth"  # a Restormer file is not FFTformer's (no FFT filters)
    torch.save({k: v for k, v in authors.state_dict().items() if not k.endswith(".fft")}, restormer)
    assert not _layouts.all_layouts()["fftformer"].detect(_layouts.read(restormer))


def test_incomplete_or_foreign_files_are_refused_in_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch).state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "reduce_chan_level2.weight"}, missing)
    with pytest.raises(M3LError, match=r"^fftformer: the file lacks key reduce_chan_level2\.weight") as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({**state, "decoder_level2.0.ffn.fft": torch.zeros(3, 1, 1, 8, 5)}, wrong)
    with pytest.raises(M3LError, match=r"^fftformer: decoder_level2\.0\.ffn\.fft has shape \(3, 1, 8, 5\)") as e:
        _layouts.convert(wrong)
    assert "\n" not in str(e.value)


def test_weights_entry_is_the_authors_gopro_net():
    from m3l import hub

    entry, = FAMILY.weights
    assert hub.WEIGHTS["fftformer_gopro"] == entry and entry.layout == "fftformer" and entry.sha256 is None
    assert entry.url == "https://github.com/kkkls/FFTformer/raw/main/pretrain_model/fftformer_GoPro.pth"
    assert entry.net == ARCH and entry.target == "m3l.models.fftformer.FFTformer"
    assert entry.metrics == {"gopro/gopro_blur/psnr": 34.21, "gopro/gopro_blur/ssim": 0.969}


def test_paper_preset_and_cpu_default():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=fftformer", "data=paired", "preset=paper", "data_root=/s",
                                          "trainer.gpus=8"])
        default = compose("train", overrides=["model=fftformer"])
    assert cfg.net.width == 48 and list(cfg.net.blocks) == [6, 6, 12] and cfg.net.refinement_blocks == 4
    assert cfg.net.expansion == 3.0 and not cfg.net.bias
    assert cfg.data.train_dir == "/s/gopro/train" and set(cfg.data.test_sets) == {"gopro"}
    assert cfg.data.patch_size == 128 and cfg.data.train_batch_size == 8
    assert cfg.optimizer.lr == 1e-3 and cfg.optimizer.weight_decay == 1e-3 and list(cfg.optimizer.betas) == [0.9, 0.9]
    assert cfg.scheduler.T_max == 300000 and cfg.scheduler.eta_min == 1e-7 and cfg.scheduler_interval == "step"
    assert cfg.trainer.gradient_clip_val == 0.01 and cfg.loss._target_ == "torch.nn.L1Loss"
    assert default.net.width == 8 and default.data.channels == 3 and default.data.train_dir is None


def test_tiny_family_net_trains_a_step():
    torch.manual_seed(0)
    net = FAMILY.build(3).train()
    x = torch.rand(2, 3, 24, 40)
    (net(x) - x).abs().mean().backward()
    assert all(p.grad is not None for name, p in net.named_parameters() if not name.startswith("reduce_chan"))


@pytest.mark.slow
def test_fftformer_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.width=4", "net.blocks=[1,1,1]", "net.refinement_blocks=1", "net.expansion=1.0"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=4", "data.train_batch_size=2", "data.deadleaves.count=2",
             "data.deadleaves.size=64"]
    run_m3l("train", "model=fftformer", *net, *train, *QUICK, "checkpoint_out=fftformer.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)}, mode="RGB")
    run_m3l("test", "model=fftformer", *QUICK, "checkpoint=fftformer.ckpt", "data.test_sets={S: set}",
            "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert len(rows) == 1 and rows.psnr.notna().all()
    run_m3l("correct", "model=fftformer", *QUICK, "checkpoint=fftformer.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33, 3)


@pytest.mark.slow
def test_fftformer_corrects_with_an_authors_file_as_their_script(spandrel_arch, run_m3l, tmp_path):
    """net.pretrained=FILE of the authors' layout; the corrected image is the authors' output, rounded to 8 bits."""
    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "fftformer_tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 40)}, mode="RGB")
    run_m3l("correct", "model=fftformer", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors_forward(authors, x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most


@pytest.mark.slow
def test_fftformer_exports_with_its_ffts(tmp_path):
    """torch.export and ONNX keep the real FFTs (torch 2.13): sizes from 33 on, smaller ones refused by the file."""
    from m3l.io.export import export_net, load_exported

    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    path = tmp_path / "fftformer.pt2"
    assert export_net(net, path, channels=3) <= 1e-4
    module, info = load_exported(path)
    assert info["min_size"] == 33
    x = torch.rand(2, 3, 70, 33)
    with torch.no_grad():
        assert (module(x) - net(x)).abs().max().item() < TOLERANCE
