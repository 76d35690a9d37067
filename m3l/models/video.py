"""Video nets: a window of ``frames`` consecutive frames ``(N, frames, C, H, W)`` in, its centre frame
``(N, C, H, W)`` out. :class:`m3l.engine.video_restoration.VideoRestorationModule` slides the window over clips.

- :class:`PerFrame` runs any image net on each frame alone (``frames = 1``): the baseline.
- :class:`FastDVDnet` (Tassano, Delon, Veit, CVPR 2020): two stages of U-Net denoising blocks over 5
  frames, each block seeing 3 frames and the noise map, with no optical flow (the blocks learn to align).
  2.48M parameters for RGB at the paper's widths (32, 64, 128).
"""

from __future__ import annotations

import torch
from torch import nn

from m3l.models.common import crop, pad_to_multiple


class PerFrame(nn.Module):
    """Restore each frame with the image net ``net`` (any ``m3l.models`` net config); side information such as
    ``sigma`` is passed on when ``net.forward`` takes it."""

    frames = 1

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        from m3l.engine.restoration import forward_arguments, required_arguments

        self.side_arguments = forward_arguments(net)
        self.required_side = required_arguments(net)

    def forward(self, x: torch.Tensor, **side) -> torch.Tensor:
        if self.side_arguments is not None:
            side = {k: v for k, v in side.items() if k in self.side_arguments}
        return self.net(x[:, x.shape[1] // 2], **side)


def _conv(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True)]


def icnr_(weight: torch.Tensor, scale: int = 2) -> None:
    """Initialise a convolution followed by ``PixelShuffle(scale)`` so that, at first, its ``scale**2`` sub-pixels
    are equal (nearest-neighbour upsampling): no checkerboard artifacts to unlearn (Aitken et al. 2017, "ICNR")."""
    out, *rest = weight.shape
    sub = torch.empty(out // scale**2, *rest)
    nn.init.kaiming_uniform_(sub, a=5**0.5)  # nn.Conv2d's default
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))


class DenoisingBlock(nn.Module):
    """FastDVDnet's denoising block: a small U-Net over 3 frames (each with its noise map) that returns the
    middle frame minus the predicted noise. Input convolution grouped per frame (``per_frame`` channels each),
    two strided-convolution downsamplings, pixel-shuffle upsamplings (ICNR-initialised), additive skips."""

    def __init__(self, channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128), per_frame: int = 30):
        super().__init__()
        w0, w1, w2 = widths
        self.inc = nn.Sequential(*_conv(3 * (channels + 1), 3 * per_frame, groups=3), *_conv(3 * per_frame, w0))
        self.down0 = nn.Sequential(*_conv(w0, w1, stride=2), *_conv(w1, w1), *_conv(w1, w1))
        self.down1 = nn.Sequential(*_conv(w1, w2, stride=2), *_conv(w2, w2), *_conv(w2, w2))
        self.up1 = nn.Sequential(*_conv(w2, w2), *_conv(w2, w2), nn.Conv2d(w2, 4 * w1, 3, 1, 1, bias=False),
                                 nn.PixelShuffle(2))
        self.up0 = nn.Sequential(*_conv(w1, w1), *_conv(w1, w1), nn.Conv2d(w1, 4 * w0, 3, 1, 1, bias=False),
                                 nn.PixelShuffle(2))
        self.out = nn.Sequential(*_conv(w0, w0), nn.Conv2d(w0, channels, 3, 1, 1, bias=False))
        for up in (self.up1[-2], self.up0[-2]):
            icnr_(up.weight)


    def forward(self, frames: tuple[torch.Tensor, torch.Tensor, torch.Tensor], noise_map: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(torch.cat([t for f in frames for t in (f, noise_map)], dim=1))
        x1 = self.down0(x0)
        x2 = self.up1(self.down1(x1))
        x1 = self.up0(x1 + x2)
        return frames[1] - self.out(x0 + x1)


class FastDVDnet(nn.Module):
    """FastDVDnet: stage 1 denoises frames (0,1,2), (1,2,3), (2,3,4) with one shared block, stage 2 fuses the three
    results with a second block. Non-blind: ``sigma`` (``(N,)`` or scalar, [0, 1] scale) becomes a noise map.
    Sizes not divisible by 4 are padded (reflection) and cropped back.

    Args:
        channels: 1 (gray) or 3 (RGB; the paper's model).
        widths: channels of the three U-Net levels (32, 64, 128 in the paper).
        per_frame: channels per frame of the grouped input convolution (30 in the paper).
    """

    frames = 5
    multiple = 4  # sizes are padded to a multiple of it

    def __init__(self, channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128), per_frame: int = 30):
        super().__init__()
        self.stage1 = DenoisingBlock(channels, tuple(widths), per_frame)
        self.stage2 = DenoisingBlock(channels, tuple(widths), per_frame)

    def _padded(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(N, T, C, H, W)`` reflection-padded to sizes divisible by 4, and its noise map ``(N, 1, H', W')``."""
        n = x.shape[0]
        x = pad_to_multiple(x, self.multiple, mode="reflect")[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return x, sigma.expand(n, 1, *x.shape[-2:])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = x.shape
        if t != self.frames:
            raise ValueError(f"FastDVDnet takes {self.frames} frames, got {t}")
        x, noise_map = self._padded(x, sigma)
        frames = x.unbind(1)
        middle = [self.stage1(frames[i:i + 3], noise_map) for i in range(3)]
        out = self.stage2(tuple(middle), noise_map)
        return crop(out, (h, w))

    @staticmethod
    def _triples(block: nn.Module, x: torch.Tensor, noise_map: torch.Tensor, centres: range) -> torch.Tensor:
        """``block`` on the frame triples ``(i - 1, i, i + 1)`` of ``x`` ``(N, T, C, H, W)`` for ``i`` in ``centres``,
        as one batch: ``(N, len(centres), C, H, W)``."""
        triples = torch.stack([x[:, i - 1:i + 2] for i in centres], 1).flatten(0, 1)
        out = block(triples.unbind(1), noise_map.repeat_interleave(len(centres), 0))
        return out.unflatten(0, (x.shape[0], len(centres)))

    def forward_clip(self, x: torch.Tensor, sigma: torch.Tensor, step: int = 8) -> torch.Tensor:
        """Every frame of ``x`` ``(N, T, C, H, W)`` that has 2 frames on each side, ``(N, T - 4, C, H, W)``: the
        output of :meth:`forward` on each window ``x[:, t - 2:t + 3]``, with each stage-1 output computed once per
        frame triple instead of once per window that holds it (3 times): about half the work. ``sigma``: one noise
        level per clip, ``(N,)`` or scalar. ``step`` frames are restored at a time (memory grows with it, not with T).
        """
        n, t, c, h, w = x.shape
        if t < self.frames:
            raise ValueError(f"FastDVDnet takes at least {self.frames} frames, got {t}")
        x, noise_map = self._padded(x, sigma)
        outputs, kept, done = [], x.new_empty(n, 0, *x.shape[2:]), 1  # kept: the last 2 stage-1 outputs
        for first in range(2, t - 2, max(1, step)):  # restore frames first .. last - 1
            last = min(first + max(1, step), t - 2)
            middle = torch.cat([kept, self._triples(self.stage1, x, noise_map, range(done, last + 1))], 1)
            done = last + 1  # middle: stage-1 outputs of the triples centred on first - 1 .. last
            outputs.append(self._triples(self.stage2, middle, noise_map, range(1, middle.shape[1] - 1)))
            kept = middle[:, -2:]
        return crop(torch.cat(outputs, 1), (h, w))
