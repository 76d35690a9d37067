"""RetinexFormer (low-light enhancement): m3l's net is the authors' network as their test script runs it.

The authors' network is spandrel's ``RetinexFormer`` class (the authors' ``basicsr/models/archs/RetinexFormer_arch.py``,
kept by spandrel; test-only), with random weights, saved as BasicSR saves it (``{"params": state dict}``); m3l reads
the file through its loading path (:func:`m3l.models._layouts.convert`: the architecture comes from the file) and both
run on the same input in eval mode. The authors' test script (``Enhancement/test_from_dataset.py``) pads the image at
the bottom and right to a multiple of 4 by reflection and crops the output back: so is the authors' net run here.
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
from m3l.models.retinexformer import ARCH, FAMILY, RetinexFormer

TOLERANCE = 1e-5
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def authors_net(spandrel_arch, n_feat=8, stage=1, num_blocks=(1, 2, 2), seed=0):
    """The authors' RetinexFormer (RGB), weights perturbed away from their initialisation (whose unit scales, zero
    biases and unit norms would hide a misplaced scale, bias or norm)."""
    torch.manual_seed(seed)
    net = spandrel_arch("RetinexFormer").RetinexFormer(n_feat=n_feat, stage=stage, num_blocks=list(num_blocks)).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return net


def authors_forward(authors, x: torch.Tensor) -> torch.Tensor:
    """The authors' test script: reflection to a multiple of 4 at the bottom and right, the net, cropped back."""
    h, w = x.shape[-2:]
    return authors(F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect"))[..., :h, :w]


def save_as_the_authors(net: torch.nn.Module, path):
    torch.save({"params": {k: v.cpu() for k, v in net.state_dict().items()}}, path)  # BasicSR's save_network
    return path


def m3l_net(path) -> tuple[RetinexFormer, dict]:
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "retinexformer"
    net = RetinexFormer(**net_args)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_args


VARIANTS = {  # the authors' arguments
    "released-shape": {"n_feat": 40, "stage": 1, "num_blocks": (1, 2, 2)},
    "two-stages-uneven": {"n_feat": 8, "stage": 2, "num_blocks": (2, 1, 3)},
}


@pytest.mark.parametrize("name,size", [("released-shape", (32, 48)), ("released-shape", (37, 50)),
                                       ("two-stages-uneven", (34, 47))])
def test_retinexformer_equals_the_authors_network(spandrel_arch, tmp_path, name, size):
    """Sizes: a multiple of 4 (no padding) and padded ones."""
    authors = authors_net(spandrel_arch, **VARIANTS[name])
    net, args = m3l_net(save_as_the_authors(authors, tmp_path / "LOL_tiny.pth"))
    arguments = VARIANTS[name]
    assert args == {"channels": 3, "width": arguments["n_feat"], "stages": arguments["stage"],
                    "blocks": list(arguments["num_blocks"])}
    x = torch.rand(1, 3, *size) * 0.3  # dark
    with torch.no_grad():
        expected, got = authors_forward(authors, x), net(x)
    assert got.shape == x.shape and (expected - x).abs().max() > 0.01  # the net does something
    difference = (got - expected).abs().max().item()
    print(f"RetinexFormer {name} {size[0]}x{size[1]}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_the_released_shape_has_the_papers_parameter_count():
    with torch.device("meta"):
        net = RetinexFormer(**ARCH)
    count = sum(p.numel() for p in net.parameters())
    assert count == 1_605_701 and f"{count / 1e6:.2f}" == "1.61"  # the paper's 1.61M


def test_padding_reflects_as_the_authors_script():
    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        reflected = net(F.pad(x, (0, 2, 0, 3), mode="reflect"))[..., :21, :30]
        replicated = net(F.pad(x, (0, 2, 0, 3), mode="replicate"))[..., :21, :30]
        assert torch.allclose(net(x), reflected, atol=1e-6)
        assert not torch.allclose(net(x), replicated, atol=1e-4)


def test_only_retinexformer_files_have_the_layout_and_misfits_are_one_line(spandrel_arch, tmp_path):
    state = authors_net(spandrel_arch).state_dict()
    path = save_as_the_authors(authors_net(spandrel_arch), tmp_path / "LOL_v1.pth")
    raw = _layouts.read(path)
    assert [name for name, layout in _layouts.all_layouts().items() if layout.detect(raw)] == ["retinexformer"]
    missing = tmp_path / "missing.pth"
    torch.save({"params": {k: v for k, v in state.items() if k != "body.0.denoiser.mapping.weight"}}, missing)
    with pytest.raises(M3LError, match=r"^retinexformer: the file lacks key body\.0\.denoiser\.mapping\.weight") as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    key = "body.0.denoiser.bottleneck.blocks.0.0.to_q.weight"
    torch.save({"params": {**state, key: torch.zeros(3, 3)}}, wrong)
    with pytest.raises(M3LError, match=rf"^retinexformer: {key.replace('.', '[.]')} has shape \(3, 3\)"):
        _layouts.convert(wrong)


def test_weights_entries_are_the_authors_release():
    from m3l import hub

    names = [w.name for w in FAMILY.weights]
    assert names[:3] == ["retinexformer_lol_v1", "retinexformer_lol_v2_real", "retinexformer_lol_v2_synthetic"]
    assert set(names[3:]) == {f"retinexformer_{v}" for v in ("sid", "smid", "sdsd_indoor", "sdsd_outdoor", "fivek",
                                                            "ntire")}
    for entry in FAMILY.weights:
        assert hub.WEIGHTS[entry.name] == entry and entry.layout == "retinexformer" and entry.net == ARCH
        assert entry.url.startswith("https://drive.google.com/") and entry.released_name.endswith(".pth")
    v1, real = hub.WEIGHTS["retinexformer_lol_v1"], hub.WEIGHTS["retinexformer_lol_v2_real"]
    assert v1.metrics == {"lol_v1/lowlight/psnr": 25.16, "lol_v1/lowlight/ssim": 0.845}
    assert real.metrics == {"lol_v2_real/lowlight/psnr": 22.80, "lol_v2_real/lowlight/ssim": 0.840}
    assert hub.WEIGHTS["retinexformer_lol_v2_synthetic"].metrics["lol_v2_synthetic/lowlight/psnr"] == 25.67
    assert "data.input=/Low/" in real.protocol and "data.input=/low/" in v1.protocol


def test_paper_preset_and_the_protocols_compose():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    real = FAMILY.weights[1]
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=retinexformer", "data=lowlight", "preset=paper", "data_root=/sets"])
        default = compose("train", overrides=["model=retinexformer"])
        test = compose("test", overrides=["model=retinexformer", *(o.replace("{data_root}", "/sets")
                                                                    for o in real.protocol)])
    assert cfg.net.width == 40 and list(cfg.net.blocks) == [1, 2, 2] and cfg.net.stages == 1
    assert cfg.data._target_.endswith("PairedFolderDataModule") and cfg.data.input == "/low/"
    assert cfg.data.train_dir == "/sets/lol_v1/train" and cfg.data.patch_size == 128 and cfg.data.train_batch_size == 8
    assert cfg.optimizer.lr == 2e-4 and cfg.loss._target_ == "torch.nn.L1Loss" and cfg.trainer.max_steps == 150_000
    assert cfg.scheduler.constant == 46_000 and cfg.scheduler.T_max == 104_000 and cfg.trainer.gradient_clip_val == 0.01
    assert default.net.width == 16 and default.data.train_dir is None and default.data.channels == 3
    assert test.data.input == "/Low/" and test.data.target == "/Normal/" and test.data.degradation == "lowlight"
    assert dict(test.data.test_sets) == {"lol_v2_real": "/sets/lol_v2_real"}


@pytest.mark.slow
def test_retinexformer_trains_on_pairs_tests_and_corrects_end_to_end(spandrel_arch, run_m3l, tmp_path):
    """data=lowlight pairs (low/ and high/) train and test; an authors' file corrects a photo as their script."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for folder in ("low", "high"):
            (tmp_path / split / folder).mkdir(parents=True)
        for i in range(2):
            high = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
            Image.fromarray(high).save(tmp_path / split / "high" / f"{i}.png")
            Image.fromarray((high // 5).astype(np.uint8)).save(tmp_path / split / "low" / f"{i}.png")
    data = ["data=lowlight", "data.train_dir=train", "data.val_dir=test", "data.test_sets={lol: test}",
            "data.patch_size=32", "data.train_batch_size=2", "data.patches_per_epoch=4"]
    net = ["net.width=8", "net.blocks=[1,1,1]"]
    run_m3l("train", "model=retinexformer", *data, *net, *QUICK, "trainer.max_epochs=1", "checkpoint_out=rf.ckpt",
            "hydra.run.dir=train_run")
    run_m3l("test", "model=retinexformer", *data, *QUICK, "checkpoint=rf.ckpt", "hydra.run.dir=test_run")
    rows = pd.read_csv(tmp_path / "test_run" / "metrics.csv")
    assert rows.degradation.tolist() == ["lowlight"] and rows.psnr.notna().all()

    authors = authors_net(spandrel_arch)
    path = save_as_the_authors(authors, tmp_path / "LOL_v1_tiny.pth")
    image, = write_images(tmp_path / "in", {"x.png": (45, 70)}, mode="RGB")
    run_m3l("correct", "model=retinexformer", f"net.pretrained={path}", "data.correct_dir=in",
            "serializer.root_dir=out", *QUICK)
    x = torch.from_numpy(np.array(Image.open(image))).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = authors_forward(authors, x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - expected.numpy().astype(int)).max() <= 1  # a rounding tie at most
