"""MixDehazeNet (dehazing): m3l's net is the authors' network as their test script runs it.

The authors' network is spandrel's ``MixDehazeNet`` class (the authors' ``models/MixDehazeNet.py``, kept by spandrel;
test-only), with random weights and batch-norm statistics, saved as the authors' train.py saves it (a checkpoint
``{"state_dict": ...}`` of an ``nn.DataParallel``: ``module.`` keys); m3l reads the file through its loading path
(:func:`m3l.models._layouts.convert`) and both run on the same image in eval mode. The authors' test script gives the
net the image mapped to [-1, 1] (``x * 2 - 1``) and maps the output back (``* 0.5 + 0.5``); m3l's net takes and
returns [0, 1] images, so it is compared with ``authors(x * 2 - 1) * 0.5 + 0.5``. Their forward pads to a multiple of 4
by reflection itself.
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
from m3l.models.mixdehazenet import FAMILY, MixDehazeNet, mirror_pad

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def authors_net(spandrel_arch, embed_dims=(16, 8, 16, 8, 16), depths=(1, 2, 1, 1, 2), seed=0):
    """The authors' MixDehazeNet, weights and batch-norm statistics perturbed away from their initialisation."""
    torch.manual_seed(seed)
    net = spandrel_arch("MixDehazeNet").MixDehazeNet(embed_dims=list(embed_dims), depths=list(depths)).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return net


def authors_forward(authors, x: torch.Tensor) -> torch.Tensor:
    """The authors' test.py on a [0, 1] image: in as ``x * 2 - 1``, out as ``* 0.5 + 0.5``."""
    return authors(x * 2 - 1) * 0.5 + 0.5


def save_as_the_authors(net: torch.nn.Module, path):
    state = {f"module.{k}": v.cpu() for k, v in net.state_dict().items()}  # their DataParallel network
    torch.save({"state_dict": state, "epoch": 3, "best_psnr": 30.0}, path)
    return path


def m3l_net(path) -> tuple[MixDehazeNet, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "mixdehazenet"
    net = MixDehazeNet(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


VARIANTS = {  # the authors' arguments
    "uneven": {"embed_dims": (16, 8, 16, 8, 16), "depths": (1, 2, 1, 1, 2)},
    "released-widths": {"embed_dims": (24, 48, 96, 48, 24), "depths": (1, 1, 2, 1, 1)},  # MixDehazeNet-T's shape
}


@pytest.mark.parametrize("name,size", [("uneven", (48, 64)), ("uneven", (45, 58)), ("released-widths", (42, 57))])
def test_mixdehazenet_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    """Sizes: a multiple of 4 (no padding) and padded ones."""
    authors = authors_net(spandrel_arch, **VARIANTS[name])
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "MixDehazeNet-tiny.pth"))
    assert args == {"channels": 3, "widths": list(VARIANTS[name]["embed_dims"]),
                    "depths": list(VARIANTS[name]["depths"])}
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        expected, got = authors_forward(authors, x), net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    difference = (got - expected).abs().max().item()
    print(f"MixDehazeNet {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


@pytest.mark.parametrize("size,count", [("s", 3_164_944), ("b", 6_248_932), ("l", 12_416_908)])
def test_the_released_sizes(size, count):
    depths = {"s": [2, 2, 4, 2, 2], "b": [4, 4, 8, 4, 4], "l": [8, 8, 16, 8, 8]}[size]
    with torch.device("meta"):
        net = MixDehazeNet(3, [24, 48, 96, 48, 24], depths)
    assert sum(p.numel() for p in net.parameters()) == count
    assert FAMILY.weights[0].net["depths"] == [8, 8, 16, 8, 8]


def test_reflection_is_torchs_where_it_can_be_and_periodic_beyond():
    x = torch.rand(2, 3, 11, 7)
    assert torch.equal(mirror_pad(x, 6), torch.nn.functional.pad(x, (6, 6, 6, 6), mode="reflect"))
    line = torch.arange(3.0).reshape(1, 1, 1, 3)
    assert mirror_pad(line, 5)[0, 0, 0].tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]
    assert mirror_pad(torch.ones(1, 1, 1, 1), 9).shape == (1, 1, 19, 19)
    net = FAMILY.build(3).eval()
    with torch.no_grad():  # images smaller than the authors' net takes (40 pixels) run
        assert net(torch.rand(1, 3, 5, 13)).shape == (1, 3, 5, 13)


