"""Runs of several processes (DDP ranks: Slurm tasks, or the processes Lightning starts): which one writes, and
test rows put back together as one process would have measured them.

m3l writes its files (``run.yaml``, ``checkpoint_out``, the metrics CSVs) from global rank 0 only
(:func:`is_rank_zero`); Lightning's checkpoints and loggers already do. Testing on several ranks gives exactly the
single-process tables: :func:`gather_rows` collects every rank's per-image rows, drops the images the distributed
sampler repeated to even out the ranks, and restores the single-process order (``tests/test_slurm_ddp.py``).
"""

from __future__ import annotations

import itertools

from pytorch_lightning.callbacks import Callback


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, or the only one: Lightning's rank (set when the trainer starts its world;
    before that, read from ``RANK``, ``LOCAL_RANK`` or ``SLURM_PROCID``)."""
    return global_rank() == 0


def global_rank() -> int:
    """This process's global rank (0 on one process); see :func:`is_rank_zero`."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


class SeedRanks(Callback):
    """On rank r > 0, reseed torch's RNG with ``seed + r`` as training starts, so that each rank trains on patches of
    its own.

    m3l's training sets draw every patch (image, position, flip, noise) from torch's RNG, not from the item's index, so
    the ``DistributedSampler``'s shards alone would give every rank the very same patches when the data load in the
    main process (``data.num_workers=0``; Lightning seeds loader workers by rank), and Lightning's DDP setup seeds
    every rank alike. Rank 0, and a run of one process, keep the run's seed: their patches, and so single-process
    results, are unchanged. The ranks' weights need no seed of their own: DDP starts every rank from rank 0's."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_start(self, trainer, pl_module) -> None:
        import torch

        if trainer.global_rank > 0:
            torch.manual_seed(self.seed + trainer.global_rank)


class SlurmRequeue(Callback):
    """Checkpoint and requeue a Slurm job of several tasks on ``signum`` (SIGUSR1: ``#SBATCH --signal=USR1@90``, or
    ``scancel --signal=USR1 JOB``), with every rank in step.

    Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``) saves the checkpoint inside the signal handler,
    which is a collective: a rank that gets the signal during a data load waits there for ranks that are blocked in a
    gradient or buffer exchange, and the job hangs until its time runs out (seen with gloo: tests/test_slurm_ddp.py).
    Here the handler only takes note; after each training batch the ranks agree whether any of them got the signal
    (one all-reduce, as Lightning's SIGTERM check does), then all save ``path`` (``checkpoints/last.ckpt``: what
    ``resume=auto`` continues from), rank 0 runs ``scontrol requeue`` and every rank leaves. Slurm starts the job again
    in the same run folder (the Hydra submitit route reruns the same job), and ``resume=auto`` continues from ``path``.
    If the requeue fails, training goes on.
    """

    def __init__(self, path, signum: int | None = None):
        import signal

        self.path, self.asked = str(path), False
        self.signum = signal.SIGUSR1 if signum is None else signum
        signal.signal(self.signum, self._take_note)

    def _take_note(self, signum, frame) -> None:
        self.asked = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.asked, all=False):
            return
        import signal

        from pytorch_lightning.utilities import rank_zero_info

        rank_zero_info(f"{signal.Signals(self.signum).name}: saving {self.path} and requeueing the Slurm job")
        trainer.save_checkpoint(self.path)  # every rank takes part; rank 0 writes
        requeued = _requeue() if trainer.is_global_zero else True
        if trainer.strategy.reduce_boolean_decision(requeued, all=True):
            rank_zero_info("requeued: the job starts again and continues from the checkpoint (resume=auto)")
            raise SystemExit(0)  # Slurm stops the job's tasks and runs it again
        self.asked = False
        rank_zero_info("the Slurm job could not be requeued: training goes on")


def _requeue() -> bool:
    """``scontrol requeue`` this Slurm job (an array job's own task); whether it worked."""
    import os
    import subprocess

    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")
    if not job.replace("_", "").isdigit():
        return False
    try:
        return subprocess.run(["scontrol", "requeue", job], timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def restarted_by_slurm() -> bool:
    """Whether this process belongs to a Slurm job started again (``SLURM_RESTART_COUNT``: requeued after a
    preemption, a time limit or ``scontrol requeue``); ``m3l.run.train`` then takes ``resume=null`` for ``auto``."""
    import os

    count = os.environ.get("SLURM_RESTART_COUNT", "0")
    return count.isdigit() and int(count) > 0


def requeue_safely(trainer, path) -> None:
    """For a trainer whose ranks are Slurm tasks (Lightning's ``SLURMEnvironment``, several processes), replace
    Lightning's auto-requeue on SIGUSR1 with :class:`SlurmRequeue` saving ``path``; one process keeps Lightning's."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    environment = getattr(trainer.strategy, "cluster_environment", None)
    if isinstance(environment, SLURMEnvironment) and environment.auto_requeue and trainer.world_size > 1:
        environment.auto_requeue = False
        trainer.callbacks.append(SlurmRequeue(path, environment.requeue_signal))


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def row_key(row: dict) -> tuple:
    """What names a test row: its test set, degradation and image (and frame, for a video's per-frame rows)."""
    return row.get("dataset"), row.get("degradation"), row.get("image"), row.get("frame")


def gather_rows(rows: list[dict], order_of: list[dict] | None = None) -> list[dict]:
    """Every rank's ``rows`` (per-image test rows, see :class:`m3l.engine.restoration.RestorationModule`) on every rank, each
    row once, in the order one process makes them; on one process, ``rows`` as they are.

    Lightning tests on N ranks through a ``DistributedSampler``: rank r measures items r, r+N, r+2N, ... of each test
    loader, and the last ranks measure up to N-1 items again so that all have as many batches. Taking the ranks' rows
    in turn (rank 0's first row, rank 1's first, ..., then the second rows) gives back the loaders' order; a row whose
    :func:`row_key` was already taken is a repeated item and is dropped. ``order_of``: rows already gathered that fix
    the order instead (a video's per-frame rows follow its per-clip rows, frame by frame).
    """
    import torch.distributed as dist

    if _world() == 1:
        return rows
    parts: list[list[dict] | None] = [None] * _world()
    dist.all_gather_object(parts, list(rows))
    if order_of is None:
        merged = [row for turn in itertools.zip_longest(*parts) for row in turn if row is not None]
    else:
        position = {row_key(row)[:3]: i for i, row in enumerate(order_of)}
        merged = sorted(itertools.chain(*parts),
                        key=lambda row: (position.get(row_key(row)[:3], len(position)), row.get("frame") or 0))
    seen, unique = set(), []
    for row in merged:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique
