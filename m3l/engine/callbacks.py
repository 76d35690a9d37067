"""Lightning callbacks of m3l: pictures and tables for loggers that take them (WandB), and the run's config in every checkpoint.

:func:`logger_callbacks` adds them to a trainer whose logger has ``log_image`` / ``log_table``
(``pytorch_lightning.loggers.WandbLogger``), so ``logger=wandb`` is all a user sets:

- :class:`LogSamples`: during validation, the first images of the first batch as
  ``degraded | restored | clean`` strips, under ``val/samples``;
- :class:`LogTestTable`: after testing a :class:`~m3l.engine.restoration.RestorationModule`, the per-image
  table and the summary (one row per test set and degradation), under ``test/per_image`` and
  ``test/summary``;
- :class:`ProgressLines`: plain progress lines on stdout when the progress bar is off.

:class:`AtomicCheckpointIO` is the checkpoint writer of ``m3l.run.train``: each checkpoint is written to a
temporary file beside its target, synced, then renamed over it (Lightning's own writer stages it in ``$TMPDIR`` and
moves it, a copy when the run folder is on another file system: a full disk then left a cut ``last.ckpt``).
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint completely under its name or not at all, whatever the file systems (see
    :mod:`m3l.io.atomic`): a full disk or a kill while saving leaves the earlier checkpoint of that name as it was.
    Paths with a protocol (``s3://``) go to Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        from m3l.io.atomic import atomic_write

        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            with atomic_write(path) as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())  # on disk before the rename publishes it
        except OSError as error:  # name the checkpoint in the one-line report (a write error has no filename)
            if error.filename is None:
                raise OSError(error.errno, error.strerror, str(path)) from None
            raise


def use_atomic_checkpoints(trainer) -> None:
    """Make ``trainer`` save checkpoints with :class:`AtomicCheckpointIO`, unless its config chose another writer."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def _loggers(trainer, method: str) -> list:
    return [logger for logger in trainer.loggers if callable(getattr(logger, method, None))]


class LogSamples(Callback):
    """Log ``count`` validation samples (degraded, restored, clean side by side) every validation."""

    def __init__(self, count: int = 4, key: str = "val/samples"):
        self.count, self.key = count, key

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        loggers = _loggers(trainer, "log_image")
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not loggers:
            return
        batch = {k: (v[:self.count] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}
        if isinstance(batch.get("side"), dict):
            batch["side"] = {k: v[:self.count] for k, v in batch["side"].items()}
        with torch.no_grad():
            restored = pl_module.restore(batch) if hasattr(pl_module, "restore") else pl_module(batch["input"])
        strips = [torch.cat([batch["input"][i], restored[i], batch["target"][i]], dim=-1).clamp(0, 1).float().cpu()
                  for i in range(len(restored))]
        captions = [f"{name}: degraded | restored | clean" for name in batch.get("path", [""] * len(strips))]
        for logger in loggers:
            logger.log_image(key=self.key, images=strips, caption=captions, step=trainer.global_step)


class LogTestTable(Callback):
    """Log the per-image test rows and their summary as tables at the end of testing (after the module's
    ``on_test_epoch_end``, which gathers the rows of every rank)."""

    def on_test_end(self, trainer, pl_module) -> None:
        import pandas as pd

        from m3l.io.tables import summarize

        rows = getattr(pl_module, "test_rows", None)
        loggers = _loggers(trainer, "log_table")
        if not rows or not loggers:
            return
        per_image = pd.DataFrame(rows)
        for logger in loggers:
            logger.log_table(key="test/per_image", dataframe=per_image)
            logger.log_table(key="test/summary", dataframe=summarize(per_image))


def logger_callbacks(logger) -> list[Callback]:
    """The callbacks above when ``logger`` (a Lightning logger, a list of them, True or False) takes images."""
    loggers = logger if isinstance(logger, (list, tuple)) else [logger]
    if any(callable(getattr(item, "log_image", None)) for item in loggers):
        return [LogSamples(), LogTestTable()]
    return []


class StoreConfig(Callback):
    """Stores the run's resolved config (plain containers only) in every checkpoint under
    ``"m3l_config"``, so that a checkpoint says how to rebuild its net."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["m3l_config"] = self.config


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _metric(trainer, key: str) -> str:
    value = trainer.callback_metrics.get(key)
    return "" if value is None else f" {key.replace('/', '_')} {float(value):.4g}"


class ProgressLines(Callback):
    """Plain progress lines on stdout, at most one every ``every`` seconds (and at the end of each stage), for
    logs where Lightning's progress bar is off (``trainer.enable_progress_bar=false``, the workflow's jobs):
    ``epoch 3/10 step 1200/5000 train_loss 0.0123 val_psnr 28.1 it/s 4.2 ETA 12:34`` while training,
    ``test images 40/68 ETA 0:12`` while testing or correcting."""

    def __init__(self, every: float = 30.0):
        self.every = every

    def _due(self, final: bool = False) -> bool:
        now = time.monotonic()
        if final or now - self.last >= self.every:
            self.last = now
            return True
        return False

    def on_train_start(self, trainer, pl_module) -> None:
        self.start, self.last, self.first_step = time.monotonic(), time.monotonic(), trainer.global_step

    def _train_line(self, trainer) -> None:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        rate = (step - self.first_step) / max(time.monotonic() - self.start, 1e-9)
        eta = (total - step) / rate if rate > 0 else float("nan")
        total_text = "?" if total == float("inf") else int(total)
        epochs = "?" if trainer.max_epochs in (None, -1) else trainer.max_epochs
        epoch = trainer.current_epoch + 1 if epochs == "?" else min(trainer.current_epoch + 1, epochs)  # at the end
        print(f"epoch {epoch}/{epochs} step {step}/{total_text}{_metric(trainer, 'train/loss')}"
              f"{_metric(trainer, 'val/psnr')} it/s {rate:.3g} ETA {_clock(eta)}", flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due():
            self._train_line(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._train_line(trainer)

    def _eval_start(self, dataloaders) -> None:
        loaders = dataloaders if isinstance(dataloaders, (list, tuple)) else [dataloaders]
        try:
            self.total = sum(len(loader.dataset) for loader in loaders)
        except (TypeError, AttributeError):
            self.total = None
        self.start, self.last, self.done = time.monotonic(), time.monotonic(), 0

    def _eval_batch(self, stage: str, batch, final: bool = False) -> None:
        if batch is not None:
            images = batch.get("input") if isinstance(batch, dict) else batch[0] if isinstance(batch, (list, tuple)) else batch
            self.done += len(images) if hasattr(images, "__len__") else 1
        if self._due(final):
            rate = self.done / max(time.monotonic() - self.start, 1e-9)
            eta = (self.total - self.done) / rate if self.total and rate > 0 else float("nan")
            print(f"{stage} images {self.done}/{self.total or '?'} ETA {_clock(eta)}", flush=True)

    def on_test_start(self, trainer, pl_module) -> None:
        self._eval_start(trainer.test_dataloaders)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch("test", batch)

    def on_test_end(self, trainer, pl_module) -> None:
        self._eval_batch("test", None, final=True)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._eval_start(trainer.predict_dataloaders)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch("correct", batch)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._eval_batch("correct", None, final=True)
