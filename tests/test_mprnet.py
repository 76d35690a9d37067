"""MPRNet (deblurring, deraining, denoising): m3l's net is the authors' network, and trains with their loss.

spandrel lacks MPRNet. The facts in tests/data/authors_keys/mprnet_*.json were read from the authors' code
(swz30/MPRNet@43feb2a, ``Deblurring/``, ``Deraining/``, ``Denoising/MPRNet.py`` and ``losses.py``, run in a scratch
folder outside m3l; nothing of it is imported here):

- ``mprnet_<task>.json``: every key, shape and dtype of the state dict of ``MPRNet()`` with the task's defaults,
  its parameter count, and the keys that hold one shared tensor (the one PReLU of every CAB);
- ``mprnet_reference.json``: a tiny net of their class (``n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4,
  num_cab=2``) with weights drawn by a stated rule, its three stages' outputs on a seeded 16x24 input, and the sum
  over the stages of their Charbonnier and edge losses against a seeded target. There the authors' nets at the three released sizes, loaded through m3l's loading
  path, gave max |diff| 1.3e-6 (deblurring), 1.2e-6 (deraining), 1.8e-6 (denoising) on a 64x48 image in eval and
  training mode (float32, CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import write_images
from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.mprnet import FAMILY, WEIGHTS, MPRNet

TOLERANCE = 1e-5
FACTS = Path(__file__).parent / "data" / "authors_keys"
TASKS = {"deblurring": "mprnet_deblurring", "deraining": "mprnet_deraining", "denoising": "mprnet_denoising"}
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def facts(name: str) -> dict:
    return json.loads((FACTS / f"{name}.json").read_text())


def drawn(keys_shapes, tied, seed: int = 0) -> dict:
    """The reference's weights rule: one draw a key in order, ``(rand - 0.5) * 2 / sqrt(fan_in)`` (0.4 for vectors),
    then each tied group set to its first key's tensor."""
    generator, state = torch.Generator().manual_seed(seed), {}
    for key, shape in keys_shapes:
        scale = 1.0 / float(np.prod(shape[1:])) ** 0.5 if len(shape) > 1 else 0.4
        state[key] = (torch.rand(shape, generator=generator) - 0.5) * 2 * scale
    for group in tied:
        for key in group[1:]:
            state[key] = state[group[0]]
    return state


def authors_file(tmp_path, task: str, prefix: str = "") -> tuple[Path, dict]:
    """A file as the authors' train.py saves it ({'epoch', 'state_dict', 'optimizer'}), random tensors."""
    known = facts(TASKS[task])
    state = drawn([(k, tuple(shape)) for k, shape, _ in known["keys"]], known["tied"])
    path = tmp_path / f"model_{task}.pth"
    torch.save({"epoch": 3000, "state_dict": {prefix + k: v for k, v in state.items()}, "optimizer": {}}, path)
    return path, state


@pytest.mark.parametrize("task", TASKS)
def test_state_dict_is_the_authors_key_for_key(task):
    """Same keys in the same order, shapes and dtypes; the same parameter count; the tied keys one tensor."""
    known, entry = facts(TASKS[task]), next(w for w in WEIGHTS if w.variant == task)
    with torch.device("meta"):
        net = MPRNet(**entry.net)
    state = net.state_dict(keep_vars=True)
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()] == known["keys"]
    assert sum(p.numel() for p in net.parameters()) == known["parameters"]
    (group,) = known["tied"]
    assert len(group) == 55 and all(state[k] is state[group[0]] for k in group)  # one PReLU for every CAB


def reference_net() -> tuple[MPRNet, dict]:
    known = facts("mprnet_reference")
    net = MPRNet(**known["m3l_args"])
    assert list(net.state_dict()) == known["keys"]
    net.load_state_dict(drawn([(k, tuple(v.shape)) for k, v in net.state_dict().items()], known["tied"]))
    return net, known


def test_equals_the_authors_network_on_their_recorded_outputs():
    """All three stages' images, in eval (``stages``) and training mode (``forward`` + ``stage_outputs``)."""
    net, known = reference_net()
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    expected = [torch.tensor(values).view(1, 3, 16, 24) for values in known["stages"]]
    with torch.no_grad():
        assert net.eval()(x).sub(expected[0]).abs().max() < TOLERANCE and net.stage_outputs is None
        for got, want in zip(net.stages(x), expected):
            assert (got - want).abs().max() < TOLERANCE
        last = net.train()(x)
    for got, want in zip((last, *net.stage_outputs), expected):
        assert (got - want).abs().max() < TOLERANCE


