"""``VideoRestorationModule``: :class:`~m3l.engine.restoration.RestorationModule` for clips, batches ``(B, T, C, H, W)``.

A video net (see :mod:`m3l.models.video`) maps a window of ``net.frames`` consecutive frames to the restored
centre frame; this module slides that window over clips:

- training: crops of ``T >= net.frames`` frames; the loss is over the frames whose window lies inside the crop;
- evaluation of a net with a ``forward_clip`` (FastDVDnet): the net restores runs of consecutive frames at once,
  sharing what overlapping windows have in common (same output as window by window);
- validation / test: whole clips, their ends mirrored (:func:`m3l.data.video.reflect_index`); a test row per
  clip (PSNR / SSIM = mean over its frames, plus ``frames``) and one per frame in ``frame_rows``;
- predict: chunks of a clip with ``offset`` context frames before them (see
  :class:`m3l.data.video_folders.StreamedClips`), so memory is bounded by the chunk, not the clip.

It is chosen for nets with a ``frames`` attribute (see :func:`m3l.run.common.build_module`).
"""

from __future__ import annotations

import torch

from m3l.errors import M3LError
from m3l.engine.restoration import RestorationModule, required_arguments


def reflect_pad(clip: torch.Tensor, radius: int, dim: int = 1) -> torch.Tensor:
    """``clip`` with ``radius`` frames mirrored onto each end along ``dim``."""
    from m3l.data.video import reflect_index

    length = clip.shape[dim]
    index = torch.tensor([reflect_index(i, length) for i in range(-radius, length + radius)], device=clip.device)
    return clip.index_select(dim, index)


class VideoRestorationModule(RestorationModule):
    """Train, test and correct clips with a video net (``net.frames`` frames in, the centre frame out).

    Args: those of :class:`~m3l.engine.restoration.RestorationModule`, plus
        windows_per_step: windows run through the net at once in evaluation (bounds memory on long clips).
        reuse: in evaluation, restore runs of frames with the net's ``forward_clip`` when it has one and the side
            information is the same in every frame of a clip (FastDVDnet: each stage-1 output computed once, not
            3 times); False runs every window through ``forward`` (the baseline of benchmarks/fastdvdnet_reuse.py).
            A net with ``trains_on_clips`` (Shift-Net, whose output depends on the whole clip it sees) always goes
            through ``forward_clip``, in training too.
    """

    def __init__(self, net, *args, windows_per_step: int = 8, reuse: bool = True, **kwargs):
        super().__init__(net, *args, **kwargs)
        self.window = int(net.frames)
        self.radius = self.window // 2
        self.windows_per_step = windows_per_step
        self.reuse = reuse
        self.required_side = getattr(net, "required_side", None) or required_arguments(net)
        self.frame_rows: list[dict] = []

    def restore_centres(self, clip: torch.Tensor, side: dict, centres: range) -> torch.Tensor:
        """The restored frames ``centres`` of ``clip`` ``(B, T, C, H, W)``, each from the window around it (which
        must lie inside the clip); side entries are per frame, ``(B, T, ...)``. Returns ``(B, len(centres), C, H, W)``."""
        side = self.net_side(side)
        b, r = clip.shape[0], self.radius
        if centres and (centres[0] < r or centres[-1] + r >= clip.shape[1]):
            raise M3LError(f"the net sees {self.window} frames: data.frames must be at least {self.window}")
        if self._reuses(side, centres):
            clip_side = {k: v[:, 0] for k, v in side.items()}  # one value per clip
            run = lambda x: self.net.forward_clip(x, step=self.windows_per_step, **clip_side)  # noqa: E731
            part = clip[:, centres[0] - r:centres[-1] + r + 1]
            return run(part) if self.training else self.evaluate(run, part, {})
        step = self.windows_per_step if not self.training else len(centres)
        outputs = []
        for first in range(0, len(centres), max(1, step)):
            part = centres[first:first + step]
            windows = torch.stack([clip[:, t - r:t + r + 1] for t in part], 1).flatten(0, 1)
            frame_side = {k: v[:, list(part)].flatten(0, 1) for k, v in side.items()}
            out = self(windows, **frame_side) if self.training else self.evaluate(self, windows, frame_side)
            outputs.append(out.unflatten(0, (b, len(part))))
        return torch.cat(outputs, 1)

    def _reuses(self, side: dict, centres: range) -> bool:
        """Whether evaluation can go through ``net.forward_clip``: it has one, and each side entry is the same in every
        frame of a clip (the per-window path gives each window its centre frame's value)."""
        clips = getattr(self.net, "trains_on_clips", False)  # Shift-Net: the crop is the net's clip, in training too
        return ((self.reuse or clips) and (clips or not self.training) and len(centres) > 0
                and hasattr(self.net, "forward_clip")
                and all(bool((v == v[:, :1]).all()) for v in side.values()))

    def restore(self, batch: dict) -> torch.Tensor:
        """Every frame of whole clips ``(B, T, C, H, W)``, the clip ends mirrored."""
        clip, r = batch["input"], self.radius
        side = {k: reflect_pad(v, r) for k, v in batch.get("side", {}).items()}
        return self.restore_centres(reflect_pad(clip, r), side, range(r, r + clip.shape[1]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        clip, r = batch["input"], self.radius
        output = self.restore_centres(clip, batch.get("side", {}), range(r, clip.shape[1] - r))
        loss = self.loss(output.flatten(0, 1), batch["target"][:, r:clip.shape[1] - r].flatten(0, 1))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_test_epoch_start(self) -> None:
        self.test_rows, self.frame_rows = [], []

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        output = self.restore(batch)
        for i in range(len(output)):
            target = batch["target"][i]
            columns = self.measure(output[i], batch["input"][i], target)  # a value per frame
            about = {"dataset": batch["dataset"][i], "degradation": batch["degradation"][i], "image": batch["path"][i]}
            self.test_rows.append({**about, "frames": target.shape[0], "height": target.shape[-2],
                                   "width": target.shape[-1],
                                   **{name: float(values.mean()) for name, values in columns.items()}})
            self.frame_rows += [{**about, "frame": t, **{name: float(values[t]) for name, values in columns.items()}}
                                for t in range(target.shape[0])]

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor | None:
        """Restore a chunk: frames ``offset .. offset + count - 1`` of ``batch["input"]``."""
        if "input" not in batch:  # the clip could not be read
            return None
        offset, count = int(batch["offset"]), int(batch["count"])
        return self.restore_centres(batch["input"], batch.get("side", {}), range(offset, offset + count)).clamp(0, 1)
