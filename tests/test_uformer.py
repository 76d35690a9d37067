"""Uformer (GoPro deblurring, SIDD real denoising): m3l's net is the authors' network as their test scripts run it.

The authors' network is spandrel's ``Uformer`` class (the authors' ``model.py``, kept by spandrel; test-only) with
random weights, saved as the authors' training script saves it (``{"epoch", "state_dict", "optimizer"}``, the
state dict of an ``nn.DataParallel`` net: keys start ``module.``); m3l reads the file through its loading path
(:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both run on the same input in eval
mode. The authors' test scripts (``test/test_gopro_hide.py``, ``test/test_sidd.py``) place the image in the centre
of a zero square whose side is a multiple of 128 (``expand2square``), run the net on it and cut the image's area out
again (``masked_select``); :func:`authors_forward` does the same (the factor is ``16 * window``: 128 for the
released nets' windows of 8).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_images
from PIL import Image

from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.uformer import ARCH, FAMILY, Uformer

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
RELEASED = {"embed_dim": 32, "depths": [1, 2, 8, 8, 2, 8, 8, 2, 1], "win_size": 8}  # utils/model_utils.py Uformer_B


def authors_net(spandrel_arch, img_size=64, embed_dim=4, depths=(1, 2, 1, 1, 2, 1, 1, 2, 1),
                num_heads=(1, 1, 1, 2, 2, 2, 2, 1, 1), win_size=2, mlp_ratio=2.0, seed=0):
    """The authors' Uformer as their get_arch builds Uformer_B (linear projection, LeFF, modulators), weights
    perturbed away from their initialisation (whose zero biases and unit norms would hide a misplaced bias)."""
    torch.manual_seed(seed)
    net = spandrel_arch("Uformer").Uformer(
        img_size=img_size, in_chans=3, dd_in=3, embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads),
        win_size=win_size, mlp_ratio=mlp_ratio, token_projection="linear", token_mlp="leff", modulator=True).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return net


def authors_forward(authors, x: torch.Tensor, factor: int) -> torch.Tensor:
    """The authors' test scripts: ``expand2square(x, factor)``, the net, ``masked_select`` of the image's area."""
    _, c, h, w = x.shape
    side = int(math.ceil(max(h, w) / float(factor)) * factor)
    square, mask = torch.zeros(1, c, side, side), torch.zeros(1, 1, side, side)
    top, left = (side - h) // 2, (side - w) // 2
    square[:, :, top:top + h, left:left + w] = x
    mask[:, :, top:top + h, left:left + w] = 1
    return torch.masked_select(authors(square), mask.bool()).reshape(1, c, h, w)


def save_as_the_authors(net: torch.nn.Module, path):
    """train/train_motiondeblur.py's torch.save of the nn.DataParallel net (keys ``module.*``)."""
    state = {f"module.{k}": v.cpu() for k, v in net.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def m3l_net(path, **override) -> tuple[Uformer, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "uformer"
    net = Uformer(**{**net_args, **override})
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


TINY = {  # the authors' arguments
    "shifted-bottleneck": {"img_size": 64},  # 64 / 16 = 4 > the window 2: the bottleneck's odd blocks shift
    "unshifted-bottleneck": {"img_size": 32, "depths": (2, 2, 2, 2, 2, 2, 2, 2, 2)},  # 32 / 16 = 2: it does not
    "window-4": {"img_size": 64, "win_size": 4, "embed_dim": 8, "num_heads": (1, 2, 2, 2, 4, 4, 2, 2, 1)},
}
QUICK_CASES = {("shifted-bottleneck", (40, 70)), ("window-4", (1, 1))}
CASES = [  # (1, 1): a square of the net's multiple (no padding); else padded. Two run quickly, all in CI.
    pytest.param(name, size, marks=() if (name, size) in QUICK_CASES else pytest.mark.slow)
    for name in TINY for size in [(1, 1), (40, 70)]]


@pytest.mark.parametrize("name, size", CASES)
def test_uformer_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    authors = authors_net(spandrel_arch, **TINY[name])
    # the file does not say img_size (the authors' test scripts: 128): the test gives the authors' value
    net, _ = m3l_net(save_as_the_authors(authors, tmp_path / "model_best.pth"),
                     input_resolution=TINY[name]["img_size"])
    multiple = 16 * TINY[name].get("win_size", 2)
    assert net.multiple == multiple
    if size == (1, 1):
        size = (multiple, multiple)
    torch.manual_seed(1)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        expected, got = authors_forward(authors, x, multiple), net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    difference = (got - expected).abs().max().item()
    print(f"Uformer {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_the_released_architecture_has_the_authors_keys_and_shapes(spandrel_arch, monkeypatch):
    """Uformer-B as get_arch builds it (on the meta device: no memory, no time): the same tensors, 50.88M."""
    linspace = torch.linspace  # their drop-path rates: .item() of a linspace, which a meta tensor cannot give
    monkeypatch.setattr(torch, "linspace", lambda *args, **kwargs: linspace(*args, **{**kwargs, "device": "cpu"}))
    with torch.device("meta"):
        authors = spandrel_arch("Uformer").Uformer(img_size=128, token_projection="linear", token_mlp="leff",
                                                   modulator=True, dd_in=3, **RELEASED)
        net = Uformer(3, **ARCH)
    theirs = {k: tuple(v.shape) for k, v in authors.state_dict().items() if "relative_position_index" not in k}
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == theirs
    assert sum(p.numel() for p in net.parameters()) == 50_880_946  # the paper's 50.88M


@pytest.mark.slow
def test_uformer_equals_the_authors_network_at_the_released_size(spandrel_arch, tmp_path):
    """Uformer-B itself (two forwards of 30 s on 2 loaded cores)."""
    authors = authors_net(spandrel_arch, img_size=128, num_heads=(1, 2, 4, 8, 16, 16, 8, 4, 2), mlp_ratio=4.0,
                          **RELEASED)
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "model_best.pth"))
    assert args == {"channels": 3, **ARCH}
    x = torch.rand(1, 3, 100, 120)
    with torch.no_grad():
        difference = (net(x) - authors_forward(authors, x, 128)).abs().max().item()
    print(f"Uformer-B, 100x120: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_padding_is_a_centred_zero_square():
    """An image and the same image already centred in zeros of a square of the multiple give the same pixels;
    ``square=False`` pads each side to its own multiple (another result for a wide image)."""
    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    m = net.multiple
    x = torch.rand(1, 3, 20, 45)  # -> a 64 x 64 square (m = 32): 22 rows above, 9 columns left
    square = torch.zeros(1, 3, 64, 64)
    square[:, :, 22:42, 9:54] = x
    strip = torch.zeros(1, 3, 32, 64)  # square=False: 20 x 45 -> 32 x 64, 6 rows above, 9 columns left
    strip[:, :, 6:26, 9:54] = x
    with torch.no_grad():
        in_square, squared = net(x), net(square)[:, :, 22:42, 9:54]
        net.square = False
        in_strip, stripped = net(x), net(strip)[:, :, 6:26, 9:54]
    assert m == 32 and torch.allclose(in_square, squared, atol=1e-6) and torch.allclose(in_strip, stripped, atol=1e-6)
    assert not torch.allclose(in_square, in_strip, atol=1e-4)


def test_the_layout_gives_the_architecture_and_only_uformer_files_have_it(spandrel_arch, tmp_path):
    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "model_best.pth")
    layout, state, args = _layouts.convert(path)
    assert layout.name == "uformer" and not any(k.startswith("module.") for k in state)
    assert args == {"channels": 3, "width": 4, "blocks": [1, 2, 1, 1, 2, 1, 1, 2, 1],
                    "heads": [1, 1, 1, 2, 2, 2, 2, 1, 1], "window": 2, "mlp_ratio": 2.0, "modulator": True,
                    "drop_path": 0.1, "input_resolution": 128, "square": True}
    bare = tmp_path / "bare.pth"  # a plain state dict (no wrapper, no module.) is the same layout
    torch.save(authors.state_dict(), bare)

    def detecting(file) -> list[str]:
        raw = _layouts.read(file)
        return [name for name, candidate in _layouts.all_layouts().items() if candidate.detect(raw)]

    assert detecting(path) == detecting(bare) == ["uformer"]
    scunet = tmp_path / "scunet.pth"
    torch.save({"m_head.0.weight": torch.zeros(4, 3, 3, 3), "m_tail.0.weight": torch.zeros(3, 4, 3, 3),
                "m_body.0.trans_block.msa.relative_position_params": torch.zeros(1, 3, 3)}, scunet)
    assert "uformer" not in detecting(scunet)


def test_incomplete_or_foreign_files_are_refused_in_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch).state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "decoderlayer_1.blocks.0.mlp.dwconv.0.bias"}},
               missing)
    with pytest.raises(M3LError, match=r"^uformer: the file lacks key decoderlayer_1\.blocks\.0\.mlp\.dwconv\.0\.bias"
                       ) as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({**state, "conv.blocks.1.norm2.weight": torch.zeros(3)}, wrong)
    with pytest.raises(M3LError, match=r"^uformer: conv\.blocks\.1\.norm2\.weight has shape \(3,\)"):
        _layouts.convert(wrong)
    stage = tmp_path / "stage.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("decoderlayer_2.")}, stage)
    with pytest.raises(M3LError, match=r"^uformer: the file has no blocks in decoderlayer_2"):
        _layouts.convert(stage)


