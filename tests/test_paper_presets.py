"""preset=paper picks each model's own published protocol (m3l/configs/protocol/paper/<model>.yaml)."""

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from m3l.run.common import register_search_path

# model: (extra overrides, train folder, test set names, total batch, max_steps or epochs, optimizer lr)
FAMILIES = {
    "dncnn": ([], "train400", {"set12", "bsd68"}, 128, ("max_epochs", 50), 1e-3),
    "dncnn3": ([], "train291", {"live1_gray", "classic5", "bsd68"}, 128, ("max_epochs", 50), 1e-3),
    "ffdnet": ([], "trainH", {"set12", "bsd68"}, 64, ("max_steps", 1_000_000), 1e-4),
    "drunet": ([], "trainH", {"set12", "bsd68"}, 64, ("max_steps", 500_000), 1e-4),
    "arcnn": ([], "bsds500", {"live1_gray", "classic5"}, 128, ("max_steps", 1_000_000), 5e-4),
    "fbcnn": ([], "div2k_flickr2k", {"live1_gray", "classic5"}, 128, ("max_steps", 2_000_000), 2e-5),
    "nafnet": (["data=paired"], "gopro/train", {"gopro"}, 32, ("max_steps", 200_000), 1e-3),
    "restormer": (["data=paired"], "gopro/train", {"gopro"}, 64, ("max_steps", 300_000), 3e-4),
    "nafnet_sidd": (["data=paired"], "sidd_medium", {"sidd"}, 32, ("max_steps", 200_000), 1e-3),
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


def test_restormer_keeps_the_lr_for_92k_iterations_then_anneals_over_208k():
    _, cfg = compose_train(["model=restormer", "data=paired", "preset=paper", "data_root=/s"])
    assert cfg.scheduler._target_ == "m3l.engine.schedules.constant_then_cosine"
    assert (cfg.scheduler.constant, cfg.scheduler.T_max, cfg.scheduler.eta_min) == (92000, 208000, 1e-6)
    assert cfg.trainer.gradient_clip_val == 0.01


@pytest.mark.parametrize("model", ["nafnet", "nafnet_sidd", "restormer"])
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


@pytest.mark.parametrize("gpus", [8, 1, 2])
def test_restormer_trains_progressively_as_the_authors(gpus):
    """The authors' iters / gt_sizes / mini_batch_sizes (per GPU on 8 GPUs): the same total batch per stage on
    any device count, the stages summing to the 300k iterations."""
    _, cfg = compose_train(["model=restormer", "data=paired", "preset=paper", "data_root=/s", f"trainer.gpus={gpus}"])
    stages = [(s.steps, s.patch_size, s.batch_size * gpus) for s in cfg.data.progressive]
    assert stages == [(92000, 128, 64), (64000, 160, 40), (48000, 192, 32), (36000, 256, 16), (36000, 320, 8),
                      (24000, 384, 8)]
    assert sum(steps for steps, _, _ in stages) == cfg.trainer.max_steps


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


# Scaled down: the same protocol (its data folders, loss, optimizer, schedule, test sets and degradations), with
# the smallest nets, 2 patches of 32 px a step and 1-2 steps.
SHRINK = {
    "dncnn": ["net.depth=3", "net.width=8", "trainer.max_epochs=1"],
    "dncnn3": ["net.depth=3", "net.width=8", "trainer.max_epochs=1"],
    "ffdnet": ["net.depth=3", "net.width=8", "trainer.max_steps=2"],
    "drunet": ["net.widths=[4,8,8,8]", "net.blocks=1", "trainer.max_steps=2"],
    "arcnn": ["net.widths=[4,4,4]", "trainer.max_steps=2"],
    "fbcnn": ["net.widths=[4,8,8,8]", "net.blocks=1", "net.embedding=8", "trainer.max_steps=2"],
    "nafnet": ["net.width=8", "net.encoder_blocks=[1,1,1,1]", "trainer.max_steps=2"],
    "nafnet_sidd": ["net.width=8", "net.encoder_blocks=[1,1,1,1]", "net.middle_blocks=1", "trainer.max_steps=2"],
    "restormer": ["net.width=8", "net.num_blocks=[1,1,1,1]", "net.refinement_blocks=1", "trainer.max_steps=2",
                  "scheduler.constant=1",  # 1 flat step, then the cosine
                  "data.progressive=[{steps:1,patch_size:16,batch_size:2},{steps:1,patch_size:32,batch_size:1}]"],
}
TINY_DATA = ["data.patch_size=32", "data.train_batch_size=2", "data.patches_per_epoch=4", "data.num_workers=0",
             "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def write_data_root(root, model):
    """The protocol's folders under ``root``, with 2-4 small images each."""
    from conftest import write_images

    sets = {"dncnn": ["train400", "set12", "bsd68"], "dncnn3": ["train291", "live1_gray", "classic5", "bsd68"],
            "ffdnet": ["trainH", "set12", "bsd68"],
            "drunet": ["trainH", "set12", "bsd68"], "arcnn": ["bsds500", "live1_gray", "classic5"],
            "fbcnn": ["div2k_flickr2k", "live1_gray", "classic5"]}
    if model in sets:
        for i, name in enumerate(sets[model]):
            write_images(root / name, {f"{k}.png": (48, 40) for k in range(4 if i == 0 else 2)}, seed=i)
        return
    if model == "nafnet_sidd":  # SIDD Medium's names: <scene>/<id>_NOISY_SRGB_010.PNG beside <id>_GT_SRGB_010.PNG
        for i, folder in enumerate(["sidd_medium/0001_001_S6_00100_00060_3200_L", "sidd_val"]):
            sizes = {f"{k:04d}_NOISY_SRGB_010.png": (40, 36) for k in range(2)}
            write_images(root / folder, sizes, mode="RGB", seed=i)
            write_images(root / folder, {n.replace("NOISY", "GT"): s for n, s in sizes.items()}, mode="RGB", seed=i + 10)
        return
    for i, split in enumerate(["train", "test"]):  # GoPro's layout: <sequence>/blur/ and <sequence>/sharp/
        sizes = {f"GOPR0{k}/blur/{k:06d}.png": (40, 36) for k in range(2)}
        write_images(root / "gopro" / split, sizes, mode="RGB", seed=i)
        write_images(root / "gopro" / split, {n.replace("/blur/", "/sharp/"): s for n, s in sizes.items()},
                     mode="RGB", seed=i + 10)


@pytest.mark.slow
@pytest.mark.parametrize("model", FAMILIES)
def test_paper_protocol_runs_scaled_down(model, run_m3l, tmp_path):
    """Train with the model's paper protocol on a tiny data folder, then test: the protocol's test sets and
    degradations come out as rows."""
    write_data_root(tmp_path / "sets", model)
    args = [f"model={model}", *FAMILIES[model][0], "preset=paper", "data_root=sets", *SHRINK[model], *TINY_DATA]
    run_m3l("train", *args, "checkpoint_out=model.ckpt", "hydra.run.dir=train")
    run_m3l("test", *args, "checkpoint=model.ckpt", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert set(rows.dataset) == FAMILIES[model][2]
    expected = {"dncnn": {"sigma15", "sigma25", "sigma50"}, "arcnn": {"jpeg10", "jpeg20", "jpeg30", "jpeg40"},
                "nafnet": {"gopro_blur"}, "nafnet_sidd": {"sidd"}}
    expected["dncnn3"] = expected["arcnn"] | expected["dncnn"]
    expected.update(ffdnet=expected["dncnn"], drunet=expected["dncnn"], fbcnn=expected["arcnn"],
                    restormer=expected["nafnet"])
    assert set(rows.degradation) == expected[model] and rows.psnr.notna().all()


@pytest.mark.slow
def test_a_model_without_a_paper_protocol_is_refused_in_one_line(run_m3l):
    result = run_m3l("train", "model=per_frame_dncnn", "preset=paper", "data_root=sets", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "preset=paper has no protocol for model=per_frame_dncnn" in result.stderr
    assert "protocol/paper/per_frame_dncnn.yaml" in result.stderr
