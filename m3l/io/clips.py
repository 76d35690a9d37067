"""Clips in and out: reading and writing them.

A clip is either a *frame folder* (a folder of images, frames in name order) or a *video file*
(``.mp4``, ``.mkv``, ``.avi``, ``.mov``, ``.webm``, decoded with PyAV). In memory a clip is a float
tensor ``(T, C, H, W)`` in [0, 1]; long clips are never loaded whole for correction: :func:`iter_frames`
decodes lazily and :class:`ClipWriter` writes frame by frame.

Written clips keep the input's form: PNG frames with the input's frame names for a frame folder, and a
video at the input's frame rate for a video file. Videos are written losslessly by default (FFV1 in
Matroska, ``.mkv``: bit-exact 8-bit gray or RGB); ``codec="libx264"`` with a ``crf`` writes a smaller
H.264 ``.mp4`` of the stated quality (``crf=0`` with ``yuv444p`` is lossless in YUV, not in RGB).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from m3l.io.atomic import discard, temporary
from m3l.io.images import is_image, read_image, to_uint8, write_png
from m3l.run.extras import require

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm"})
DEFAULT_FPS = Fraction(25)
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov", ".webm": "webm"}


def pyav(purpose: str = "reading and writing video files (.mp4, .mkv, .avi, .mov, .webm)"):
    """PyAV (the ``video`` extra), which reads and writes video files; frame folders need nothing."""
    return require("av", "video", purpose)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Clip:
    """Where a clip is: ``path`` (a frame folder or a video file) and ``name``, its path relative to the set."""

    path: Path
    name: str

    @property
    def is_video(self) -> bool:
        return self.path.is_file()

    def frame_files(self) -> list[Path]:
        """A frame folder's images, in name order."""
        return sorted(p for p in self.path.iterdir() if p.is_file() and is_image(p) and not p.name.startswith("."))


def list_clips(root: str | os.PathLike) -> list[Clip]:
    """The clips under ``root``: a video file; a frame folder; or a folder searched recursively for video files
    and frame folders (folders holding images), sorted by name."""
    root = Path(root).expanduser()
    if root.is_file():
        return [Clip(root, root.name)] if is_video(root) else []
    if not root.is_dir():
        return []
    clips = []
    for path in sorted(root.rglob("*")):
        if path.name.startswith("."):
            continue
        if path.is_file() and is_video(path):
            clips.append(Clip(path, path.relative_to(root).as_posix()))
        elif path.is_dir() and any(is_image(p) for p in path.iterdir() if p.is_file()):
            clips.append(Clip(path, path.relative_to(root).as_posix()))
    if not clips and any(is_image(p) for p in root.iterdir() if p.is_file()):
        clips.append(Clip(root, root.name))  # root is itself one frame folder
    return clips


def _frame_tensor(frame, channels: int) -> torch.Tensor:
    array = frame.to_ndarray(format="gray" if channels == 1 else "rgb24")
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)


def frame_rate(clip: Clip) -> Fraction:
    """The clip's frame rate: the video stream's average rate, or 25 for frame folders and unknown rates."""
    if not clip.is_video:
        return DEFAULT_FPS
    av = pyav()

    with av.open(str(clip.path)) as container:
        rate = container.streams.video[0].average_rate
    return Fraction(rate) if rate else DEFAULT_FPS


def iter_frames(clip: Clip, channels: int = 1) -> Iterator[tuple[str, torch.Tensor]]:
    """``(frame name, (C, H, W) tensor)`` for each frame, decoded one at a time. Frame names are the frame
    files' names for a frame folder and ``00000.png, 00001.png, ...`` for a video."""
    if not clip.is_video:
        for path in clip.frame_files():
            yield path.name, read_image(path, channels)
        return
    av = pyav()

    with av.open(str(clip.path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            yield f"{index:05d}.png", _frame_tensor(frame, channels)


def read_clip(clip: Clip | str | os.PathLike, channels: int = 1) -> torch.Tensor:
    """A whole clip as ``(T, C, H, W)`` (for test sets and training clips; correction streams instead)."""
    clip = clip if isinstance(clip, Clip) else Clip(Path(clip), Path(clip).name)
    frames = [frame for _, frame in iter_frames(clip, channels)]
    if not frames:
        raise ValueError(f"{clip.path}: no frames")
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"{clip.path}: frames of different sizes")
    return torch.stack(frames)


# -- writing -------------------------------------------------------------------------------------------
class ClipWriter:
    """Write a clip frame by frame to ``path``, atomically: into a temporary name in the same folder, renamed
    by :meth:`close`; :meth:`abort` removes it. A frame folder when ``path`` has no video suffix, else a video.

    Args:
        path: the output frame folder, or video file (its suffix must match the codec's container).
        fps: frame rate of a video.
        codec: ``ffv1`` (lossless, Matroska) or ``libx264`` (H.264 at ``crf``, default 0).
        crf: libx264's constant rate factor (0 lossless in YUV 4:4:4, 17-18 visually lossless, 23 default).
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | str | float = DEFAULT_FPS, codec: str = "ffv1",
                 crf: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.video = is_video(self.path)
        self.fps, self.codec, self.crf = Fraction(fps).limit_denominator(1001 * 1000), codec, crf
        self.count = 0
        self.container = self.stream = None
        self.tmp = temporary(self.path, folder=not self.video)  # m3l.io.atomic's naming: a rerun clears it

    def _open(self, channels: int, height: int, width: int) -> None:
        av = pyav()

        self.container = av.open(str(self.tmp), "w", format=CONTAINERS[self.path.suffix.lower()])
        self.stream = self.container.add_stream(self.codec, rate=self.fps)
        self.stream.width, self.stream.height = width, height
        if self.codec == "ffv1":
            self.stream.pix_fmt = "gray" if channels == 1 else "bgr0"
        else:
            self.stream.pix_fmt = "yuv444p" if (self.crf or 0) == 0 or width % 2 or height % 2 else "yuv420p"
            self.stream.options = {"crf": str(self.crf or 0), "threads": "1"}

    def write(self, frame: torch.Tensor, name: str | None = None) -> None:
        """Append ``frame`` (``(C, H, W)`` in [0, 1]); ``name`` is its file name in a frame folder."""
        if not self.video:
            write_png(frame, self.tmp / Path(name or f"{self.count:05d}.png").with_suffix(".png").name)
            self.count += 1
            return
        av = pyav()

        if self.container is None:
            self._open(*frame.shape)
        array = to_uint8(frame)
        video_frame = av.VideoFrame.from_ndarray(array, format="gray" if array.ndim == 2 else "rgb24")
        for packet in self.stream.encode(video_frame.reformat(format=self.stream.pix_fmt)):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> Path:
        """Finish and move the clip to ``path`` (replacing an older one)."""
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop what was written (an interrupted or failed clip leaves nothing behind)."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the partial file is removed anyway
                pass
            self.container = None
        discard(self.tmp)


def write_clip(clip: torch.Tensor, path: str | os.PathLike, fps: Fraction | float = DEFAULT_FPS,
               names: Sequence[str] | None = None, **options) -> Path:
    """Write a whole ``(T, C, H, W)`` clip (see :class:`ClipWriter`)."""
    writer = ClipWriter(path, fps, **options)
    try:
        for index, frame in enumerate(clip):
            writer.write(frame, names[index] if names else None)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
