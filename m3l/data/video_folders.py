"""``VideoFolderDataModule``: train, validate, test and correct over clips (frame folders and video files).

- training: random spatio-temporal crops, ``frames`` consecutive frames of ``patch_size`` pixels (same flip /
  rotation for every frame, and random time reversal), cut from the decoded-pixel cache (:mod:`m3l.data.cache`: every
  training clip decoded once into one memory-mapped file shared by all workers and ranks; ``data.cache=false``
  reads frame folders for every crop and holds videos decoded in each process), degraded with any degradation of the zoo frame by frame
  (parameters drawn per clip or per frame, noise always per frame) or as a whole (:class:`~m3l.data.video.H264`);
- validation and test: whole clips, each degraded with ``RandomState(seed)``;
- correction: each clip streamed in chunks of ``chunk`` frames with ``frames // 2`` context frames on each side
  (mirrored at the clip's ends), decoded lazily, so memory stays bounded by the chunk whatever the clip length.

With no folders it uses the embedded synthetic clips (:func:`m3l.data.video.embedded_clips`): windows moving
over the dead-leaves images (training) and over scikit-image's photos (validation, test set ``clips``).

Paired clips (video deblurring: degraded and clean frames recorded, not synthesised): with ``input`` and ``target``
set, every folder's clips are pairs, as :mod:`m3l.data.paired_folders` pairs images: a clip whose path below the
folder (with ``/`` around it) contains ``input`` is an input, its target the clip at that path with ``input``
replaced by ``target``; nothing is degraded, and result rows name the degradation ``real``. GoPro
(``GOPRO_Large/test/<seq>/blur/``, ``<seq>/sharp/``): ``input: /blur/``, ``target: /sharp/``; the CDVD-TSP / Shift-Net
copies of GoPro and DVD (``test/blur/<seq>/``, ``test/gt/<seq>/``): ``/blur/`` and ``/gt/``; DVD as released
(``<seq>/input/``, ``<seq>/GT/``): ``/input/`` and ``/GT/``. Paired training reads frame folders for every crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from m3l.data import cache as pixel_cache
from m3l.data.datasets import collate
from m3l.data.degradations import GaussianNoise, require_test_levels, side_from_config
from m3l.data.image_folders import FolderDataModule, default_workers, info
from m3l.io.clips import Clip, frame_rate, iter_frames, list_clips, read_clip
from m3l.data.video import degrade_clip, embedded_clips, reflect_index
from m3l.errors import M3LError
from m3l.run.extras import require
from m3l.io.images import read_image, to_float


def clip_pairs(source, input: str, target: str, what: str) -> dict[str, tuple[Clip, Clip]]:
    """``{name: (input clip, target clip)}`` under the folder ``source``: each clip whose ``/name/`` contains
    ``input``, paired with the clip at that path with ``input`` replaced by ``target`` (the same frame count). A
    missing target or a count that differs is one line; so is a folder with no input clip."""
    root = Path(source).expanduser()
    pairs = {}
    for clip in _clips(source, what):
        marked = f"/{clip.name}/"
        if input not in marked or clip.is_video:
            continue
        partner = Clip(root / marked.replace(input, target, 1).strip("/"), marked.replace(input, target, 1).strip("/"))
        if not partner.path.is_dir():
            raise M3LError(f"{what}: {clip.path} has no target clip {partner.path} (pairs: {input!r} -> {target!r} "
                           f"in the path)")
        counts = len(clip.frame_files()), len(partner.frame_files())
        if counts[0] != counts[1]:
            raise M3LError(f"{what}: {clip.path} has {counts[0]} frames and its target {partner.path} {counts[1]}")
        pairs[clip.name] = (clip, partner)
    if not pairs:
        raise M3LError(f"{what}: no frame folder under {root} has {input!r} in its path (set data.input / "
                       f"data.target)")
    return pairs


class PairedSource:
    """A training pair of frame folders: ``crop`` returns the input's and the target's same crop."""

    def __init__(self, pair: tuple[Clip, Clip], channels: int):
        self.input, self.target = FrameSource(pair[0], channels), FrameSource(pair[1], channels)
        if self.input.shape != self.target.shape:
            raise M3LError(f"data.train_dir: {pair[0].path} is {self.input.shape} and its target {self.target.shape}")
        self.shape = self.input.shape

    def __len__(self) -> int:
        return len(self.input)

    def crop(self, start: int, count: int, top: int, left: int, size: int) -> torch.Tensor:
        return torch.stack([s.crop(start, count, top, left, size) for s in (self.input, self.target)])


def _clips(source, what: str) -> list[Clip]:
    root = Path(source).expanduser()
    if not root.exists():
        raise M3LError(f"{what}: {root} does not exist; give a folder of clips (frame folders, videos) or a video")
    clips = list_clips(root)
    if not clips:
        raise M3LError(f"{what}: no clips (frame folders, or mp4 / mkv / avi videos) in {root}")
    if any(clip.is_video for clip in clips):
        require("av", "video", f"{what}: the videos in {root}")
    return clips


class FrameSource:
    """Random access to a training clip's frames: a clip of the pixel cache (``pixels[index]``, ``(T, C, H, W)``,
    only a crop's pixels read); else a frame folder is read a few frames at a time, a video is decoded once and
    kept as 8-bit frames, and an in-memory clip is used as is."""

    def __init__(self, clip: Clip | torch.Tensor | None, channels: int,
                 pixels: pixel_cache.PixelCache | None = None, index: int = 0):
        self.channels, self.pixels, self.index = channels, pixels, index
        if pixels is not None:
            self.data = self.files = None
            self.length, self.shape = pixels.shapes[index][0], tuple(pixels.shapes[index][-2:])
            return
        if isinstance(clip, torch.Tensor):
            self.data, self.files = clip, None
        elif clip.is_video:
            self.data, self.files = read_clip(clip, channels).mul(255).round().to(torch.uint8), None
        else:
            self.data, self.files = None, clip.frame_files()
        first = self.data[0] if self.data is not None else read_image(self.files[0], channels)
        self.shape = tuple(first.shape[-2:])

    def __len__(self) -> int:
        if self.pixels is not None:
            return self.length
        return len(self.data) if self.data is not None else len(self.files)

    def crop(self, start: int, count: int, top: int, left: int, size: int) -> torch.Tensor:
        """``count`` frames from ``start``, cropped to ``size`` pixels at ``(top, left)``: the same floats whether
        cut from the cache or from decoded frames."""
        if self.pixels is not None:
            return to_float(self.pixels[self.index][start:start + count, :, top:top + size, left:left + size])
        return self.frames(start, count)[..., top:top + size, left:left + size]

    def frames(self, start: int, count: int) -> torch.Tensor:
        if self.pixels is not None:
            return to_float(self.pixels[self.index][start:start + count])
        if self.data is None:
            return torch.stack([read_image(f, self.channels) for f in self.files[start:start + count]])
        part = self.data[start:start + count]
        return part.float().div(255) if part.dtype == torch.uint8 else part


class ClipCrops(Dataset):
    """``length`` random crops of ``frames`` consecutive frames and ``patch_size`` pixels, degraded on the fly."""

    def __init__(self, sources: list[FrameSource], degradation, frames: int = 5, patch_size: int = 48,
                 length: int = 320, augment: bool = True, per_clip: bool = True):
        self.sources = [s for s in sources if len(s) >= frames and min(s.shape) >= patch_size]
        if not self.sources:
            raise M3LError(f"data.train_dir: no clip has {frames} frames (data.frames) of at least "
                           f"{patch_size} pixels (data.patch_size)")
        self.degradation, self.frames, self.patch_size = degradation, frames, patch_size
        self.length, self.augment, self.per_clip = length, augment, per_clip

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        source = self.sources[int(torch.randint(len(self.sources), ()))]
        p, (h, w) = self.patch_size, source.shape
        start = int(torch.randint(len(source) - self.frames + 1, ()))
        top, left = int(torch.randint(h - p + 1, ())), int(torch.randint(w - p + 1, ()))
        crop = source.crop(start, self.frames, top, left, p)  # a pair: (2, T, C, p, p)
        if self.augment:
            k, flip, reverse = (int(torch.randint(n, ())) for n in (4, 2, 2))
            crop = torch.rot90(crop, k, (-2, -1))
            crop = crop.flip(-1) if flip else crop
            crop = crop.flip(-4) if reverse else crop
        crop = crop.contiguous()
        if isinstance(source, PairedSource):
            return {"input": crop[0], "target": crop[1], "side": {}}
        rng = np.random.RandomState(int(torch.randint(2**31 - 1, ())))
        degraded, side = degrade_clip(self.degradation, crop, rng, self.per_clip)
        return {"input": degraded, "target": crop, "side": side}


class ClipEvalDataset(Dataset):
    """Whole clean clips, each degraded with ``numpy.random.RandomState(seed)``; or ``(input, target)`` pairs of
    clips, read as they are (the rows' degradation: ``real``)."""

    def __init__(self, clips: Mapping[str, Clip | torch.Tensor | tuple[Clip, Clip]], degradation, channels: int = 1,
                 dataset: str = "test", seed: int = 0, per_clip: bool = True):
        self.names, self.clips = list(clips), list(clips.values())
        self.degradation, self.channels, self.dataset = degradation, channels, dataset
        self.seed, self.per_clip = seed, per_clip

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        if isinstance(clip, tuple):
            degraded, target = (read_clip(c, self.channels) for c in clip)
            return {"input": degraded, "target": target, "side": {}, "path": self.names[index],
                    "dataset": self.dataset, "degradation": "real"}
        target = clip if isinstance(clip, torch.Tensor) else read_clip(clip, self.channels)
        degraded, side = degrade_clip(self.degradation, target, np.random.RandomState(self.seed), self.per_clip)
        return {"input": degraded, "target": target, "side": side, "path": self.names[index],
                "dataset": self.dataset, "degradation": self.degradation.name}


class StreamedClips(IterableDataset):
    """Clips to correct, as they are, in chunks: each item holds frames ``start .. start + count - 1`` of a clip
    after ``offset`` context frames, and ``offset`` after them (mirrored at the clip's ends), with ``path`` (the
    clip's name), ``frame_names``, ``fps``, ``start`` and ``last``. Frames are decoded as they are needed: at
    most ``chunk + 2 * radius + 1`` of them are held. An unreadable clip yields one ``error`` item (the
    serializer drops what it wrote of it). With several workers, each streams its share of the clips."""

    def __init__(self, clips: list[Clip], channels: int = 1, chunk: int = 8, radius: int = 2, side: dict | None = None):
        self.clips, self.channels, self.chunk, self.radius = clips, channels, max(1, chunk), radius
        self.side = dict(side or {})

    def __iter__(self):
        worker = get_worker_info()
        clips = self.clips if worker is None else self.clips[worker.id::worker.num_workers]
        for clip in clips:
            try:
                yield from self._chunks(clip)
            except Exception as error:  # PyAV and Pillow raise several types for bad files
                yield {"path": clip.name, "error": f"{type(error).__name__}: {error}".strip()}

    def _chunks(self, clip: Clip):
        r, fps = self.radius, str(frame_rate(clip))
        decoded = iter_frames(clip, self.channels)
        frames, names = {}, {}
        read, length, start = 0, None, 0
        while True:
            end = start + self.chunk
            while length is None and read <= end + r:  # one frame ahead, to know whether the clip goes on
                try:
                    names[read], frames[read] = next(decoded)
                    read += 1
                except StopIteration:
                    length = read
            if length == 0:
                raise ValueError("no frames")
            end = min(end, length) if length is not None else end
            if start >= end:
                return
            n = length if length is not None else read + r + 1  # mirroring at the end only once it is known
            window = [frames[reflect_index(i, n)] for i in range(start - r, end + r)]
            if len({f.shape for f in window}) > 1:
                raise ValueError("frames of different sizes")
            side = {k: v.expand(len(window)) for k, v in self.side.items()}
            yield {"input": torch.stack(window), "side": side, "offset": r, "count": end - start, "path": clip.name,
                   "frame_names": [names[i] for i in range(start, end)], "fps": fps, "start": start,
                   "last": length is not None and end == length, "video": clip.is_video}
            for i in [i for i in frames if i < end - r and i > r]:  # keep the first r+1 frames for the mirror
                del frames[i], names[i]
            start = end


def collate_chunk(item: dict) -> dict:
    """A streamed chunk as a batch of one (``frame_names`` stays a plain list)."""
    if "error" in item:
        return collate([item])
    batch = dict(item)
    batch["input"] = item["input"][None]
    batch["side"] = {k: v[None] for k, v in item["side"].items()}
    return batch


class VideoFolderDataModule(FolderDataModule):
    """Restoration data from clips: folders of frame folders and / or video files.

    Args:
        train_dir, val_dir: folders of clean clips (or one clip); ``None`` uses the embedded synthetic clips.
        test_sets: ``{name: folder}``; ``None`` uses the embedded test clips as ``clips``.
        correct_dir: a folder of clips (frame folders, videos) or one video file (``m3l.run.correct``).
        correct_side: side information for correction (``{sigma: 25}``), for nets that need it (FastDVDnet).
        degradation: a degradation of the zoo (applied per frame) or :class:`~m3l.data.video.H264` (per clip).
        test_degradations: each test set is evaluated once per entry (default: ``[degradation]`` when its
            level is fixed; one that draws its level per image stops with one line).
        per_clip: draw a blind degradation's parameters (noise level, quality) once per clip, else per frame.
        channels: 1 gray, 3 RGB.
        frames: frames of a training crop (at least the net's window: 5 for FastDVDnet, 1 per frame); ``frames // 2``
            context frames are read around each chunk for correction.
        patch_size, train_batch_size, crops_per_epoch, augment: training crops.
        chunk: frames restored per step of correction (memory grows with it, not with the clip's length).
        synthetic: the embedded training clips (``count``, ``size``, ``frames``, ``crop``, ``rmin``).
        progressive: stages of patch and batch sizes by step (see :mod:`m3l.data.progressive`).
        cache: decode the training clips once into a memory-mapped cache shared by every worker and rank
            (:mod:`m3l.data.cache`; the default); ``False`` reads frame folders for every crop and holds videos
            decoded (8-bit) in each process.
        cache_dir: where the cache lives (default ``~/.cache/m3l/pixels``; node-local scratch on a cluster).
        input, target: path fragments marking paired clips (see the module docstring; ``None``: clean clips,
            degraded here). The embedded clips (no folder) are never paired.
    """

    def __init__(self, train_dir: str | None = None, val_dir: str | None = None, test_sets: Mapping | None = None,
                 correct_dir: str | None = None, degradation=None, test_degradations: Sequence | None = None,
                 per_clip: bool = True, channels: int = 1, frames: int = 5, patch_size: int = 48,
                 train_batch_size: int = 8, crops_per_epoch: int = 320, augment: bool = True,
                 num_workers: int | None = None, seed: int = 0, chunk: int = 8, synthetic: Mapping | None = None,
                 correct_side: Mapping | None = None, progressive: Sequence[Mapping] | None = None,
                 cache: bool = True, cache_dir: str | None = None, input: str | None = None,
                 target: str | None = None):
        super().__init__()
        if (input is None) != (target is None):
            raise M3LError("data.input and data.target go together: set both (paired clips, e.g. /blur/ and /gt/) "
                           "or neither")
        self.input, self.target = input, target
        if channels not in (1, 3):
            raise M3LError(f"data.channels must be 1 (gray) or 3 (RGB), got {channels}")
        self.train_dir, self.val_dir, self.test_sets, self.correct_dir = train_dir, val_dir, test_sets, correct_dir
        self.cache, self.cache_dir = cache, cache_dir
        self.degradation = degradation or GaussianNoise(25.0)
        self.test_degradations = list(test_degradations or [])  # empty: the training one, if fixed
        self.per_clip, self.channels, self.frames, self.patch_size = per_clip, channels, frames, patch_size
        self.train_batch_size, self.crops_per_epoch, self.augment = train_batch_size, crops_per_epoch, augment
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.seed, self.chunk, self.synthetic = seed, chunk, dict(synthetic or {})
        self.correct_side = side_from_config(correct_side)
        self.use_progressive(progressive)

    def _clean_clips(self, source, split: str, what: str) -> dict[str, Clip | torch.Tensor | tuple[Clip, Clip]]:
        if source is None:
            return embedded_clips(split, self.channels, self.seed, **(self.synthetic if split == "train" else {}))
        if self.input is not None:
            return clip_pairs(source, self.input, self.target, what)
        return {clip.name: clip for clip in _clips(source, what)}

    def train_cache(self) -> pixel_cache.PixelCache | None:
        if not self.cache or self.train_dir is None or self.input is not None:
            return None
        items = [pixel_cache.Item((clip.path,) if clip.is_video else tuple(clip.frame_files()), clip.name,
                                  clip=not clip.is_video, video=clip.is_video)
                 for clip in _clips(self.train_dir, "data.train_dir")]
        label = str(Path(self.train_dir).expanduser().resolve())
        return pixel_cache.ensure(items, self.channels, "clips", label, self.cache_dir)

    def _train_sources(self) -> list[FrameSource]:
        pixels = self.train_cache()
        if pixels is not None:
            info(*pixel_cache.summary(pixels, "data.train_dir", len(pixels), "clips"))
            return [FrameSource(None, self.channels, pixels, index) for index in range(len(pixels))]
        clips = self._clean_clips(self.train_dir, "train", "data.train_dir")
        if self.train_dir is not None:
            info(f"data.train_dir: {len(clips)} clips, frame folders read for every crop and videos held decoded "
                 f"in every rank (data.cache=false)")
        return [PairedSource(c, self.channels) if isinstance(c, tuple) else FrameSource(c, self.channels)
                for c in clips.values()]

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            sources = self._train_sources()
            self.train_set = ClipCrops(sources, self.degradation, self.frames, self.patch_size, self.crops_per_epoch,
                                       self.augment, self.per_clip)
        if stage in ("fit", "validate", None):
            self.val_set = ClipEvalDataset(self._clean_clips(self.val_dir, "val", "data.val_dir"), self.degradation,
                                           self.channels, "val", self.seed, self.per_clip)
        if stage in ("test", None):
            sets = self.test_sets if self.test_sets is not None else {"clips": None}
            levels = ([self.degradation] if self.input is not None  # pairs: nothing to degrade
                      else require_test_levels(self.degradation, self.test_degradations))
            self.test_sets_ = [ClipEvalDataset(self._clean_clips(source, "test", f"data.test_sets.{name}"), d,
                                               self.channels, name, self.seed, self.per_clip)
                               for name, source in sets.items() for d in levels]
        if stage == "predict":
            if self.correct_dir is None:
                raise M3LError("data.correct_dir is not set: pass data.correct_dir=<folder of clips or a video file>")
            clips = _clips(self.correct_dir, "data.correct_dir")
            if self.predict_filter is not None:  # resume: clips already corrected are not decoded again
                keep = set(self.predict_filter([clip.name for clip in clips]))
                clips = [clip for clip in clips if clip.name in keep]
            self.predict_set = StreamedClips(clips, self.channels, self.chunk, self.frames // 2, self.correct_side)

    def predict_dataloader(self) -> DataLoader:
        workers = min(self.num_workers, len(self.predict_set.clips))
        return DataLoader(self.predict_set, batch_size=None, num_workers=workers, collate_fn=collate_chunk)
