"""Where a training run's time goes.

- :class:`TimeSplit` (on by default: ``callbacks.time_split``) writes ``timing.json`` to the run directory at the
  end of training: seconds in training steps, waiting for data, validating, and the rest (checkpoints, loggers),
  and the whole fit. ``benchmarks/main_job.py`` reads it for the main job's split.
- :class:`StepTimer` records every step's data wait and compute time::

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


class TimeSplit(Callback):
    """Seconds of a fit by part, in ``<run dir>/timing.json`` (written whole, then renamed; rank 0 only)::

        {"fit": 361.2, "train_steps": 331.0, "data_wait": 3.1, "validation": 21.7, "other": 5.4, "steps": 1000}

    ``train_steps`` is forward, backward and optimizer step; ``data_wait`` the time the loop waited for a batch
    (loading it, in the main process without workers); ``validation`` the validation loops (the sanity check
    included); ``other`` the rest of the fit (saving checkpoints, loggers, the loop's start-up).
    """

    def __init__(self):
        self.parts = dict.fromkeys(("train_steps", "data_wait", "validation"), 0.0)
        self._fit = self._mark = self._val = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.parts["data_wait"] += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.parts["train_steps"] += now - self._mark
        self._mark = now

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.parts["validation"] += time.perf_counter() - self._val
        self._mark = time.perf_counter()  # the next batch's wait starts now, not before validating

    def on_train_end(self, trainer, pl_module) -> None:
        if self._fit is None or not trainer.is_global_zero:
            return
        fit = time.perf_counter() - self._fit
        record = {"fit": round(fit, 3), **{k: round(v, 3) for k, v in self.parts.items()}}
        record["other"] = round(max(0.0, fit - sum(self.parts.values())), 3)
        record["steps"] = trainer.global_step
        from m3l.io.atomic import atomic_write

        with atomic_write(Path(trainer.default_root_dir) / "timing.json", "w") as f:
            f.write(json.dumps(record, indent=1) + "\n")
