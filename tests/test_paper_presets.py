"""preset=paper picks each model's own published protocol (configs/protocol/paper/<model>.yaml)."""

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from m3l.run.common import register_search_path

# model: (extra overrides, train folder, test set names, total batch, max_steps or epochs, optimizer lr)
FAMILIES = {
    "dncnn": ([], "train400", {"set12", "bsd68"}, 128, ("max_epochs", 50), 1e-3),
    "ffdnet": ([], "trainH", {"set12", "bsd68"}, 64, ("max_steps", 1_000_000), 1e-4),
    "drunet": ([], "trainH", {"set12", "bsd68"}, 64, ("max_steps", 500_000), 1e-4),
    "arcnn": ([], "bsds500", {"live1_gray", "classic5"}, 128, ("max_steps", 1_000_000), 5e-4),
    "fbcnn": ([], "div2k_flickr2k", {"live1_gray", "classic5"}, 128, ("max_steps", 2_000_000), 2e-5),
    "nafnet": (["data=paired"], "gopro/train", {"gopro"}, 32, ("max_steps", 200_000), 1e-3),
    "restormer": (["data=paired"], "gopro/train", {"gopro"}, 64, ("max_steps", 300_000), 3e-4),
}


@pytest.fixture(autouse=True)
def no_user_configs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    register_search_path()


def compose_train(overrides):
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False), cfg


@pytest.mark.parametrize("model", FAMILIES)
def test_paper_preset_is_the_models_own_protocol(model):
    extra, train, sets, batch, (limit, value), lr = FAMILIES[model]
    _, cfg = compose_train([f"model={model}", *extra, "preset=paper", "data_root=/sets"])
    assert cfg.data.train_dir == f"/sets/{train}"
    assert set(cfg.data.test_sets) == sets and all(v.startswith("/sets/") for v in cfg.data.test_sets.values())
    assert cfg.data.train_batch_size == batch and cfg.trainer[limit] == value and cfg.optimizer.lr == lr
    if limit == "max_steps" and cfg.scheduler is not None:  # iteration protocols step the scheduler per iteration
        assert cfg.scheduler_interval == "step"
    # without the preset the model keeps its CPU-sized default
    _, default = compose_train([f"model={model}", *extra])
    assert default.data.train_dir is None


@pytest.mark.parametrize("model", ["nafnet", "restormer"])
def test_paper_total_batch_stays_the_authors_on_any_device_count(model):
    """NAFNet / Restormer train on 8 GPUs: the per-device batch is total / devices, the lr unchanged."""
    total = FAMILIES[model][3]
    per_device = {}
    for gpus in (8, 1, 4):
        _, cfg = compose_train([f"model={model}", "data=paired", "preset=paper", "data_root=/s", f"trainer.gpus={gpus}"])
        per_device[gpus] = cfg.data.train_batch_size
        assert cfg.data.train_batch_size * gpus == total and cfg.optimizer.lr == FAMILIES[model][5]
    _, cfg = compose_train([f"model={model}", "data=paired", "preset=paper", "data_root=/s", "trainer.devices=2"])
    assert cfg.data.train_batch_size == total // 2
    assert per_device[8] == total // 8


def test_a_user_config_adds_a_paper_protocol_for_its_own_model(tmp_path):
    """~/.config/m3l/protocol/paper/<model>.yaml is picked like the zoo's."""
    root = tmp_path / "m3l"
    (root / "model").mkdir(parents=True)
    (root / "protocol" / "paper").mkdir(parents=True)
    (root / "model" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - dncnn\n  - _self_\nname: mine\n")
    (root / "protocol" / "paper" / "mine.yaml").write_text(
        "# @package _global_\ndata:\n  train_dir: ${data_root}/mine\ntrainer:\n  max_epochs: 7\n")
    _, cfg = compose_train(["model=mine", "preset=paper", "data_root=/s"])
    assert cfg.data.train_dir == "/s/mine" and cfg.trainer.max_epochs == 7
