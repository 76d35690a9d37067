"""``VideoSerializer``: writes corrected clips chunk by chunk, as the sliding window produces them.

A Lightning ``BasePredictionWriter`` for :class:`m3l.data.video_folders.StreamedClips` batches. Each clip goes
under ``root_dir`` at its relative path: a frame folder as a folder of PNG frames with the input's frame names;
a video file as a video at the input's frame rate, lossless by default (FFV1 in ``.mkv``) or H.264 of a stated
quality (``codec=libx264 crf=N``, ``.mp4``). A clip is written under a temporary name and renamed when its last
frame is done (see :class:`m3l.io.clips.ClipWriter`): an interrupted run or an unreadable clip leaves no
partial output. A rerun resumes: :meth:`VideoSerializer.pending` drops the clips whose output exists (unless
``overwrite``) before any is decoded, and removes what a killed run left half-written. As for images, clips
that would share an output (``a.mp4`` and ``a.avi``: both ``a.mkv``) are refused up front, and no output may
leave ``root_dir`` through a symbolic link.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from m3l.io.clips import ClipWriter, is_video
from m3l.errors import M3LError
from m3l.io.serializer import ImageSerializer

SUFFIXES = {"ffv1": ".mkv", "libx264": ".mp4"}


class VideoSerializer(ImageSerializer):
    """Args:
        root_dir: where the corrected clips go.
        codec: video files' codec, ``ffv1`` (lossless, ``.mkv``) or ``libx264`` (``.mp4``).
        crf: libx264's quality (0: lossless in YUV 4:4:4; 18: visually lossless; 23: libx264's default).
        overwrite: correct every clip again, even those whose output exists (default: skip them).

    Resuming (:meth:`pending`), the summary and ``root_dir``'s creation are the image serializer's.
    """

    def __init__(self, root_dir: str, codec: str = "ffv1", crf: int | None = None, overwrite: bool = False):
        if codec not in SUFFIXES:
            raise M3LError(f"serializer.codec: {codec!r} is not one of {', '.join(SUFFIXES)}")
        super().__init__(root_dir, suffix=SUFFIXES[codec], overwrite=overwrite)
        self.codec, self.crf = codec, crf
        self.open: dict[str, ClipWriter] = {}
        self.frames = 0

    def output_path(self, name: str) -> Path:
        """Where clip ``name`` goes, never outside ``root_dir``: a video gets the codec's suffix, a frame
        folder keeps its name."""
        path = super().output_path(name)
        return path if is_video(name) else path.with_name(Path(name).name)

    def on_predict_start(self, trainer, pl_module) -> None:
        self.open, self.frames = {}, 0
        # Chunks come from an iterable dataset: Lightning has no batch indices to give, and says so each time.
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")

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
        path = self.output_path(name)
        try:
            if batch["start"] == 0:
                self.open[name] = ClipWriter(self.inside(path), batch["fps"], codec=self.codec, crf=self.crf)
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

    def wrote(self, seconds: float) -> str:
        return (f"wrote {len(self.written)} clips ({self.frames} frames) to {self.root_dir} in {seconds:.2f} s "
                f"({self.frames / max(seconds, 1e-9):.3f} frames/s)")