def test_weights_entries_are_the_authors_release():
    from hydra import compose, initialize_config_module

    from m3l import hub
    from m3l.run.common import register_search_path

    assert [w.name for w in FAMILY.weights] == ["uformer_gopro", "uformer_sidd"]  # pretrained=True: GoPro
    ids = {"gopro": "EfCPoTSEKJRAshoE6EAC_3YB7oNkbLUX6AUgWSCwoJe0oA",
           "sidd": "Ea7hMP82A0xFlOKPlQnBJy0B9gVP-1MJL75mR4QKBMGc2w"}
    for entry in FAMILY.weights:
        assert hub.WEIGHTS[entry.name] == entry and entry.layout == "uformer" and entry.sha256 is None
        assert ids[entry.variant] in entry.url and entry.url.endswith("?download=1")
        assert entry.url.startswith("https://mailustceducn-my.sharepoint.com/")  # the README's links
        assert entry.net == {"channels": 3, **ARCH} and entry.target == "m3l.models.uformer.Uformer"
    gopro, sidd = hub.WEIGHTS["uformer_gopro"], hub.WEIGHTS["uformer_sidd"]
    assert gopro.metrics == {"gopro/gopro_blur/psnr": 33.06, "gopro/gopro_blur/ssim": 0.967}
    assert sidd.metrics == {"sidd/real/psnr": 39.89, "sidd/real/ssim": 0.960}
    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        configs = {e.variant: compose("test", overrides=["model=uformer", *(o.replace("{data_root}", "/sets")
                                                                             for o in e.protocol)])
                   for e in FAMILY.weights}
    for variant, cfg in configs.items():  # the protocols give the rows that the metrics name
        assert cfg.data._target_ == "m3l.data.paired_folders.PairedFolderDataModule" and cfg.data.channels == 3
        dataset, degradation, _ = next(iter(hub.WEIGHTS[f"uformer_{variant}"].metrics)).split("/")
        assert list(cfg.data.test_sets) == [dataset] and cfg.data.degradation == degradation
    assert configs["gopro"].data.test_sets.gopro == "/sets/gopro/test"
    assert configs["sidd"].data.test_sets.sidd == "/sets/sidd" and configs["sidd"].data.input == "/input/"


