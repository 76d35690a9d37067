"""Train a model: ``python -m m3l.run.train model=NAME [overrides]``.

Keeps ``checkpoints/best.ckpt`` (best validation PSNR) and ``checkpoints/last.ckpt`` in the run
directory. ``checkpoint_out=PATH`` also copies the best checkpoint to exactly PATH; ``resume=PATH``
(or ``resume=auto``: the run directory's ``last.ckpt``, else the newest one of an earlier run of the same model
and settings, see :func:`latest_run`) continues an interrupted run. Checkpoints are written atomically beside
their target (:class:`m3l.engine.callbacks.AtomicCheckpointIO`); ``resume=auto`` skips, with one line each, checkpoints
that do not load (cut by a full disk or a kill) and takes the newest good one; a ``resume=PATH`` that does not load
is one line.
Returns ``optimized_metric`` (best validation PSNR by default) for Hydra sweepers such as Optuna.
"""

from __future__ import annotations

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


def unloadable(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot resume a run (it does not load, or holds weights only); None if it can."""
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return "it is not a PyTorch checkpoint, or holds objects other than tensors and plain containers (refused)"
    except Exception as error:  # torch raises many types for truncated or foreign files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        return f"it does not load: cut short, or not a checkpoint ({first[:120]})"
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        return "it is not a checkpoint written by m3l.run.train (no state_dict)"
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        return ("it holds weights only, not the optimizer and loop state a run resumes from (to start from these "
                "weights, pass net.pretrained=PATH instead)")
    return None


def _newest_first(folder: Path) -> list[Path]:
    """The checkpoints of a run's ``checkpoints/`` folder, ``last.ckpt`` first, then newest first."""
    found = [c for c in folder.glob("*.ckpt") if c.is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda c: (c.name != "last.ckpt", -c.stat().st_mtime))


def _recorded_settings(run_dir: Path) -> dict | None:
    """The settings (:func:`_settings`) that a run folder's ``run.yaml`` records; None if it has none readable."""
    import yaml

    try:
        config = (yaml.safe_load((run_dir / "run.yaml").read_text()) or {}).get("config")
        return _settings(config) if isinstance(config, dict) else None
    except Exception:  # missing, unreadable, not YAML, not a mapping: not a run to resume
        return None


def _first_good(checkpoints: list[Path]) -> Path | None:
    """The first of ``checkpoints`` that can resume a run; one line for each one skipped."""
    for checkpoint in checkpoints:
        problem = unloadable(checkpoint)
        if problem is None:
            return checkpoint
        print(f"resume=auto: skipping {checkpoint}: {problem}")
    return None


def latest_run(cfg: DictConfig) -> Path | None:
    """``resume=auto``: this run dir's ``last.ckpt``, else the newest ``last.ckpt`` of a sibling run dir (the
    timestamped folders of ``runs/train/<name>/``) whose ``run.yaml`` records the same settings; None if none.

    A checkpoint that does not load (cut short by a full disk or a kill) is skipped with one line, and the
    newest good checkpoint of the same run folder (``best.ckpt``, ...) takes its place.
    """
    run_dir = Path(cfg.run_dir)
    own = _first_good(_newest_first(run_dir / "checkpoints"))
    if own is not None:
        return own
    settings = _settings(OmegaConf.to_container(cfg, resolve=True))
    siblings = [d for d in run_dir.parent.iterdir() if d != run_dir and d.is_dir()] if run_dir.parent.is_dir() else []
    runs = [d for d in siblings if (d / "checkpoints" / "last.ckpt").is_file()]
    for sibling in sorted(runs, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime, reverse=True):
        if _recorded_settings(sibling) == settings:
            found = _first_good(_newest_first(sibling / "checkpoints"))
            if found is not None:
                return found
    print(f"resume=auto: no earlier run with these settings in {run_dir.parent} (looked for "
          f"*/checkpoints/last.ckpt with the same run.yaml config); training starts over")
    return None


def resume_path(cfg: DictConfig) -> str | None:
    if cfg.resume in (None, "auto"):
        last = latest_run(cfg) if cfg.resume == "auto" else None
        if last is not None:
            print(f"resume=auto: continuing from {last}")
        return None if last is None else str(last)
    if not str(cfg.resume).strip():
        raise M3LError("resume is empty: pass resume=PATH to a checkpoint, resume=auto, or leave it out")
    if not Path(cfg.resume).is_file():
        raise M3LError(f"resume: checkpoint not found: {cfg.resume}")
    problem = unloadable(cfg.resume)
    if problem is not None:
        raise M3LError(f"resume: {cfg.resume}: {problem}; pass resume=auto to take the newest good checkpoint")
    return str(cfg.resume)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file beside it (see :mod:`m3l.io.atomic`)."""
    from m3l.io.atomic import atomic_write

    with open(source, "rb") as src, atomic_write(target) as dst:
        shutil.copyfileobj(src, dst)


def train(cfg: DictConfig) -> float | None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    from m3l.engine.callbacks import StoreConfig, use_atomic_checkpoints
    from m3l.engine.distributed import SeedRanks, requeue_safely, restarted_by_slurm

    if cfg.resume is None and restarted_by_slurm():  # a requeued Slurm job continues in its run folder
        cfg.resume = "auto"
    resume = resume_path(cfg)  # a bad resume=PATH stops before anything is built
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    callbacks = [*instantiate_all(cfg.callbacks), StoreConfig(OmegaConf.to_container(cfg, resolve=True)),
                 SeedRanks(cfg.seed)]  # several ranks (DDP): each draws its own training patches
    trainer = build_trainer(cfg, callbacks)
    use_atomic_checkpoints(trainer)
    requeue_safely(trainer, Path(cfg.run_dir) / "checkpoints" / "last.ckpt")  # Slurm tasks: USR1, ranks in step
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)

    checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint and (checkpoint.best_model_path or checkpoint.last_model_path)
    if cfg.checkpoint_out:
        if not best:
            trainer.save_checkpoint(cfg.checkpoint_out)  # every rank takes part; Lightning writes from rank 0
        elif trainer.is_global_zero:  # several ranks (DDP): one copy, by rank 0
            copy_atomic(best, cfg.checkpoint_out)
        if trainer.is_global_zero:
            print(f"final checkpoint: {cfg.checkpoint_out}")
    elif best and trainer.is_global_zero:
        print(f"best checkpoint: {best}")
    score = checkpoint.best_model_score if checkpoint is not None else None
    if score is None:
        score = trainer.callback_metrics.get(cfg.optimized_metric)
    return None if score is None else float(score)


main = entry(train, "train")

if __name__ == "__main__":
    main()
