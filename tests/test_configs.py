"""Compose the real configs in-process, as users' command lines would."""

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from m3l.run.common import build_trainer, register_search_path


@pytest.fixture(autouse=True)
def no_user_configs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    register_search_path()


def compose_m3l(name, overrides):
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", ["train", "test", "correct"])
def test_every_primary_config_composes_with_dncnn(name):
    cfg = compose_m3l(name, ["model=dncnn"])
    assert cfg.task == name and cfg.name == "dncnn"
    assert cfg.net._target_ == "m3l.models.dncnn.DnCNN" and cfg.net.channels == 1
    assert cfg.serializer._target_ == "m3l.io.serializer.ImageSerializer"
    assert cfg.trainer.max_epochs == 5  # the model config's value wins over the trainer default


def test_color_model():
    cfg = compose_m3l("train", ["model=dncnn_color"])
    assert cfg.net.channels == 3 and cfg.name == "dncnn_color"


def test_paper_preset_needs_only_the_data_folder():
    cfg = compose_m3l("train", ["model=dncnn", "preset=paper", "data_root=/sets"])
    assert cfg.data.train_dir == "/sets/train400" and cfg.data.test_sets.bsd68 == "/sets/bsd68"
    assert cfg.data.train_batch_size == 128 and cfg.trainer.max_epochs == 50
    assert [d.sigma for d in cfg.data.test_degradations] == [15, 25, 50]


def test_vulcan_cluster_scales_with_trainer_gpus():
    cfg = compose_m3l("train", ["model=dncnn", "cluster=vulcan", "trainer.gpus=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.nodes, launcher.mem_gb, launcher.timeout_min) == (4, 1, 128, 2160)
    assert launcher.additional_parameters == {"qos": "high", "gres": "gpu:p6000:4", "signal": "USR1@120"}
    cfg = compose_m3l("train", ["model=dncnn", "cluster=vulcan", "cluster.qos=medium"])
    assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.timeout_min) == (1, 4320)


def test_trainer_gpus_maps_to_accelerator_and_devices(monkeypatch):
    import pytorch_lightning as pl

    seen = {}
    monkeypatch.setattr(pl, "Trainer", lambda **kwargs: seen.update(kwargs))
    cfg = compose_m3l("train", ["model=dncnn", "trainer.gpus=2"])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = "/tmp/run"
    build_trainer(cfg, logger=False)
    assert seen["accelerator"] == "gpu" and seen["devices"] == 2 and "gpus" not in seen
    cfg = compose_m3l("train", ["model=dncnn"])
    OmegaConf.set_struct(cfg, False)
    cfg.run_dir = "/tmp/run"
    build_trainer(cfg, logger=False)
    assert seen["accelerator"] == "auto" and seen["devices"] == 1 and "gpus" not in seen


def test_speed_options_apply_to_the_module():
    import torch

    from m3l.run.common import build_module

    cfg = compose_m3l("train", ["model=dncnn", "net.depth=3", "net.width=8", "channels_last=true", "compile=true",
                                "tile=64", "tile_overlap=8"])
    module = build_module(cfg)
    assert module.tiling == (64, 8)
    assert module.net._compiled_call_impl is not None  # compiled in place: the state dict keeps plain keys
    assert module.net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all("_orig_mod" not in key for key in module.state_dict())