def test_only_mixdehazenet_files_have_the_layout_and_misfits_are_one_line(spandrel_arch, tmp_path):
    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "MixDehazeNet-s.pth")
    raw = _layouts.read(path)
    assert [name for name, layout in _layouts.all_layouts().items() if layout.detect(raw)] == ["mixdehazenet"]
    state = authors.state_dict()
    missing = tmp_path / "missing.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "layer3.blocks.0.mlp2.2.bias"}}, missing)
    with pytest.raises(M3LError, match=r"^mixdehazenet: the file lacks key layer3\.blocks\.0\.mlp2\.2\.bias") as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {**state, "layer2.blocks.1.conv3_7.weight": torch.zeros(3, 3)}}, wrong)
    with pytest.raises(M3LError, match=r"^mixdehazenet: layer2\.blocks\.1\.conv3_7\.weight has shape \(3, 3\)"):
        _layouts.convert(wrong)


def test_weights_entries_are_the_authors_release():
    from m3l import hub

    names = [w.name for w in FAMILY.weights]
    assert names == [f"mixdehazenet_{kind}_{size}" for kind in ("indoor", "outdoor") for size in ("l", "b", "s")]
    for entry in FAMILY.weights:
        assert hub.WEIGHTS[entry.name] == entry and entry.layout == "mixdehazenet"
        assert entry.url.startswith("https://drive.google.com/") and entry.released_name.startswith("MixDehazeNet-")
    indoor_l = hub.WEIGHTS["mixdehazenet_indoor_l"]
    assert indoor_l.metrics == {"sots_indoor/haze/psnr": 42.62} and "data=dehazing" in indoor_l.protocol
    assert hub.WEIGHTS["mixdehazenet_indoor_b"].url.endswith("1Ds-uyUQg2VBWga6ZOXKVUeefhR-QTu-O")


def test_paper_preset_and_the_protocol_compose():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=mixdehazenet", "data=dehazing", "preset=paper", "data_root=/sets"])
        default = compose("train", overrides=["model=mixdehazenet"])
        test = compose("test", overrides=["model=mixdehazenet", *(o.replace("{data_root}", "/sets")
                                                                   for o in FAMILY.weights[0].protocol)])
    assert list(cfg.net.depths) == [8, 8, 16, 8, 8] and cfg.data._target_.endswith("PairedFolderDataModule")
    assert cfg.data.input == "/hazy/" and cfg.data.target == "/GT/" and cfg.data.train_dir == "/sets/its"
    assert cfg.data.patch_size == 256 and cfg.data.train_batch_size == 16 and cfg.trainer.max_epochs == 480
    assert cfg.optimizer.lr == 2e-4 and cfg.scheduler.eta_min == 2e-6 and cfg.loss._target_ == "torch.nn.L1Loss"
    assert default.net.widths[0] == 8 and default.data.train_dir is None and default.data.channels == 3
    assert dict(test.data.test_sets) == {"sots_indoor": "/sets/sots_indoor"} and test.data.degradation == "haze"


@pytest.mark.slow
def test_mixdehazenet_trains_on_pairs_tests_and_corrects_end_to_end(spandrel_arch, run_m3l, tmp_path):
    """data=dehazing pairs (hazy/ and GT/) train and test; an authors' file corrects a photo as their script."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for folder in ("hazy", "GT"):
            (tmp_path / split / folder).mkdir(parents=True)
        for i in range(2):
            clear = rng.integers(0, 256, (48, 52, 3), dtype=np.uint8)
            Image.fromarray(clear).save(tmp_path / split / "GT" / f"{i}.png")
            Image.fromarray((clear // 2 + 100).astype(np.uint8)).save(tmp_path / split / "hazy" / f"{i}.png")
    data = ["data=dehazing", "data.train_dir=train", "data.val_dir=test", "data.test_sets={sots: test}",
            "data.patch_size=40", "data.train_batch_size=2", "data.patches_per_epoch=4"]
    net = ["net.widths=[8,8,8,8,8]", "net.depths=[1,1,1,1,1]"]
    run_m3l("train", "model=mixdehazenet", *data, *net, *QUICK, "trainer.max_epochs=1", "checkpoint_out=md.ckpt",
            "hydra.run.dir=train_run")
    run_m3l("test", "model=mixdehazenet", *data, *QUICK, "checkpoint=md.ckpt", "hydra.run.dir=test_run")
    rows = pd.read_csv(tmp_path / "test_run" / "metrics.csv")
    assert rows.degradation.tolist() == ["haze"] and rows.psnr.notna().all()

    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "MixDehazeNet-tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 70)}, mode="RGB")
    run_m3l("correct", "model=mixdehazenet", f"net.pretrained={path}", "data.correct_dir=in",
            "serializer.root_dir=out", *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors_forward(authors, x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most
