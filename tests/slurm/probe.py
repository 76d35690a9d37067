"""A Lightning callback for the real-Slurm DDP tests (tests/test_slurm_ddp.py), on the job's PYTHONPATH:
``+callbacks.probe={_target_: probe.BatchProbe, folder: DIR}``.

Each rank appends one line per training batch to ``DIR/rank<global rank>.txt``:
``<world size> <epoch> <global step> <Slurm restart count> <sum of the batch's clean patches> <torch seed>``, so a
test sees the world, what each rank trained on, and where a requeued job started again. ``sleep`` seconds a batch stretch
a tiny training for the preemption test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


class BatchProbe(Callback):
    def __init__(self, folder: str, sleep: float = 0.0):
        self.folder, self.sleep = Path(folder), float(sleep)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.world_size} {trainer.current_epoch} {trainer.global_step} {restarts} "
                    f"{float(batch['target'].double().sum()):.6f} {torch.initial_seed()}\n")
        if self.sleep:
            time.sleep(self.sleep)
