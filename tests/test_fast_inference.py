"""The fast exact path of test / correct (m3l/engine/fuse.py): batch norm folded, channels-last, compile after loading,
onnxruntime; outputs equal to the plain net's within 1e-5, the trained net's weights untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, perturbed, write_images
from test_configs import compose_m3l


def trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with weights, batch-norm statistics and affine terms far from their initial values (as after
    training: a fresh DnCNN is the identity)."""
    perturbed(net)
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return net


def restored(module, batch: dict, fast: bool) -> torch.Tensor:
    """What the module's test / predict steps compute for ``batch``: with the inference copy (``fast``) or not."""
    module.eval()
    with torch.inference_mode():
        if fast:
            module.on_predict_start()
        try:
            return module.restore(batch)
        finally:
            if fast:
                module.on_predict_end()


@pytest.mark.parametrize("model", ["dncnn", "ffdnet"])
@pytest.mark.parametrize("options", [[], ["channels_last=false"], ["channels_last=true"]])
def test_folded_batch_norm_gives_the_same_output_and_leaves_the_net_alone(model, options):
    from m3l.run.common import build_module

    module = build_module(compose_m3l("correct", [f"model={model}", "net.depth=5", "net.width=16", *options]))
    trained_like(module.net)
    before = {key: value.clone() for key, value in module.state_dict().items()}
    batch = {"input": torch.rand(2, 1, 27, 34), "side": {"sigma": torch.tensor([15 / 255, 50 / 255])}}
    plain = restored(module, batch, fast=False)
    module.fold_batch_norm = False
    unfolded = restored(module, batch, fast=True)
    module.fold_batch_norm = True
    fast = restored(module, batch, fast=True)
    assert (fast - plain).abs().max() <= 1e-5 and (unfolded - plain).abs().max() <= 1e-5
    assert not torch.equal(fast, plain * 0)  # the net does something
    # the module's own net is as trained: its batch norms are there, every weight unchanged
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.net.modules()) == 3
    assert all(torch.equal(value, before[key]) for key, value in module.state_dict().items())
    assert module._inference is None  # dropped when predicting ends


def test_fold_batch_norm_folds_each_conv_bn_pair_of_a_copy():
    from m3l.engine.fuse import fold_batch_norm, plain_copy
    from m3l.models.dncnn import DnCNN

    net = trained_like(DnCNN(depth=6, width=8)).eval()
    copy = plain_copy(net)
    assert fold_batch_norm(copy) == 4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 4
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        assert (copy(x) - net(x)).abs().max() <= 1e-6


def test_compile_keeps_plain_keys_so_checkpoints_load(tmp_path):
    """compile=true compiled before the weights were loaded, under ``net._orig_mod.*`` keys: a normal checkpoint
    did not load, and training wrote checkpoints that a plain net could not load."""
    from m3l.checkpoint import load_weights
    from m3l.models.dncnn import DnCNN
    from m3l.engine.restoration import RestorationModule
    from m3l.run.common import build_module

    plain = trained_like(RestorationModule(DnCNN(depth=3, width=8)))
    torch.save({"state_dict": plain.state_dict()}, tmp_path / "plain.ckpt")
    for task in ("correct", "train"):
        module = build_module(compose_m3l(task, ["model=dncnn", "net.depth=3", "net.width=8", "compile=true"]))
        assert sorted(module.state_dict()) == sorted(plain.state_dict())  # what training saves: plain keys
        load_weights(module, tmp_path / "plain.ckpt")
        assert all(torch.equal(v, plain.state_dict()[k]) for k, v in module.state_dict().items())
    # weights saved from a net wrapped by torch.compile (the old compile=true) load into the plain net
    wrapped = {k.replace("net.", "net._orig_mod.", 1): v for k, v in plain.state_dict().items()}
    torch.save({"state_dict": wrapped}, tmp_path / "wrapped.ckpt")
    for load in (lambda module: module.load_state_dict(wrapped), lambda module: load_weights(module, tmp_path / "wrapped.ckpt")):
        fresh = RestorationModule(DnCNN(depth=3, width=8))
        load(fresh)
        assert all(torch.equal(v, plain.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_onnxruntime_backend_matches_torch():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from m3l.run.common import build_module

    batch = {"input": torch.rand(1, 1, 19, 26), "side": {"sigma": torch.tensor([25 / 255])}}
    module = build_module(compose_m3l("correct", ["model=ffdnet", "net.depth=4", "net.width=8", "threads=1",
                                                  "backend=onnxruntime"]))
    trained_like(module.net)
    assert module.inference_threads == 1
    assert (restored(module, batch, fast=True) - restored(module, batch, fast=False)).abs().max() <= 1e-5


@pytest.mark.parametrize("override", ["backend=tensorrt", "channels_last=sometimes"])
def test_unknown_speed_option_is_one_line(override):
    from m3l.errors import M3LError
    from m3l.run.common import build_module

    with pytest.raises(M3LError, match=override.partition("=")[0]):
        build_module(compose_m3l("correct", ["model=dncnn", "net.depth=3", "net.width=8", override]))


@pytest.mark.slow
def test_correct_backends_and_compile_give_the_same_pngs(run_m3l, tmp_path, tiny_checkpoint):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    write_images(tmp_path / "in", {"a.png": (37, 29), "b.png": (24, 40)})
    common = ["model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}", "data.correct_dir=in",
              "data.num_workers=0"]
    runs = {"today": ["fold_batch_norm=false", "channels_last=false"], "default": [],
            "onnxruntime": ["backend=onnxruntime"], "compile": ["compile=true"]}
    for name, overrides in runs.items():
        run_m3l("correct", *common, f"serializer.root_dir={name}", *overrides)
    for image in ("a.png", "b.png"):
        today = np.array(Image.open(tmp_path / "today" / image), dtype=int)
        for name in runs:
            assert np.abs(np.array(Image.open(tmp_path / name / image), dtype=int) - today).max() <= 1, name


@pytest.mark.slow
def test_training_with_compile_writes_plain_keys(run_m3l, tmp_path):
    target = tmp_path / "model.ckpt"
    run_m3l("train", "model=dncnn", *TINY, "data.patches_per_epoch=8", "compile=true", f"checkpoint_out={target}")
    keys = list(torch.load(target, map_location="cpu", weights_only=True)["state_dict"])
    assert keys and not any("_orig_mod" in key for key in keys)
    run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={target}", "data.num_workers=0")
