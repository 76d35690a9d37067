"""preset=paper for model=fastdvdnet: the authors' training protocol (m-tassano/fastdvdnet train_fastdvdnet.py)."""

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from m3l.data.standard_sets import SETS
from m3l.io.clips import write_clip
from m3l.run.common import register_search_path


@pytest.fixture(autouse=True)
def no_user_configs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    register_search_path()


def compose_train(*overrides):
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_fastdvdnet_paper_preset_is_the_authors_protocol():
    cfg = compose_train("model=fastdvdnet", "preset=paper", "data_root=/sets")
    data = cfg.data
    assert (data.train_dir, data.val_dir) == ("/sets/davis_train", "/sets/set8")
    assert dict(data.test_sets) == {"set8": "/sets/set8", "davis_test": "/sets/davis_test"}
    assert {"davis_train", "set8", "davis_test"} <= set(SETS)  # the folders are the registry's names
    assert list(data.degradation.sigma) == [5, 55] and data.per_clip
    assert [d.sigma for d in data.test_degradations] == [10, 20, 30, 40, 50]
    assert (data.channels, data.frames, data.patch_size, data.train_batch_size) == (3, 5, 96, 64)
    assert data.crops_per_epoch // data.train_batch_size == 4000
    assert (list(cfg.net.widths), cfg.net.per_frame, cfg.net.channels) == ([32, 64, 128], 30, 3)
    assert cfg.trainer.max_epochs == 80 and cfg.optimizer.lr == 1e-3 and cfg.loss._target_ == "torch.nn.MSELoss"
    # lr 1e-3, 1e-4 from epoch 51, 1e-6 from epoch 61 (the authors' lr_scheduler: epoch > 50, epoch > 60)
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.optimizer.lr)
    scheduler, lrs = instantiate(cfg.scheduler)(optimizer), []
    for _ in range(cfg.trainer.max_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert cfg.scheduler_interval == "epoch"
    np.testing.assert_allclose([lrs[0], lrs[50], lrs[51], lrs[60], lrs[61], lrs[79]], [1e-3, 1e-3, 1e-4, 1e-4, 1e-6, 1e-6])
    # the total batch stays the authors' 64 on several devices
    assert compose_train("model=fastdvdnet", "preset=paper", "data_root=/s", "trainer.gpus=4").data.train_batch_size == 16


def write_video_root(root):
    """davis_train/, set8/ and davis_test/ under ``root``: small RGB frame folders (sequences)."""
    rng = np.random.default_rng(0)
    for name, clips, frames in (("davis_train", 2, 7), ("set8", 1, 6), ("davis_test", 2, 5)):
        for k in range(clips):
            clip = torch.from_numpy(rng.random((frames, 3, 36, 40), dtype=np.float32))
            write_clip(clip, root / name / f"seq{k}", names=[f"{i:05d}.jpg" for i in range(frames)])


@pytest.mark.slow
def test_fastdvdnet_paper_protocol_runs_scaled_down(run_m3l, tmp_path):
    """The protocol on tiny sequences (smallest net, 2 crops of 32 px a step, one epoch), then its test table:
    Set8 and DAVIS test rows at sigma 10 to 50."""
    write_video_root(tmp_path / "sets")
    args = ["model=fastdvdnet", "preset=paper", "data_root=sets", "net.widths=[4,8,8]", "net.per_frame=2",
            "data.patch_size=32", "data.train_batch_size=2", "data.crops_per_epoch=4", "data.num_workers=0",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    run_m3l("train", *args, "checkpoint_out=model.ckpt", "hydra.run.dir=train")
    run_m3l("test", *args, "checkpoint=model.ckpt", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert set(rows.dataset) == {"set8", "davis_test"}
    assert set(rows.degradation) == {f"sigma{s}" for s in (10, 20, 30, 40, 50)} and rows.psnr.notna().all()
    assert len(rows) == 2 * 5
