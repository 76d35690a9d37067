"""``VideoSerializer``: writes corrected clips chunk by chunk, as the sliding window produces them.

A Lightning ``BasePredictionWriter`` for :class:`m3l.data.video_folders.StreamedClips` batches. Each clip goes
under ``root_dir`` at its relative path: a frame folder as a folder of PNG frames with the input's frame names;
a video file as a video at the input's frame rate, lossless by default (FFV1 in ``.mkv``) or H.264 of a stated
quality (``codec=libx264 crf=N``, ``.mp4``). A clip is written under a temporary name and renamed when its last
frame is done (see :class:`m3l.data.video.ClipWriter`): an interrupted run or an unreadable clip leaves no
partial output. A rerun resumes: :meth:`VideoSerializer.pending` drops the clips whose output exists (unless
``overwrite``) before any is decoded, and removes what a killed run left half-written.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from m3l.atomic import temporaries
from m3l.data.video import ClipWriter, is_video
from m3l.errors import M3LError

log = logging.getLogger(__name__)

SUFFIXES = {"ffv1": ".mkv", "libx264": ".mp4"}


class VideoSerializer(BasePredictionWriter):
    """Args:
        root_dir: where the corrected clips go.
        codec: video files' codec, ``ffv1`` (lossless, ``.mkv``) or ``libx264`` (``.mp4``).
        crf: libx264's quality (0: lossless in YUV 4:4:4; 18: visually lossless; 23: libx264's default).
        overwrite: correct every clip again, even those whose output exists (default: skip them).
    """

    def __init__(self, root_dir: str, codec: str = "ffv1", crf: int | None = None, overwrite: bool = False):
        super().__init__(write_interval="batch")
        if codec not in SUFFIXES:
            raise M3LError(f"serializer.codec: {codec!r} is not one of {', '.join(SUFFIXES)}")
        self.root_dir, self.codec, self.crf, self.overwrite = Path(root_dir), codec, crf, overwrite
        self.written: list[Path] = []
        self.skipped: list[str] = []
        self.done: list[str] = []
        self.started = time.perf_counter()
        self.open: dict[str, ClipWriter] = {}
        self.frames = 0

    def output_path(self, name: str, video: bool) -> Path:
        """Where clip ``name`` goes; never outside ``root_dir``."""
        relative = Path(*[part for part in Path(name).parts if part not in ("..", "/", "\\")])
        if relative.is_absolute() or relative.drive:
            relative = relative.relative_to(relative.anchor)
        return self.root_dir / (relative.with_suffix(SUFFIXES[self.codec]) if video else relative)

    def pending(self, names: Sequence[str]) -> list[str]:
        """The clips (relative ``names``) still to correct: all with ``overwrite``, else those without an
        output; what a killed run left half-written for them (temporary files and frame folders) goes."""
        outputs = [self.output_path(name, is_video(name)) for name in names]
        for stale in temporaries(outputs):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        done = [False] * len(names) if self.overwrite else [out.exists() for out in outputs]
        self.done = [name for name, finished in zip(names, done) if finished]
        return [name for name, finished in zip(names, done) if not finished]

    def on_predict_start(self, trainer, pl_module) -> None:
        try:
            self.root_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise M3LError(f"serializer.root_dir: cannot create {self.root_dir}: {error.strerror}") from None
        self.written, self.skipped, self.open, self.frames = [], [], {}, 0
        # Chunks come from an iterable dataset: Lightning has no batch indices to give, and says so each time.
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
        self.started = time.perf_counter()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        if "skipped" in batch:
            for name in batch["skipped"]:
                writer = self.open.pop(name, None)
                if writer is not None:  # the clip broke after its first chunks
                    writer.abort()
            self.skipped += batch["skipped"]
            return
        name = batch["path"]
        path = self.output_path(name, batch["video"])
        try:
            if batch["start"] == 0:
                self.open[name] = ClipWriter(path, batch["fps"], codec=self.codec, crf=self.crf)
            writer = self.open[name]
            for frame, frame_name in zip(prediction[0], batch["frame_names"]):
                writer.write(frame, frame_name)
            self.frames += len(batch["frame_names"])
            if batch["last"]:
                self.written.append(self.open.pop(name).close())
        except OSError as error:
            raise M3LError(f"cannot write {path}: {error.strerror or error}") from None

    def abort_open(self) -> None:
        for writer in self.open.values():
            writer.abort()
        self.open = {}

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.abort_open()

    def on_predict_end(self, trainer, pl_module) -> None:
        self.abort_open()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Print the summary; runs also when nothing was left to correct."""
        if stage != "predict":
            return
        seconds = time.perf_counter() - self.started
        message = (f"wrote {len(self.written)} clips ({self.frames} frames) to {self.root_dir} in {seconds:.2f} s "
                   f"({self.frames / max(seconds, 1e-9):.3f} frames/s)")
        if self.done:
            message += f"; skipped {len(self.done)} already done (serializer.overwrite=true redoes them)"
        if self.skipped:
            message += f"; skipped {len(self.skipped)} unreadable: {', '.join(self.skipped)}"
        log.info(message)
        print(message)
