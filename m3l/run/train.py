"""Train a model: ``python -m m3l.run.train model=NAME [overrides]``.

Keeps ``checkpoints/best.ckpt`` (best validation PSNR) and ``checkpoints/last.ckpt`` in the run
directory. ``checkpoint_out=PATH`` also copies the best checkpoint to exactly PATH; ``resume=PATH``
(or ``resume=auto``: the run directory's ``last.ckpt`` if there is one) continues an interrupted run.
Returns ``optimized_metric`` (best validation PSNR by default) for Hydra sweepers such as Optuna.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from m3l.errors import M3LError
from m3l.run.common import build_datamodule, build_module, build_trainer, entry, instantiate_all


def resume_path(cfg: DictConfig) -> str | None:
    if cfg.resume in (None, "auto"):
        last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
        return str(last) if cfg.resume == "auto" and last.is_file() else None
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
