"""``NonFiniteLossGuard``: stop training at the first NaN or infinite loss, with one line that names the
step and the last good checkpoint, instead of training on garbage for the rest of the budget."""

from __future__ import annotations

import math

from pytorch_lightning.callbacks import Callback

from m3l.errors import M3LError


class NonFiniteLossGuard(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or math.isfinite(float(loss)):
            return
        saved = [c for c in trainer.checkpoint_callbacks if c.monitor is None] + trainer.checkpoint_callbacks
        paths = [p for c in saved for p in (c.last_model_path, c.best_model_path) if p]  # last.ckpt's callback first
        last = paths[0] if paths else None
        raise M3LError(f"training stopped: the loss is {float(loss)} at step {trainer.global_step} "
                       f"(epoch {trainer.current_epoch}); last good checkpoint: {last or 'none yet'}; "
                       f"lower optimizer.lr or check the data, then resume=PATH")
