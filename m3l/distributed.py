"""Runs of several processes (DDP ranks: Slurm tasks, or the processes Lightning starts): which one writes, and
test rows put back together as one process would have measured them.

m3l writes its files (``run.yaml``, ``checkpoint_out``, the metrics CSVs) from global rank 0 only
(:func:`is_rank_zero`); Lightning's checkpoints and loggers already do. Testing on several ranks gives exactly the
single-process tables: :func:`gather_rows` collects every rank's per-image rows, drops the images the distributed
sampler repeated to even out the ranks, and restores the single-process order (``tests/test_slurm_ddp.py``).
"""

from __future__ import annotations

import itertools


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, or the only one: Lightning's rank (set when the trainer starts its world;
    before that, read from ``RANK``, ``LOCAL_RANK`` or ``SLURM_PROCID``)."""
    return global_rank() == 0


def global_rank() -> int:
    """This process's global rank (0 on one process); see :func:`is_rank_zero`."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def seed_rank(seed: int) -> None:
    """On rank r > 0, reseed torch's RNG with ``seed + r``, so that each rank trains on patches of its own.

    m3l's training sets draw every patch (image, position, flip, noise) from torch's RNG, not from the item's index, so
    the ``DistributedSampler``'s shards alone would give every rank the very same patches when the data load in the
    main process (``data.num_workers=0``; Lightning seeds loader workers by rank). Rank 0, and a run of one process,
    keep the run's seed: their patches, and so single-process results, are unchanged. The ranks' different weight
    initializations do not matter: DDP starts every rank from rank 0's weights."""
    import torch

    rank = global_rank()
    if rank > 0:
        torch.manual_seed(int(seed) + rank)


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def row_key(row: dict) -> tuple:
    """What names a test row: its test set, degradation and image (and frame, for a video's per-frame rows)."""
    return row.get("dataset"), row.get("degradation"), row.get("image"), row.get("frame")


def gather_rows(rows: list[dict], order_of: list[dict] | None = None) -> list[dict]:
    """Every rank's ``rows`` (per-image test rows, see :class:`m3l.restoration.RestorationModule`) on every rank, each
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