def test_paper_preset_and_cpu_default():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=uformer", "data=paired", "preset=paper", "data_root=/sets",
                                          "trainer.gpus=2"])
        default = compose("train", overrides=["model=uformer"])
    assert cfg.net.width == 32 and list(cfg.net.blocks) == ARCH["blocks"] and cfg.net.window == 8
    assert cfg.net.input_resolution == 256 and cfg.net.drop_path == 0.1  # the training patch, the authors' img_size
    assert cfg.data.patch_size == 256 and cfg.data.train_batch_size == 4 and cfg.data.train_dir == "/sets/gopro/train"
    assert dict(cfg.data.test_sets) == {"gopro": "/sets/gopro/test"} and cfg.data.patches_per_epoch == 2103
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 2e-4
    assert cfg.optimizer.weight_decay == 0.02 and cfg.loss._target_ == "m3l.engine.losses.CharbonnierLoss"
    assert cfg.loss.eps == 1e-6 and cfg.scheduler.eta_min == 1e-6 and cfg.scheduler.T_max == 2997
    assert cfg.scheduler._target_ == "m3l.engine.schedules.warmup_then_cosine" and cfg.scheduler.warmup == 3
    assert cfg.trainer.max_epochs == 3000 and cfg.scheduler_interval == "epoch"
    assert default.net.width == 8 and default.net.window == 4 and default.data.train_dir is None
    assert default.data.patch_size % (16 * default.net.window) == 0  # CPU patches need no padding


