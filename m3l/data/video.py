"""Clips as data: degrading them, and the embedded synthetic ones (reading and writing them: :mod:`m3l.io.clips`).

:class:`H264` is a degradation of whole clips (H.264 at a CRF through libx264), usable wherever a
degradation is, with :func:`degrade_clip` applying any image degradation of
:mod:`m3l.data.degradations` frame by frame (per-frame or per-clip parameters).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from m3l.data.degradations import SIDE_SCALE, Compose
from m3l.io.clips import _frame_tensor, pyav
from m3l.io.images import read_image, to_uint8


def reflect_index(index: int, length: int) -> int:
    """Frame ``index`` of a clip of ``length`` frames mirrored at its ends (``-1 -> 1``, ``T -> T-2``), clamped
    for clips too short to mirror: the border handling of the sliding window."""
    if length <= 1:
        return 0
    if index < 0:
        index = -index
    if index >= length:
        index = 2 * (length - 1) - index
    return min(max(index, 0), length - 1)



# -- degradations ----------------------------------------------------------------------------------------
class H264:
    """H.264 compression of a whole clip through libx264 (PyAV) at constant rate factor ``crf`` (0-51; fixed or
    ``[low, high]`` drawn per clip), 4:2:0 chroma, decoded back. A *clip* degradation: it is called on
    ``(T, C, H, W)`` clips, not on frames. Odd sizes are padded to even ones (edge pixels) and cropped back.
    Side information: ``crf`` (``crf / 51``).
    """

    clip_level = True

    def __init__(self, crf: int | Sequence[int] = 28, preset: str = "medium"):
        if isinstance(crf, Sequence) and not isinstance(crf, str) and len(crf) != 2:
            raise ValueError(f"crf must be a number or [low, high], got {crf!r}")
        pyav("the H.264 degradation")  # a missing PyAV is one line now, not an error in a data loader worker later
        self.crf, self.preset = crf, preset
        self.blind = isinstance(crf, Sequence) and not isinstance(crf, str)

    @property
    def name(self) -> str:
        return f"h264crf{self.crf[0]}-{self.crf[1]}" if self.blind else f"h264crf{self.crf}"

    def __call__(self, clip: torch.Tensor, rng: np.random.RandomState):
        av = pyav()

        crf = int(rng.randint(self.crf[0], self.crf[1] + 1)) if self.blind else int(self.crf)
        t, c, h, w = clip.shape
        padded = torch.nn.functional.pad(clip, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else clip
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = padded.shape[-1], padded.shape[-2]
        encoder.pix_fmt, encoder.time_base, encoder.framerate = "yuv420p", Fraction(1, 25), Fraction(25)
        encoder.options = {"crf": str(crf), "preset": self.preset, "threads": "1"}
        packets = []
        for index, frame in enumerate(padded):
            array = to_uint8(frame)
            video_frame = av.VideoFrame.from_ndarray(array, format="gray" if c == 1 else "rgb24").reformat(format="yuv420p")
            video_frame.pts = index
            packets += encoder.encode(video_frame)
        packets += encoder.encode(None)
        decoder = av.CodecContext.create("h264", "r")
        decoder.thread_count = 1
        frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
        degraded = torch.stack([_frame_tensor(f, c) for f in frames])[..., :h, :w]
        if len(degraded) != t:
            raise RuntimeError(f"H264: encoded {t} frames, decoded {len(degraded)}")
        return degraded.contiguous(), {"crf": torch.full((t,), crf / 51.0)}

    def __repr__(self) -> str:
        return f"H264(crf={self.crf!r})"


def _freeze(degradation, side: dict):
    """A copy of ``degradation`` whose randomly drawn parameters (``[low, high]`` ranges of sigma, quality, ...)
    are fixed to the values in ``side``: the same parameters for every frame of a clip."""
    if isinstance(degradation, Compose):
        frozen = copy.copy(degradation)
        frozen.steps = [_freeze(step, side) for step in degradation.steps]
        return frozen
    if not getattr(degradation, "blind", False):
        return degradation
    frozen = copy.copy(degradation)
    for key, value in side.items():
        if key in SIDE_SCALE and hasattr(frozen, key):
            drawn = float(value) * SIDE_SCALE[key]
            setattr(frozen, key, round(drawn) if key == "quality" else drawn)
            frozen.blind = False
    return frozen


def degrade_clip(degradation, clip: torch.Tensor, rng: np.random.RandomState, per_clip: bool = True):
    """Degrade a ``(T, C, H, W)`` clip: a clip degradation (:class:`H264`) as a whole; an image degradation frame
    by frame with ``rng``, its parameters drawn once per clip (``per_clip``) or for every frame. Noise is always
    drawn afresh for each frame. Returns the clip and its side information, each entry ``(T, ...)``."""
    if getattr(degradation, "clip_level", False):
        return degradation(clip, rng)
    frames, sides = [], []
    step = degradation
    for index, frame in enumerate(clip):
        degraded, side = step(frame, rng)
        if per_clip and index == 0:
            step = _freeze(degradation, side)
        frames.append(degraded)
        sides.append(side)
    stacked = {key: torch.stack([s[key] for s in sides]) for key in sides[0] if all(key in s for s in sides)}
    return torch.stack(frames), stacked


# -- synthetic clips -------------------------------------------------------------------------------------
def moving_crops(image: torch.Tensor, frames: int, height: int, width: int, rng: np.random.RandomState,
                 max_speed: float = 2.0) -> torch.Tensor:
    """A ``(frames, C, height, width)`` clip: a window panning over ``image`` (``(C, H, W)``) at a random
    constant velocity of up to ``max_speed`` pixels per frame (rounded to whole pixels, bouncing off the edges),
    like a camera pan over a still scene."""
    _, h, w = image.shape
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} larger than the image {h}x{w}")
    span = np.array([h - height, w - width], dtype=float)
    position = rng.uniform(0, 1, 2) * span
    velocity = rng.uniform(-max_speed, max_speed, 2)
    crops = []
    for _ in range(frames):
        top, left = np.round(position).astype(int)
        crops.append(image[:, top:top + height, left:left + width])
        position = position + velocity
        for axis in range(2):  # bounce off the edges
            if position[axis] < 0 or position[axis] > span[axis]:
                velocity[axis] = -velocity[axis]
                position[axis] = min(max(position[axis], 0.0), span[axis])
    return torch.stack(crops).contiguous()


# The embedded test clips: (photo, frames, height, width); clips of different lengths and sizes.
TEST_CLIPS = (("astronaut.png", 10, 96, 128), ("chelsea.png", 12, 128, 96), ("coffee.png", 8, 112, 112),
              ("rocket.jpg", 14, 96, 96))
VAL_CLIPS = (("camera.png", 8, 96, 96), ("coins.png", 8, 96, 96))


def embedded_clips(split: str, channels: int = 1, seed: int = 0, count: int = 100, size: int = 128,
                   frames: int = 16, crop: int = 64, rmin: float = 3.0) -> dict[str, torch.Tensor]:
    """The embedded synthetic clips, ``{name: (T, C, H, W)}``, made by moving crops over the embedded images:
    ``train``: ``count`` clips of ``frames`` frames of ``crop`` pixels over the dead-leaves images (``size``);
    ``val`` / ``test``: a few clips of different lengths and sizes over scikit-image's photos."""
    from m3l.data import embedded

    if split == "train":
        images = torch.from_numpy(embedded.dead_leaves_images(count, size, seed, channels, rmin))
        rng = np.random.RandomState(seed)
        return {f"deadleaves{i:03d}": moving_crops(image, frames, crop, crop, rng) for i, image in enumerate(images)}
    specs = {"val": VAL_CLIPS, "test": TEST_CLIPS}[split]
    folder = embedded.photos(split)[0].parent
    rng = np.random.RandomState(seed + 1)
    return {Path(name).stem: moving_crops(read_image(folder / name, channels), t, h, w, rng)
            for name, t, h, w in specs}
