"""Lightning callbacks of m3l: pictures and tables for loggers that take them (WandB), and the run's config in every checkpoint.

:func:`logger_callbacks` adds them to a trainer whose logger has ``log_image`` / ``log_table``
(``pytorch_lightning.loggers.WandbLogger``), so ``logger=wandb`` is all a user sets:

- :class:`LogSamples`: during validation, the first images of the first batch as
  ``degraded | restored | clean`` strips, under ``val/samples``;
- :class:`LogTestTable`: after testing a :class:`~m3l.restoration.RestorationModule`, the per-image
  table and the summary (one row per test set and degradation), under ``test/per_image`` and
  ``test/summary``.
"""

from __future__ import annotations

import torch
from pytorch_lightning.callbacks import Callback


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
    """Log the per-image test rows and their summary as tables at the end of testing."""

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        import pandas as pd

        from m3l.tables import summarize

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