def test_charbonnier_is_the_authors():
    """losses.py's CharbonnierLoss(eps=1e-3): mean(sqrt(d^2 + eps^2)), m3l's with eps 1e-6."""
    from m3l.engine.losses import CharbonnierLoss

    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert torch.allclose(CharbonnierLoss(1e-6)(a, b), torch.sqrt((a - b) ** 2 + 1e-3 ** 2).mean())


def test_tiny_family_net_trains_a_step():
    torch.manual_seed(0)
    net = FAMILY.build(3).train()  # drop_path 0.1: stochastic depth on
    x = torch.rand(2, 3, 32, 32)
    loss = (net(x) - x).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="need 9 entries"):
        Uformer(3, blocks=[1, 1, 1])
    with pytest.raises(ValueError, match="input_resolution=64 is under 16 \\* window = 128"):
        Uformer(3, input_resolution=64)
    with pytest.raises(ValueError, match="3 attention heads do not divide 32 channels"):
        Uformer(3, heads=[3, 2, 4, 8, 16, 16, 8, 4, 2])


@pytest.mark.slow
def test_uformer_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.width=4", "net.blocks=[1,1,1,1,1,1,1,1,1]", "net.heads=[1,1,1,1,1,1,1,1,1]", "net.window=2",
           "net.input_resolution=32"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=4", "data.train_batch_size=2", "data.patch_size=32",
             "data.deadleaves.count=2", "data.deadleaves.size=64"]
    run_m3l("train", "model=uformer", *net, *train, *QUICK, "checkpoint_out=uformer.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)}, mode="RGB")
    run_m3l("test", "model=uformer", *QUICK, "checkpoint=uformer.ckpt", "data.test_sets={S: set}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert len(rows) == 1 and rows.psnr.notna().all()
    run_m3l("correct", "model=uformer", *QUICK, "checkpoint=uformer.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33, 3)


@pytest.mark.slow
def test_uformer_corrects_with_an_authors_file_as_their_test_script(spandrel_arch, run_m3l, tmp_path):
    """net.pretrained=FILE of the authors' layout (the architecture comes from the file; the authors' img_size 128
    is under this tiny net's 16 * window, so the test's authors' net is built with it: no shift at the bottleneck
    in either); the corrected image is the authors' output, rounded to 8 bits as their script saves it."""
    authors = authors_net(spandrel_arch, img_size=128)
    path = save_as_the_authors(authors, tmp_path / "model_best.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 70)}, mode="RGB")
    run_m3l("correct", "model=uformer", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors_forward(authors, x, 32)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most
