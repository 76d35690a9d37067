"""Where a training run's time goes: timing.json (m3l.engine.timing.TimeSplit, on by default)."""

from __future__ import annotations

import json

from conftest import TINY


def test_a_training_run_writes_its_time_split(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=run")
    split = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert set(split) == {"fit", "train_steps", "data_wait", "validation", "other", "steps"}
    assert split["steps"] == 4  # 32 patches in batches of 8, one epoch
    parts = split["train_steps"] + split["data_wait"] + split["validation"] + split["other"]
    assert all(split[k] >= 0 for k in split) and split["train_steps"] > 0 and split["validation"] > 0
    assert abs(parts - split["fit"]) < 0.01 + 1e-3 * split["fit"]


def test_no_callbacks_writes_no_split(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "callbacks=none", "hydra.run.dir=run")
    assert not (tmp_path / "run" / "timing.json").exists()
