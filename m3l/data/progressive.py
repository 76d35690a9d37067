"""Progressive training: the training patch size and batch size change at step milestones (Restormer).

``data.progressive`` is a list of stages, each ``{steps: N, patch_size: P, batch_size: B}``: ``N`` optimizer
steps with ``P x P`` patches in batches of ``B`` per device (the same meaning as ``data.train_batch_size``); the
last stage goes on until training ends, whatever its ``steps``. Restormer's GoPro schedule (its authors' ``iters``,
``gt_sizes`` and ``mini_batch_sizes``, per GPU) is::

    progressive: [{steps: 92000, patch_size: 128, batch_size: 8}, {steps: 64000, patch_size: 160, batch_size: 5},
                  {steps: 48000, patch_size: 192, batch_size: 4}, {steps: 36000, patch_size: 256, batch_size: 2},
                  {steps: 36000, patch_size: 320, batch_size: 1}, {steps: 24000, patch_size: 384, batch_size: 1}]

The data module (:class:`m3l.data.image_folders.FolderDataModule`) builds each epoch's loader for the stage of
the trainer's ``global_step`` and asks Lightning to rebuild the loader every epoch; an epoch that would cross a
milestone is cut short at it, so every stage starts exactly at its step (see :func:`epoch_batches`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from m3l.errors import M3LError


@dataclass(frozen=True)
class Stage:
    steps: int        # optimizer steps of this stage (the last stage runs until training ends)
    patch_size: int   # training patches of patch_size x patch_size pixels
    batch_size: int   # patches per device and step


def parse_schedule(entries: Sequence[Mapping] | None) -> list[Stage]:
    """The stages of ``data.progressive``, checked; ``[]`` for none."""
    stages = []
    for i, entry in enumerate(entries or []):
        where = f"data.progressive[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"steps", "patch_size", "batch_size"}:
            raise M3LError(f"{where}: give a stage as {{steps: N, patch_size: P, batch_size: B}}, got {entry!r}")
        values = {}
        for key in ("steps", "patch_size", "batch_size"):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise M3LError(f"{where}.{key} must be a positive whole number, got {value!r}")
            values[key] = value
        stages.append(Stage(**values))
    return stages


def stage_at(stages: Sequence[Stage], step: int) -> tuple[int, Stage, int | None]:
    """``(index, stage, steps left in it)`` at optimizer step ``step`` (0-based); ``None`` steps left for the
    last stage, which runs until training ends."""
    start = 0
    for index, stage in enumerate(stages):
        if index == len(stages) - 1:
            return index, stage, None
        if step < start + stage.steps:
            return index, stage, start + stage.steps - step
        start += stage.steps
    raise M3LError("data.progressive: the schedule has no stage")


def epoch_batches(epoch_patches: int, stage: Stage, steps_left: int | None, devices: int = 1,
                  accumulate: int = 1) -> int:
    """Batches a device runs in an epoch of ``stage``: an epoch of ``epoch_patches`` patches in all (over
    ``devices``), at least one batch, cut short so that it ends at the stage's last step (``steps_left`` optimizer
    steps of ``accumulate`` batches each)."""
    batches = max(1, epoch_patches // (stage.batch_size * devices))
    return batches if steps_left is None else min(batches, steps_left * accumulate)