def test_training_loss_is_the_authors_sum_over_the_stages():
    """RestorationModule adds the loss of each of the net's ``stage_outputs``: with CharbonnierEdgeLoss, the
    authors' ``sum(char) + 0.05 sum(edge)``; EdgeLoss alone is theirs."""
    from m3l.engine.losses import CharbonnierEdgeLoss, EdgeLoss
    from m3l.engine.restoration import RestorationModule

    net, known = reference_net()
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    target = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    module = RestorationModule(net, loss=CharbonnierEdgeLoss())
    module.log = lambda *a, **k: None
    loss = module.training_step({"input": x, "target": target}, 0)
    assert loss.item() == pytest.approx(known["loss"], rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        edge = sum(EdgeLoss()(image, target) for image in net.eval().stages(x))
    assert edge.item() == pytest.approx(known["edge_sum"], rel=1e-5)


def test_warmup_then_cosine_is_the_authors_schedule():
    """Their train.py: GradualWarmupScheduler(multiplier=1, total_epoch=3) stepped once before training (lr of
    epoch e = 2e-4 e / 3 for e = 1, 2, 3), then CosineAnnealingLR(T_max=epochs - 3, eta_min=1e-6) from epoch 4 in
    the closed form of their torch 1.1 (later torch's recursive form, under their scheduler's direct get_lr call,
    gives epoch 4 a lr above 2e-4 and shifts the cosine by an epoch)."""
    import math

    from m3l.engine.schedules import warmup_then_cosine

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=2e-4)
    schedule, lrs = warmup_then_cosine(optimizer, warmup=3, T_max=10, eta_min=1e-6), []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    cosine = [1e-6 + (2e-4 - 1e-6) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    assert lrs == pytest.approx([2e-4 / 3, 4e-4 / 3, 2e-4, *cosine], rel=1e-6)


def test_pads_by_reflection_to_a_multiple_of_8_as_the_authors_demo():
    net, _ = reference_net()
    x = torch.rand(2, 3, 13, 21)
    with torch.no_grad():
        padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # demo.py: reflect to 16 x 24, run, crop
        expected = [image[..., :13, :21] for image in net.eval().stages(padded)]
        assert (net(x) - expected[0]).abs().max() < TOLERANCE
        net.train()(x)
    assert all((a - b).abs().max() < TOLERANCE for a, b in zip(net.stage_outputs, expected[1:]))


@pytest.mark.parametrize("task,prefix", [("deblurring", ""), ("deraining", "module."), ("denoising", "")])
def test_authors_files_load_with_the_architecture_they_imply(tmp_path, task, prefix):
    path, authors = authors_file(tmp_path, task, prefix)
    entry = next(w for w in WEIGHTS if w.variant == task)
    layout, state, net_args = _layouts.convert(path)
    assert layout.name == "mprnet" and net_args == {**entry.net, "kernel_size": 3, "reduction": 4, "bias": False}
    assert [name for name, known in _layouts.all_layouts().items() if known.detect(_layouts.read(path))] == ["mprnet"]
    assert state.keys() == authors.keys() and all(torch.equal(state[k], authors[k]) for k in authors)
    net = MPRNet(**net_args)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.stage3_orsnet.orb2.body[3].body[1].weight, authors["shallow_feat1.1.body.1.weight"])


