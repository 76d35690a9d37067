"""Train a model: ``python -m m3l.run.train model=NAME [overrides]``.

Keeps ``checkpoints/best.ckpt`` (best validation PSNR) and ``checkpoints/last.ckpt`` in the run
directory. ``checkpoint_out=PATH`` also copies the best checkpoint to exactly PATH; ``resume=PATH``
(or ``resume=auto``: the run directory's ``last.ckpt``, else the newest one of an earlier run of the same model
and settings, see :func:`latest_run`) continues an interrupted run.
Returns ``optimized_metric`` (best validation PSNR by default) for Hydra sweepers such as Optuna.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from m3l.errors import M3LError
from m3l.run.common import build_datamodule, build_module, build_trainer, entry, instantiate_all


# Keys that may differ between a run and the one resuming it: where it runs, how it resumes, a longer budget.
RESUME_IGNORES = ("run_dir", "resume", "checkpoint_out", "trainer.max_epochs", "trainer.max_steps")


def _settings(config: dict) -> dict:
    """``config`` without the keys of RESUME_IGNORES, its own run dir (in checkpoint paths...) written ``<run_dir>``."""
    text = OmegaConf.to_yaml(OmegaConf.create(config))
    config = OmegaConf.create(text.replace(str(config["run_dir"]), "<run_dir>") if config.get("run_dir") else text)
    for key in RESUME_IGNORES:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(config, parent) if parent else config
        if isinstance(node, DictConfig) and leaf in node:
            del node[leaf]
    return OmegaConf.to_container(config)


def latest_run(cfg: DictConfig) -> Path | None:
    """``resume=auto``: this run dir's ``last.ckpt``, else the newest ``last.ckpt`` of a sibling run dir (the
    timestamped folders of ``runs/train/<name>/``) whose ``run.yaml`` records the same settings; None if none.
    """
    import yaml

    run_dir = Path(cfg.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    settings = _settings(OmegaConf.to_container(cfg, resolve=True))
    candidates = [d / "checkpoints" / "last.ckpt" for d in run_dir.parent.iterdir() if d != run_dir] \
        if run_dir.parent.is_dir() else []
    for candidate in sorted((c for c in candidates if c.is_file()), key=lambda c: c.stat().st_mtime, reverse=True):
        record = candidate.parent.parent / "run.yaml"
        config = (yaml.safe_load(record.read_text()) or {}).get("config") if record.is_file() else None
        if config is not None and _settings(config) == settings:
            return candidate
    print(f"resume=auto: no earlier run with these settings in {run_dir.parent} (looked for "
          f"*/checkpoints/last.ckpt with the same run.yaml config); training starts over")
    return None


def resume_path(cfg: DictConfig) -> str | None:
    if cfg.resume in (None, "auto"):
        last = latest_run(cfg) if cfg.resume == "auto" else None
        if last is not None:
            print(f"resume=auto: continuing from {last}")
        return None if last is None else str(last)
    if not Path(cfg.resume).is_file():
        raise M3LError(f"resume: checkpoint not found: {cfg.resume}")
    return str(cfg.resume)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def train(cfg: DictConfig) -> float | None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    from m3l.callbacks import StoreConfig

    module, datamodule = build_module(cfg), build_datamodule(cfg)
    callbacks = [*instantiate_all(cfg.callbacks), StoreConfig(OmegaConf.to_container(cfg, resolve=True))]
    trainer = build_trainer(cfg, callbacks)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg))

    checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint and (checkpoint.best_model_path or checkpoint.last_model_path)
    if cfg.checkpoint_out:
        if best:
            copy_atomic(best, cfg.checkpoint_out)
        else:
            trainer.save_checkpoint(cfg.checkpoint_out)
        print(f"final checkpoint: {cfg.checkpoint_out}")
    elif best:
        print(f"best checkpoint: {best}")
    score = checkpoint.best_model_score if checkpoint is not None else None
    if score is None:
        score = trainer.callback_metrics.get(cfg.optimized_metric)
    return None if score is None else float(score)


main = entry(train, "train")

if __name__ == "__main__":
    main()
