"""test / correct / export with ``checkpoint=PATH`` take the net settings the checkpoint was trained with (its recorded
``m3l_config.net``): the training's net overrides need not be repeated, a contradicting one is named, and nothing
read from the checkpoint chooses code."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from PIL import Image

from conftest import REPO, write_images

from m3l.run.common import checkpoint_net_settings, register_search_path


def settings(tmp_path, net: dict, overrides: list[str], capsys, contradicted: list | None = None) -> tuple:
    """The composed test config of ``overrides`` after checkpoint_net_settings read a checkpoint recording ``net``;
    and what it printed (stdout, stderr). ``contradicted`` (a list) receives what it returned."""
    path = tmp_path / "recorded.ckpt"
    torch.save({"state_dict": {}, "m3l_config": {"net": net}}, path)
    overrides = [*overrides, f"checkpoint={path}"]
    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("test", overrides=overrides)
        said = checkpoint_net_settings(cfg, overrides, "test")
    if contradicted is not None:
        contradicted[:] = said
    printed = capsys.readouterr()
    return cfg, printed.out, printed.err


DNCNN = {"_target_": "m3l.models.dncnn.DnCNN", "channels": 1, "depth": 3, "width": 8, "batch_norm": True,
         "pretrained": None}


def test_the_checkpoints_net_keys_fill_those_the_command_line_did_not_set(tmp_path, capsys):
    cfg, out, err = settings(tmp_path, DNCNN, ["model=dncnn", "net.depth=3"], capsys)
    assert (cfg.net.depth, cfg.net.width, cfg.net.batch_norm) == (3, 8, True)
    assert "net.width=8" in out and "net.depth" not in out and not err

    cfg, out, err = settings(tmp_path, {**DNCNN, "channels": 3}, ["model=dncnn"], capsys)
    assert cfg.data.channels == 3 and cfg.net.channels == 3  # channels follows data.channels: that is set
    assert "data.channels=3" in out


def test_a_contradicting_command_line_key_is_named_with_both_values(tmp_path, capsys):
    contradicted = []
    cfg, out, err = settings(tmp_path, DNCNN, ["model=dncnn", "net.width=16", "data.channels=3"], capsys,
                             contradicted)
    assert cfg.net.width == 16 and cfg.net.depth == 3  # the command line wins; the rest comes from the checkpoint
    said = "\n".join(contradicted)  # run() says them: in its one error line when the net does not fit, else a note
    assert "net.width=16 on the command line, but checkpoint" in said and "trained with net.width=8" in said
    assert "data.channels=3 on the command line" in said and "net.channels=1" in said
    assert len(contradicted) == 2 and not err.strip()


def test_nothing_read_from_the_checkpoint_chooses_code(tmp_path, capsys):
    cfg, out, err = settings(tmp_path, {**DNCNN, "_target_": "os.system", "width": 8}, ["model=dncnn"], capsys)
    assert cfg.net._target_ == "m3l.models.dncnn.DnCNN" and cfg.net.width == 64  # another class: nothing taken
    assert "trained with the net os.system" in err and "not used" in err
    hostile = {**DNCNN, "width": "${oc.env:HOME}", "batch_norm": {"_target_": "os.system"}, "extra": 1}
    cfg, out, err = settings(tmp_path, hostile, ["model=dncnn"], capsys)
    assert cfg.net.width == 64 and cfg.net.batch_norm is True and "extra" not in cfg.net  # refused, not resolved
    assert cfg.net.depth == 3


def test_a_nested_net_config_is_followed_where_its_class_is_the_configs(tmp_path, capsys):
    net = {"_target_": "m3l.models.video.PerFrame", "pretrained": None,
           "net": {**DNCNN, "depth": 4, "width": 6, "batch_norm": False}}
    cfg, out, err = settings(tmp_path, net, ["model=per_frame_dncnn", "net.net.width=6"], capsys)
    assert (cfg.net.net.depth, cfg.net.net.width, cfg.net.net.batch_norm) == (4, 6, False)
    assert "net.net.depth=4" in out and not err


@pytest.mark.slow
def test_test_and_correct_need_not_repeat_the_trainings_net_overrides(run_m3l, tmp_path, tiny_checkpoint):
    """``python -m m3l.run.train model=dncnn net.width=8 net.depth=3`` (the session's tiny checkpoint), then test and
    correct with ``model=dncnn checkpoint=CKPT`` alone."""
    write_images(tmp_path / "small", {"a.png": (40, 32), "b.png": (32, 40)})
    common = ["model=dncnn", f"checkpoint={tiny_checkpoint}", "data.num_workers=0", "trainer.enable_progress_bar=false"]
    result = run_m3l("test", *common, "data.test_sets={small: small}", "hydra.run.dir=test")
    assert "net.depth=3 net.width=8" in result.stdout
    assert pd.read_csv(tmp_path / "test" / "metrics.csv")["n_images"].tolist() == [2]
    recorded = yaml.safe_load((tmp_path / "test" / "run.yaml").read_text())
    assert "depth: 3" in yaml.safe_dump(recorded) and "width: 8" in yaml.safe_dump(recorded)  # what ran is recorded
    run_m3l("correct", *common, "data.correct_dir=small", "serializer.root_dir=out", "hydra.run.dir=correct")
    assert Image.open(tmp_path / "out" / "a.png").size == (40, 32)

    failed = run_m3l("test", *common, "net.width=16", "data.test_sets={small: small}", check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "net.width=16 on the command line" in failed.stderr and "trained with net.width=8" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1  # one line: the contradiction is why the net does not fit


@pytest.mark.slow
def test_the_users_own_net_settings_come_from_the_checkpoint(run_m3l, tmp_path, m3l_env):
    """The README's own model (examples/own_model), trained with net.n_layers=3 net.width=8, tested and corrected
    without them."""
    shutil.copytree(REPO / "examples" / "own_model" / "my_library", tmp_path / "src" / "my_library")
    shutil.copytree(REPO / "examples" / "own_model" / "m3l_config", tmp_path / "xdg" / "m3l")
    write_images(tmp_path / "images", {f"{i}.png": (48, 40) for i in range(3)})
    user = {"PYTHONPATH": str(tmp_path / "src"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    data = ["model=my_model", "data.root_dir=images", "data.num_workers=0", "trainer.enable_progress_bar=false"]
    run_m3l("train", *data, "net.n_layers=3", "net.width=8", "data.train_batch_size=4", "trainer.max_epochs=1",
            "checkpoint_out=my.ckpt", "hydra.run.dir=run", env=user)
    result = run_m3l("test", *data, "checkpoint=my.ckpt", "metrics_csv=metrics.csv", "hydra.run.dir=test", env=user)
    assert "net.n_layers=3 net.width=8" in result.stdout
    assert pd.read_csv(tmp_path / "metrics.csv")["test/psnr"][0] > 0
    run_m3l("correct", *data, "checkpoint=my.ckpt", "data.correct_dir=images", "serializer.root_dir=out", env=user)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png", "2.png"]
