"""Optuna sweeps: a real 3-trial study through hydra-optuna-sweeper on a tiny budget."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import TINY


def best_score(checkpoint) -> float:
    """The best validation PSNR a trial's ModelCheckpoint recorded (the one monitoring it: another, unmonitored,
    keeps last.ckpt)."""
    callbacks = torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"]
    (state,) = [v for k, v in callbacks.items() if k.startswith("ModelCheckpoint") and v.get("monitor") == "val/psnr"]
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


@pytest.mark.parametrize("sqlalchemy", ["2.0.58", "1.4.54"])
def test_a_database_study_needs_sqlalchemy_1_with_optuna_2_said_in_one_line(monkeypatch, sqlalchemy):
    """The optuna extra does not pin SQLAlchemy<2 (it held Snakemake at 9.16): optuna 2 then keeps studies in memory,
    and a database storage with SQLAlchemy 2 (an AssertionError deep in optuna) is refused in one line first."""
    import importlib.metadata

    from m3l.errors import M3LError
    from m3l.run.common import require_plugins

    real = importlib.metadata.version
    versions = {"optuna": "2.10.1", "sqlalchemy": sqlalchemy}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions.get(name.lower()) or real(name))
    require_plugins(["hparams_search=dncnn_optuna"])  # in memory: either SQLAlchemy
    storage = ["hparams_search=dncnn_optuna", "hydra.sweeper.storage=sqlite:///study.db"]
    if sqlalchemy.startswith("1."):
        require_plugins(storage)
        return
    with pytest.raises(M3LError, match=r"hydra.sweeper.storage=sqlite:///study.db: optuna 2.10.1 keeps a study in a "
                                       r"database only with SQLAlchemy 1 \(2.0.58 is installed\): pip install"):
        require_plugins(storage)


def test_the_optuna_extra_does_not_hold_snakemake_back():
    """SQLAlchemy<2 in the optuna extra made .[dev] / .[all] resolve Snakemake 9.16 (9.17 on needs SQLAlchemy 2)."""
    import tomllib

    from conftest import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [r for r in extras["optuna"] if r.lower().startswith("sqlalchemy")], extras["optuna"]
