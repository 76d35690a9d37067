"""``StepTimer``: a Lightning callback recording, for every training step, the time spent waiting for
data and the time spent computing (forward, backward, optimizer step, logging).

    python -m m3l.run.train model=dncnn +callbacks.step_timer._target_=m3l.engine.timing.StepTimer

writes ``step_times.json`` to the run directory; ``benchmarks/train_overhead.py`` reads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pytorch_lightning.callbacks import Callback


class StepTimer(Callback):
    def __init__(self, path: str | None = None):
        self.path = path
        self.data: list[float] = []
        self.compute: list[float] = []
        self._end = self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = time.perf_counter()  # the data wait of an epoch's first step includes worker start-up

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self.data.append(self._start - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
        self.compute.append(self._end - self._start)

    def on_train_end(self, trainer, pl_module) -> None:
        path = Path(self.path or Path(trainer.default_root_dir) / "step_times.json")
        path.write_text(json.dumps({"data": self.data, "compute": self.compute}))
