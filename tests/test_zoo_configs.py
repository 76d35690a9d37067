"""Every zoo model config composes, builds its net and data, and restores a batch of its own data (in-process)."""

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from m3l.checkpoint import override
from m3l.models._registry import families, family_of
from m3l.run.common import build_module, register_search_path


def image_models() -> dict[str, list[str]]:
    """``{model config: tiny net overrides}`` of the built-in model configs whose net is an image family's, with
    that family's tiny settings (from the registry: a new family's configs are tested without editing this file;
    the video models: tests/test_video.py)."""
    from importlib.resources import files

    models = {}
    with initialize_config_module("m3l.configs", version_base="1.3"):
        for config in sorted((files("m3l.configs") / "model").iterdir(), key=lambda p: p.name):
            name = config.name.removesuffix(".yaml")
            family = family_of(compose("train", overrides=[f"model={name}"]).net._target_)
            if family and not hasattr(families()[family].net, "frames"):
                tiny = [override(key, value) for key, value in families()[family].tiny.items()]
                models[name] = tiny + ["net.tlc_size=16"] * (family == "nafnet")  # NAFNet's test-time windows too
    return models


IMAGE_MODELS = image_models()


@pytest.fixture(autouse=True)
def no_user_configs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("M3L_CACHE", str(tmp_path / "cache"))
    register_search_path()


@pytest.mark.parametrize("model", list(IMAGE_MODELS))
def test_model_config_trains_a_step_on_its_own_data(model):
    overrides = [f"model={model}", *IMAGE_MODELS[model], "data.deadleaves.count=2", "data.deadleaves.size=64",
                 "data.patches_per_epoch=2", "data.train_batch_size=2", "data.num_workers=0"]
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.name == model
    module, data = build_module(cfg), instantiate(cfg.data, _convert_="all")
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    output = module.restore(batch)
    assert output.shape == batch["target"].shape
    if model != "identity":
        module.log = lambda *a, **k: None
        module.training_step(batch, 0).backward()
        assert any(p.grad is not None for p in module.parameters())


def test_degradation_group_is_chosen_on_the_command_line():
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=dncnn", "degradation@data.degradation=jpeg30"])
        blur = compose("train", overrides=["model=nafnet"])
        blind = compose("train", overrides=["model=dncnn_b"])
        fbcnn = compose("train", overrides=["model=fbcnn"])
    assert cfg.data.degradation.quality == 30 and cfg.data.degradation._target_.endswith(".JPEG")
    assert instantiate(blur.data.degradation).name == "motion19+sigma2" and blur.data.channels == 3
    assert instantiate(blind.data.degradation).name == "sigma0-55" and blind.net.depth == 20
    assert instantiate(fbcnn.data.degradation).name == "jpeg10-95" and fbcnn.metrics.psnrb
