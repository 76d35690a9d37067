"""KBNet (KBNet_s, SIDD real denoising): m3l's net is the authors' network as their forward runs it.

The authors' network is spandrel's ``KBNet_s`` class (the authors' ``basicsr/models/archs/kbnet_s_arch.py``, kept
by spandrel; test-only), with random weights, saved as the authors save it (the SIDD file: ``{"model": state}``; the
Gaussian ones: ``{"net": nn.DataParallel's state}``); m3l reads the file through its loading path
(:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both run on the same input in eval
mode. Their forward zero-pads to a multiple of 16 and crops back, as spandrel's copy does: the nets are compared on
sizes that are multiples and sizes that are not.
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
from m3l.models.kbnet import FAMILY, SIDD, KBNet

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def authors_net(spandrel_arch, img_channel=3, width=8, enc_blk_nums=(1, 2), middle_blk_num=1, dec_blk_nums=(2, 1),
                lightweight=True, ffn_scale=1.5, seed=0):
    """The authors' KBNet_s, weights perturbed away from their initialisation (whose unit norms, zero biases and
    1e-2 branch scales would hide a misplaced term)."""
    torch.manual_seed(seed)
    net = spandrel_arch("KBNet").KBNet_s(img_channel=img_channel, width=width, middle_blk_num=middle_blk_num,
                                         enc_blk_nums=list(enc_blk_nums), dec_blk_nums=list(dec_blk_nums),
                                         lightweight=lightweight, ffn_scale=ffn_scale).eval()
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            scale = 0.5 if name.rsplit(".", 1)[-1] in ("ga1", "attgamma", "beta", "gamma") else 0.05
            parameter.add_(torch.randn_like(parameter) * scale)
    return net


def save_as_the_authors(net: torch.nn.Module, path, gaussian: bool = False):
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    if gaussian:  # test_gaussian_*_denoising.py: checkpoint['net'] into an nn.DataParallel
        torch.save({"net": {f"module.{k}": v for k, v in state.items()}}, path)
    else:  # test_real_denoising_sidd.py: checkpoint['model']
        torch.save({"model": state}, path)
    return path


def m3l_net(path) -> tuple[KBNet, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "kbnet"
    net = KBNet(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


def max_diff(authors, net, x) -> float:
    with torch.no_grad():
        expected = authors(x)
        got = net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    return (got - expected).abs().max().item()


TINY = {  # the authors' arguments, and whether the file is a Gaussian one
    "sidd-like": ({"img_channel": 3}, False),
    "gaussian-gray": ({"img_channel": 1, "lightweight": False, "ffn_scale": 2}, True),
    "three-levels": ({"img_channel": 3, "width": 4, "enc_blk_nums": (1, 1, 2), "dec_blk_nums": (1, 2, 1),
                      "middle_blk_num": 2}, False),
}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size", [(32, 48), (37, 22)])  # a multiple of 8 / 16 (no padding), and one padded
def test_kbnet_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    arguments, gaussian = TINY[name]
    authors = authors_net(spandrel_arch, **arguments)
    net, _ = m3l_net(save_as_the_authors(authors, tmp_path / "kbnet.pth", gaussian))
    difference = max_diff(authors, net, torch.rand(2, arguments["img_channel"], *size))
    print(f"KBNet {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


@pytest.mark.slow
def test_kbnet_equals_the_authors_network_at_the_released_size(spandrel_arch, tmp_path):
    """The SIDD net's shape (128.40M parameters): the file's architecture and the output."""
    authors = authors_net(spandrel_arch, width=64, enc_blk_nums=(2, 2, 4, 8), middle_blk_num=12,
                          dec_blk_nums=(2, 2, 2, 2))
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "sidd.pth"))
    assert args == SIDD
    assert sum(p.numel() for p in net.parameters()) == 128_403_395
    difference = max_diff(authors, net, torch.rand(1, 3, 40, 24))
    print(f"KBNet SIDD size, 40x24: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_padding_is_zeros_to_a_multiple_of_16_as_the_authors_forward():
    torch.manual_seed(0)
    net = FAMILY.build(1, encoder_blocks=[1, 1, 1, 1], decoder_blocks=[1, 1, 1, 1]).eval()
    assert net.multiple == 16
    x = torch.rand(1, 1, 21, 30)
    with torch.no_grad():
        zeros = net(F.pad(x, (0, 2, 0, 11)))[..., :21, :30]
        replicated = net(F.pad(x, (0, 2, 0, 11), mode="replicate"))[..., :21, :30]
        assert torch.allclose(net(x), zeros, atol=1e-6)
        assert not torch.allclose(net(x), replicated, atol=1e-4)


def test_the_layout_gives_the_architecture_of_either_release(spandrel_arch, tmp_path):
    authors = authors_net(spandrel_arch, img_channel=1, enc_blk_nums=(1, 3), dec_blk_nums=(2, 1), middle_blk_num=2,
                          lightweight=False, ffn_scale=2)
    for gaussian in (False, True):
        path = save_as_the_authors(authors, tmp_path / f"kbnet{gaussian}.pth", gaussian)
        layout, _, args = _layouts.convert(path)
        assert layout.name == "kbnet"
        assert args == {"channels": 1, "width": 8, "encoder_blocks": [1, 3], "middle_blocks": 2,
                        "decoder_blocks": [2, 1], "ffn_scale": 2.0, "lightweight": False}
        raw = _layouts.read(path)
        assert [n for n, candidate in _layouts.all_layouts().items() if candidate.detect(raw)] == ["kbnet"]


def test_incomplete_or_foreign_files_are_refused_in_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch).state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({"model": {k: v for k, v in state.items() if k != "decoders.0.1.conv5.bias"}}, missing)
    with pytest.raises(M3LError, match=r"^kbnet: the file lacks key decoders\.0\.1\.conv5\.bias") as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {**state, "middle_blks.0.w": torch.zeros(1, 3, 3)}}, wrong)
    with pytest.raises(M3LError, match=r"^kbnet: middle_blks\.0\.w has shape \(1, 3, 3\)") as error:
        _layouts.convert(wrong)
    assert "\n" not in str(error.value)


def test_weights_entry_is_the_authors_sidd_net():
    from m3l import hub

    entry, = FAMILY.weights
    assert hub.WEIGHTS["kbnet_sidd"] == entry and entry.layout == "kbnet" and entry.sha256 is None
    assert entry.net == SIDD and entry.target == "m3l.models.kbnet.KBNet" and entry.released_name == "sidd.pth"
    assert entry.url.startswith("https://mycuhk-my.sharepoint.com/") and "by hand" in entry.source
    assert entry.metrics == {"sidd/real/psnr": 40.35, "sidd/real/ssim": 0.972}


def test_paper_preset_and_cpu_default():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=kbnet", "data=paired", "preset=paper", "data_root=/s",
                                          "trainer.gpus=8"])
        default = compose("train", overrides=["model=kbnet"])
    net = {k: v for k, v in cfg.net.items() if k not in ("_target_", "channels", "pretrained")}
    assert {**net, "encoder_blocks": list(net["encoder_blocks"]), "decoder_blocks": list(net["decoder_blocks"]),
            "channels": 3} == SIDD
    assert cfg.data.train_dir == "/s/sidd_medium" and set(cfg.data.test_sets) == {"sidd"}
    assert cfg.data.input == "NOISY" and cfg.data.target == "GT"
    assert [(s.steps, s.patch_size, s.batch_size) for s in cfg.data.progressive] == [
        (92000, 128, 8), (64000, 160, 5), (48000, 192, 3), (36000, 256, 2), (36000, 320, 1), (24000, 384, 1)]
    assert cfg.optimizer.lr == 3e-4 and cfg.optimizer.weight_decay == 1e-4 and cfg.trainer.gradient_clip_val == 0.01
    assert cfg.scheduler.constant == 92000 and cfg.scheduler.T_max == 208000 and cfg.trainer.max_steps == 300000
    assert default.net.width == 8 and default.net.lightweight and default.data.channels == 3
    assert default.loss._target_ == "torch.nn.L1Loss"


def test_tiny_family_net_trains_a_step():
    torch.manual_seed(0)
    net = FAMILY.build(3).train()
    x = torch.rand(2, 3, 24, 40)
    (net(x) - x).abs().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.slow
def test_kbnet_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.width=4", "net.encoder_blocks=[1]", "net.decoder_blocks=[1]", "net.middle_blocks=1"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=4", "data.train_batch_size=2", "data.deadleaves.count=2",
             "data.deadleaves.size=64"]
    run_m3l("train", "model=kbnet", *net, *train, *QUICK, "checkpoint_out=kbnet.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)}, mode="RGB")
    run_m3l("test", "model=kbnet", *QUICK, "checkpoint=kbnet.ckpt", "data.test_sets={S: set}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["sigma25"] and rows.psnr.notna().all()
    run_m3l("correct", "model=kbnet", *QUICK, "checkpoint=kbnet.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33, 3)


@pytest.mark.slow
def test_kbnet_corrects_with_an_authors_file_as_their_forward(spandrel_arch, run_m3l, tmp_path):
    """net.pretrained=FILE of the authors' SIDD layout (the architecture comes from the file); the corrected image
    is the authors' output, rounded to 8 bits."""
    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "sidd_tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 30)}, mode="RGB")
    run_m3l("correct", "model=kbnet", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors(x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most