def test_misfit_files_are_refused_in_one_line(tmp_path):
    path, authors = authors_file(tmp_path, "deraining")
    cases = {"lacks key stage2_encoder.csff_dec3.weight": {k: v for k, v in authors.items()
                                                          if k != "stage2_encoder.csff_dec3.weight"},
             r"unexpected key stage9\.weight": {**authors, "stage9.weight": torch.zeros(1)},
             r"sam12\.conv1\.weight has shape \(3, 3\)": {**authors, "sam12.conv1.weight": torch.zeros(3, 3)},
             r"must be convolutions' weights": {**authors, "tail.weight": torch.zeros(3)}}
    for message, state in cases.items():
        torch.save({"state_dict": state}, tmp_path / "bad.pth")
        with pytest.raises(M3LError, match=message) as error:
            _layouts.convert(tmp_path / "bad.pth")
        assert "\n" not in str(error.value)
    torch.save({"state_dict": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, tmp_path / "other.pth")
    assert not FAMILY.layouts[0].detect(_layouts.read(tmp_path / "other.pth"))


def test_weights_entries_are_the_authors_release():
    from m3l import hub

    drive = "https://drive.google.com/uc?export=download&id="
    ids = {"deblurring": "1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb", "deraining": "1O3WEJbcat7eTY6doXWeorAbQ1l_WmMnM",
           "denoising": "1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw"}
    assert [w.variant for w in FAMILY.weights] == list(ids)  # pretrained=True: deblurring
    for entry in FAMILY.weights:
        assert hub.WEIGHTS[entry.name] == entry and entry.layout == "mprnet" and entry.sha256 is None
        assert entry.url == drive + ids[entry.variant] and entry.released_name == f"model_{entry.variant}.pth"
        assert entry.target == "m3l.models.mprnet.MPRNet"
    width = {w.variant: (w.net["width"], w.net["unet_step"], w.net["orsnet_extra"]) for w in FAMILY.weights}
    assert width == {"deblurring": (96, 48, 32), "deraining": (40, 20, 16), "denoising": (80, 48, 32)}
    deblurring, deraining, denoising = FAMILY.weights
    assert deblurring.metrics == {"gopro/gopro_blur/psnr": 32.66, "gopro/gopro_blur/ssim": 0.959}
    assert deraining.metrics["rain100l/rain/psnr"] == 36.40 and deraining.metrics["rain100h/rain/psnr"] == 30.41
    psnrs = [v for k, v in deraining.metrics.items() if k.endswith("psnr")]
    assert len(psnrs) == 5 and round(sum(psnrs) / 5, 2) == 32.73  # the paper's average
    assert denoising.metrics == {"sidd/real/psnr": 39.71, "sidd/real/ssim": 0.958}


def compose(command: str, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return hydra_compose(command, overrides=overrides)


@pytest.mark.parametrize("entry", WEIGHTS, ids=lambda w: w.variant)
def test_each_entry_protocol_composes_to_its_sets(entry):
    cfg = compose("test", ["model=mprnet", *(o.replace("{data_root}", "/sets") for o in entry.protocol)])
    assert {k.split("/")[0] for k in entry.metrics} == set(cfg.data.test_sets)
    assert all(folder.startswith("/sets/") for folder in cfg.data.test_sets.values())
    assert bool(cfg.metrics.get("y_channel")) == (entry.variant == "deraining")
    assert cfg.data.degradation == next(iter(entry.metrics)).split("/")[1]


def test_paper_preset_and_cpu_default():
    cfg = compose("train", ["model=mprnet", "data=paired", "preset=paper", "data_root=/sets", "trainer.gpus=4"])
    default = compose("train", ["model=mprnet"])
    assert (cfg.net.width, cfg.net.unet_step, cfg.net.orsnet_extra, cfg.net.orsnet_blocks) == (96, 48, 32, 8)
    assert cfg.data.patch_size == 256 and cfg.data.train_batch_size == 4 and cfg.data.train_dir == "/sets/gopro/train"
    assert cfg.loss._target_ == "m3l.engine.losses.CharbonnierEdgeLoss" and cfg.loss.edge_weight == 0.05
    assert cfg.optimizer.lr == 2e-4 and cfg.scheduler.warmup == 3 and cfg.scheduler.T_max == 2997
    assert cfg.scheduler_interval == "epoch" and cfg.trainer.max_epochs == 3000
    assert default.net.width == 16 and default.data.train_dir is None and default.loss.eps == 1e-6


@pytest.mark.slow
def test_mprnet_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    net = ["net.width=4", "net.unet_step=4", "net.orsnet_extra=4", "net.orsnet_blocks=1"]
    train = ["trainer.max_epochs=1", "data.patches_per_epoch=4", "data.train_batch_size=2", "data.deadleaves.count=2",
             "data.deadleaves.size=64", "data.patch_size=32"]
    run_m3l("train", "model=mprnet", *net, *train, *QUICK, "checkpoint_out=mprnet.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)}, mode="RGB")
    run_m3l("test", "model=mprnet", *QUICK, "checkpoint=mprnet.ckpt", "data.test_sets={S: set}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["motion19+sigma2"] and rows.psnr.notna().all()
    run_m3l("correct", "model=mprnet", *QUICK, "checkpoint=mprnet.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (21, 33, 3)


@pytest.mark.slow
def test_mprnet_corrects_with_an_authors_file(run_m3l, tmp_path):
    """net.pretrained=FILE in the authors' layout: the architecture comes from the file."""
    path, _ = authors_file(tmp_path, "deraining", "module.")
    write_images(tmp_path / "in", {"x.png": (45, 30)}, mode="RGB")
    run_m3l("correct", "model=mprnet", f"net.pretrained={path}", "data.correct_dir=in", "serializer.root_dir=out",
            *QUICK)
    assert np.asarray(Image.open(tmp_path / "out" / "x.png")).shape == (30, 45, 3)
