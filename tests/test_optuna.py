"""Optuna sweeps: a real 3-trial study through hydra-optuna-sweeper on a tiny budget."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import TINY


def best_score(checkpoint) -> float:
    """The best validation PSNR a trial's ModelCheckpoint recorded."""
    callbacks = torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"]
    (state,) = [v for k, v in callbacks.items() if k.startswith("ModelCheckpoint")]
    return float(state["best_model_score"])


@pytest.mark.slow
def test_three_trial_study_names_the_best_trial(run_m3l, tmp_path):
    tiny = [o for o in TINY if not o.startswith("net.width")]  # the study picks the width
    run_m3l("train", "hparams_search=dncnn_optuna", "hydra.sweeper.n_trials=3", "hydra.sweep.dir=sweep", *tiny)
    sweep = tmp_path / "sweep"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = {}
    for n in range(3):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((sweep / str(n) / ".hydra" / "overrides.yaml").read_text()))
        trials[n] = (best_score(sweep / str(n) / "checkpoints" / "last.ckpt"),
                     float(overrides["optimizer.lr"]), int(overrides["net.width"]))
    assert not (sweep / "3").exists()
    assert len({(lr, width) for _, lr, width in trials.values()}) == 3  # three different points were tried
    score, lr, width = max(trials.values())
    assert results["best_value"] == pytest.approx(score)
    assert results["best_params"] == {"optimizer.lr": pytest.approx(lr), "net.width": width}
    assert 1e-4 <= lr <= 1e-2 and width in (16, 32, 64)
