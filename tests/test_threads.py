"""The thread budget (m3l.run.common.compute_threads): torch's compute threads leave a core to each training data
worker, so the net and the workers do not fight over the same cores."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import TINY


@pytest.mark.parametrize("task, workers, threads, expected", [
    ("train", 1, None, 3), ("train", 0, None, 4), ("train", 6, None, 1), ("train", 1, 2, 2),
    ("test", 3, None, 4), ("correct", 3, None, 4), ("test", 0, 1, 1),
])
def test_torch_threads_leave_a_core_to_each_training_worker(monkeypatch, task, workers, threads, expected):
    from m3l.run import common

    monkeypatch.setattr(common, "usable_cores", lambda: 4)
    cfg = OmegaConf.create({"task": task, "threads": threads, "data": {"num_workers": workers}})
    assert common.compute_threads(cfg) == expected


@pytest.mark.parametrize("accelerator, task, expected_workers, expected_threads", [
    ("cpu", "train", 0, 8), ("gpu", "train", 3, 5), ("cpu", "test", None, 8),
])
def test_unset_workers_train_in_the_main_process_on_the_cpu(monkeypatch, accelerator, task, expected_workers,
                                                             expected_threads):
    """On the CPU a batch costs about 1 % of a step: a data worker would only take a core from the net."""
    from m3l.data import image_folders
    from m3l.run import common

    monkeypatch.setattr(common, "usable_cores", lambda: 8)
    monkeypatch.setattr(image_folders, "default_workers", lambda: 3)
    cfg = OmegaConf.create({"task": task, "trainer": {"accelerator": accelerator}, "data": {"num_workers": None}})
    assert common.data_workers(cfg) == expected_workers
    assert common.compute_threads(cfg) == expected_threads


def test_a_training_run_records_and_uses_the_budget(run_m3l, tmp_path):
    from m3l.run.common import usable_cores

    args = [a for a in TINY if not a.startswith("data.num_workers")]
    run_m3l("train", "model=dncnn", *args, "data.num_workers=1", "hydra.run.dir=run")
    assert yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["threads"] == max(1, usable_cores() - 1)
    run_m3l("train", "model=dncnn", *TINY, "threads=3", "hydra.run.dir=three")
    assert yaml.safe_load((tmp_path / "three" / "run.yaml").read_text())["threads"] == 3
    unset = [a for a in TINY if not a.startswith("data.num_workers")]
    run_m3l("train", "model=dncnn", *unset, "trainer.accelerator=cpu", "hydra.run.dir=unset")
    info = yaml.safe_load((tmp_path / "unset" / "run.yaml").read_text())
    assert info["threads"] == usable_cores() and info["config"]["data"]["num_workers"] == 0
