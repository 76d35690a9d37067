"""Shift-Net (Li, Shi, Zhang, Cheung, See, Wang, Qin, Li: "A Simple Baseline for Video Restoration with Grouped
Spatial-temporal Shift", CVPR 2023; arXiv 2206.10810; code dasongli1/Shift-Net, Apache-2.0 as its setup.py
declares): video deblurring with no optical flow, no deformable convolution and no attention, only shifts.

A clip of T frames goes in as a batch of frames; T - 4 frames come out (two frames of context on each side):

1. feature extraction: a 3x3 convolution and a channel-attention block (CAB) per frame (``width0`` channels),
   then ``units`` small 3-level U-Nets of CABs (``orb1..``), a residual, and ``conv_trans``;
2. multi-frame fusion (``stage1``): a 2x2 stride-2 convolution to ``width`` channels and a U-Net whose blocks
   are *grouped spatial-temporal shift blocks*. Each shift block is a run of stages; before each stage the
   features are shifted in time (half the channels take the previous frame's other half, or the next frame's on
   alternate stages: a roll over the flattened frames x channels), then ``8 * (width // 16)`` of the channels
   are copied and shifted in space in 24 groups (by 4 or 8 pixels towards the 8 neighbours on two rings,
   zero-filled) and handed to the stage as extra input: a gated NAFNet-like block (``CAB2``: layer norm, 1x1,
   depthwise 3x3, simple gate, a large-kernel depthwise "RepConv", 1x1, sigmoid gate, channel attention, 1x1,
   scaled by ``beta``) and a second one without the extra channels (``CAB1``);
3. restoration (``rconcat``, ``units`` U-Nets ``rorb1..``, a 5x5 ``conv_last``) of the T - 4 middle frames, added
   to the blurry input frames.

Two released architectures (``variant``):

- ``small`` ("Ours-s", the authors' ``gshift_deblur2.py``): ``width0`` 14, ``width`` 64, U-Net growth 4, 3 units
  a side; fusion U-Net of 2 levels, 3 shift blocks a level on each path, 4 stages a block; channel attention
  without reduction; depthwise RepConvs; the temporal shift *wraps around* the clip (the first frame receives the
  last one's channels);
- ``plus`` ("Ours+", ``gshift_deblur1.py``): ``width0`` 24, ``width`` 80, growth 12, 5 units a side; fusion
  U-Net of 3 levels whose encoder is plain CABs and whose decoder has 2, 2, 3 shift blocks of 8 stages; channel
  attention with reduction 4; RepConvs in groups of 8 channels; the end frames keep their own channels (no
  wrap-around).

The released ``small`` files also hold 2 + 2 U-Nets (``orb4``, ``orb5``, ``rorb4``, ``rorb5``) and a PReLU
(``lrelu``) that the authors' forward never uses; :func:`convert_authors` drops them, so m3l's net has no dead
parameters. As in the authors' code one PReLU is shared by all the CABs of a U-Net (and one by those of the
fusion stage): the released files repeat it under each CAB's key.

Test time: the output of a frame depends on the whole clip the net is given (the shifts reach far in time, and
the ``small`` net wraps around), so, like the authors' ``inference/test_deblur*.py``, :meth:`ShiftNet.forward_clip`
runs a long clip in chunks of ``chunk`` output frames (their ``one_len``: 96 for ``small``, 48 for ``plus``)
with 2 context frames on each side; the last chunk is aligned to the clip's end (overlapping the one before it,
only its new frames kept), so every chunk has the same length. The engine mirrors 2 frames at each end of a
clip; the authors do not restore (or measure) the first and last 2 frames of a sequence, nor the frames left
over after the last whole chunk. Sizes are reflection-padded to a multiple of 4 (``small``) or 8 (``plus``) and
cropped back (the authors crop GoPro / DVD frames to a multiple of 4; their 1280x720 frames need neither). The
authors run the net in half precision; m3l in the module's precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import Family, Weights, register
from m3l.models.common import crop, pad_to_multiple

VARIANTS = ("small", "plus")
SHIFT = 4  # pixels of the inner ring of the spatial shift (the outer ring: twice it)
# (dy, dx) of each channel group of the spatial shift: out[y, x] = in[y - dy, x - dx], zero outside. 16 groups of
# the outer ring (8 px) then 8 of the inner ring (4 px), in the authors' channel order.
OUTER = ((2, 2), (2, 1), (2, 0), (2, -1), (2, -2), (-2, 2), (-2, 1), (-2, 0), (-2, -1), (-2, -2),
         (1, 2), (1, -2), (0, 2), (0, -2), (-1, 2), (-1, -2))
INNER = ((1, 1), (1, 0), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1))


def _conv(cin: int, cout: int, kernel: int, bias: bool = False, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias, groups=groups)


class ChannelAttention(nn.Module):
    """Squeeze and excitation: global mean, 1x1 down to ``channels // reduction``, ReLU, 1x1 up, sigmoid, scale."""

    def __init__(self, channels: int, reduction: int = 1):
        super().__init__()
        self.conv_du = nn.Sequential(_conv(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                     _conv(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(x.mean((2, 3), keepdim=True))


class CAB(nn.Module):
    """Channel-attention block: ``x + CA(conv(act(conv(x))))``; ``act`` is a PReLU shared with sibling blocks."""

    def __init__(self, channels: int, act: nn.Module, reduction: int = 1, kernel: int = 3):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, kernel), act, _conv(channels, channels, kernel))
        self.CA = ChannelAttention(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.CA(self.body(x)) + x


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel (eps 1e-6), with a per-channel scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(1, keepdim=True)
        y = centred / (centred.pow(2).mean(1, keepdim=True) + self.eps).sqrt()
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class DepthwiseResidual(nn.Module):
    """``x + depthwise 3x3(x)`` (the authors' ``RepConv2``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_2 = _conv(channels, channels, 3, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_2(x) + x


class LargeKernel(nn.Module):
    """``x + conv kxk(x) + conv 3x3(x)``, grouped (the authors' ``RepConv``)."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.conv_1 = _conv(channels, channels, kernel, groups=groups)
        self.conv_2 = _conv(channels, channels, 3, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1(x) + self.conv_2(x) + x


class Gate(nn.Module):
    """The two halves of the channels multiplied (``sigmoid``: the second half through a sigmoid first)."""

    def __init__(self, sigmoid: bool = False):
        super().__init__()
        self.sigmoid = sigmoid

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * (torch.sigmoid(b) if self.sigmoid else b)


class GatedBlock(nn.Module):
    """The shift block's stage block (the authors' ``CAB1``; with ``extra`` shifted channels, ``CAB2``): ``x[:n] +
    beta * body(norm(cat(x[:n], dw3x3(x[n:]))))`` where the body is 1x1 (to 2n), depthwise residual, gate, large
    kernel, 1x1 (to 2n), sigmoid gate, channel attention, 1x1."""

    def __init__(self, channels: int, extra: int = 0, reduction: int = 1, groups: int | None = None):
        super().__init__()
        self.channels, self.extra = channels, extra
        if extra:
            self.conv1 = _conv(extra, extra, 3, groups=extra)
        self.norm = LayerNorm2d(channels + extra)
        self.body = nn.Sequential(
            _conv(channels + extra, 2 * channels, 1), DepthwiseResidual(2 * channels), Gate(),
            LargeKernel(channels, 5, groups or channels), _conv(channels, 2 * channels, 1), Gate(sigmoid=True),
            ChannelAttention(channels, reduction), _conv(channels, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x[:, :self.channels]
        if self.extra:
            x = torch.cat((shortcut, self.conv1(x[:, self.channels:])), 1)
        return shortcut + self.body(self.norm(x)) * self.beta


def spatial_shift(x: Tensor, groups: int) -> Tensor:
    """The grouped spatial shift of ``x`` (``8 * groups`` channels, zero-filled): the 16 directions of the outer
    ring (:data:`OUTER`, 8 pixels) take ``(groups - 1) // 2`` channels each, the 8 of the inner ring (:data:`INNER`,
    4 pixels) the rest, ``groups - 2 * ((groups - 1) // 2)`` each. One padding and slices: exportable."""
    outer = (groups - 1) // 2
    inner = groups - 2 * outer
    h, w = x.shape[-2:]
    p = 2 * SHIFT
    padded = F.pad(x, (p, p, p, p))
    parts, start = [], 0
    for offsets, count in ((OUTER, outer), (INNER, inner)):
        for dy, dx in offsets:
            dy, dx = dy * SHIFT, dx * SHIFT
            parts.append(padded[:, start:start + count, p - dy:p - dy + h, p - dx:p - dx + w])
            start += count
    return torch.cat(parts, 1)


def temporal_shift(x: Tensor, frames: int, backward: bool, wrap: bool) -> Tensor:
    """Half the channels of each frame of ``x`` ``(N * frames, C, H, W)`` replaced: forward, frame t's first half
    becomes frame t-1's second half and its second half its own first half (a roll by C/2 over frames x channels);
    ``backward`` rolls the other way. ``wrap``: the clip is a cycle (the authors' ``small``); else the end frame
    that would receive from outside the clip keeps its channels (``plus``)."""
    nt, c, h, w = x.shape
    half = c // 2
    rolled = x.reshape(nt // frames, frames * c, h, w).roll(-half if backward else half, 1).reshape(nt, c, h, w)
    if wrap:
        return rolled
    rolled, x = rolled.unflatten(0, (-1, frames)), x.unflatten(0, (-1, frames))
    kept = torch.cat((rolled[:, :-1], x[:, -1:]), 1) if backward else torch.cat((x[:, :1], rolled[:, 1:]), 1)
    return kept.flatten(0, 1)


class ShiftBlock(nn.Module):
    """A grouped spatial-temporal shift block: ``stages`` x (temporal shift, forward then backward alternately;
    ``8 * (channels // 16)`` channels copied and spatially shifted; a gated block taking them; a gated block)."""

    def __init__(self, channels: int, stages: int, reduction: int, groups: int | None, wrap: bool):
        super().__init__()
        self.groups, self.stages, self.wrap = channels // 16, stages, wrap
        if self.groups < 1:
            raise ValueError(f"Shift-Net: a shift block needs at least 16 channels, got {channels}")
        for i in range(stages):
            stage = nn.Sequential(GatedBlock(channels, 8 * self.groups, reduction, groups),
                                  GatedBlock(channels, 0, reduction, groups))
            self.add_module("encoder_level1" + (f"_{i}" if i else ""), stage)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        shifted = 8 * self.groups
        for i in range(self.stages):
            backward = i % 2 == 1
            x = temporal_shift(x, frames, backward, self.wrap)
            moved = x[:, -shifted:] if backward else x[:, :shifted]
            stage = getattr(self, "encoder_level1" + (f"_{i}" if i else ""))
            x = stage(torch.cat((x, spatial_shift(moved, self.groups)), 1))
        return x


class SkipUp(nn.Module):
    """Bilinear x2, 1x1 convolution, plus the skip (the authors' ``SkipUpSample``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _conv(cin, cout, 1))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.up(x) + skip


class Down(nn.Module):
    """3x3 stride-2 convolution with bias (the authors' ``DownSample``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Conv2d(cin, cout, 3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x)


class UNit(nn.Module):
    """A frame-wise 3-level U-Net of CABs (the authors' ``TFR_UNet``): widths ``c``, ``c + g``, ``c + 2g``; 1, 3,
    3 CABs a level on each path; stride-2 convolutions down, bilinear + 1x1 up, skips through a CAB. One PReLU
    shared by its CABs."""

    def __init__(self, channels: int, growth: int, reduction: int):
        super().__init__()
        act = nn.PReLU()
        c, g = channels, growth
        cabs = lambda width, n: nn.Sequential(*[CAB(width, act, reduction) for _ in range(n)])  # noqa: E731
        self.encoder_level1, self.encoder_level2, self.encoder_level3 = cabs(c, 1), cabs(c + g, 3), cabs(c + 2 * g, 3)
        self.down12, self.down23 = Down(c, c + g), Down(c + g, c + 2 * g)
        self.decoder_level1, self.decoder_level2, self.decoder_level3 = cabs(c, 1), cabs(c + g, 3), cabs(c + 2 * g, 3)
        self.skip_attn1, self.skip_attn2 = CAB(c, act, reduction), CAB(c + g, act, reduction)
        self.up21, self.up32 = SkipUp(c + g, c), SkipUp(c + 2 * g, c + g)

    def forward(self, x: Tensor) -> Tensor:
        enc1 = self.encoder_level1(x)
        enc2 = self.encoder_level2(self.down12(enc1))
        dec3 = self.decoder_level3(self.encoder_level3(self.down23(enc2)))
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        return self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))


class Fusion(nn.Module):
    """The multi-frame fusion stage (the authors' ``Encoder2``): a U-Net at half resolution and below whose blocks
    are shift blocks (``small``: every block; ``plus``: the decoder's, the encoder being CABs)."""

    def __init__(self, width0: int, width: int, variant: str):
        super().__init__()
        small = variant == "small"
        reduction, groups, stages = (1, None, 4) if small else (4, width // 8, 8)
        self.act = act = nn.PReLU()
        shift = lambda: ShiftBlock(width, stages, reduction, groups, wrap=small)  # noqa: E731
        cab = lambda c=width: CAB(c, act, reduction)  # noqa: E731
        if small:
            self.encoder_level1, self.encoder_level1_1, self.encoder_level1_2 = shift(), shift(), shift()
            self.encoder_level2, self.encoder_level2_1, self.encoder_level2_2 = shift(), shift(), shift()
        else:
            self.encoder_level1, self.encoder_level1_1 = cab(), cab()
            self.encoder_level2, self.encoder_level2_1 = cab(), cab()
            self.encoder_level3, self.encoder_level3_1 = cab(), cab()
        self.concat = cab(width0)
        self.down01 = nn.Sequential(nn.Conv2d(width0, width, 2, 2, 0, bias=False), nn.PReLU())
        self.down12 = Down(width, width)
        if not small:
            self.down23 = Down(width, width)
        self.decoder_level1, self.decoder_level1_1, self.decoder_level1_2 = shift(), shift(), shift()
        self.decoder_level2, self.decoder_level2_1 = shift(), shift()
        if small:
            self.decoder_level2_2 = shift()
        else:
            self.decoder_level3, self.decoder_level3_1 = shift(), shift()
        self.skip_attn1 = cab()
        if not small:
            self.skip_attn2 = cab()
        self.upsample0 = nn.Sequential()
        self.upsample0.upsample_conv = nn.Conv2d(width, 4 * width0, 3, 1, 1)
        self.upsample0.shuffle = nn.PixelShuffle(2)
        self.skip_conv, self.out_conv = cab(width0), cab(width0)
        self.conv_hr0 = _conv(width0, width0, 3) if small else _conv(2 * width0, width0, 3, bias=True)
        self.up21 = SkipUp(width, width)
        if not small:
            self.up32 = SkipUp(width, width)
        self.small = small

    def forward(self, x: Tensor, frames: int) -> Tensor:
        x = self.concat(x)
        shortcut = x
        x = self.down01(x)
        if self.small:
            enc1 = self.encoder_level1_2(self.encoder_level1_1(self.encoder_level1(x, frames), frames), frames)
            enc2 = self.down12(enc1)
            for name in ("encoder_level2", "encoder_level2_1", "encoder_level2_2",
                         "decoder_level2", "decoder_level2_1", "decoder_level2_2"):
                enc2 = getattr(self, name)(enc2, frames)
            x = self.up21(enc2, self.skip_attn1(enc1))
        else:
            enc1 = self.encoder_level1_1(self.encoder_level1(x))
            enc2 = self.encoder_level2_1(self.encoder_level2(self.down12(enc1)))
            dec3 = self.encoder_level3_1(self.encoder_level3(self.down23(enc2)))
            dec3 = self.decoder_level3_1(self.decoder_level3(dec3, frames), frames)
            dec2 = self.up32(dec3, self.skip_attn2(enc2))
            dec2 = self.decoder_level2_1(self.decoder_level2(dec2, frames), frames)
            x = self.up21(dec2, self.skip_attn1(enc1))
        for name in ("decoder_level1", "decoder_level1_1", "decoder_level1_2"):
            x = getattr(self, name)(x, frames)
        up = self.upsample0(x)
        if self.small:
            x = self.conv_hr0(self.act(up)) + self.skip_conv(shortcut)
        else:
            x = self.conv_hr0(torch.cat((up, self.skip_conv(shortcut)), 1))
        return self.out_conv(x)


class ShiftNet(nn.Module):
    """Shift-Net for video deblurring: a clip ``(N, T, C, H, W)`` in, its middle ``T - 4`` frames restored.

    As a window net of the video engine (:mod:`m3l.engine.video_restoration`): ``forward`` takes a window of
    ``frames = 5`` or more frames and returns its centre frame ``(N, C, H, W)`` (5 frames: exactly the authors'
    net on a 5-frame clip); :meth:`forward_clip` restores every frame with 2 frames on each side, in chunks of
    ``chunk`` frames as the authors test. ``trains_on_clips``: training crops go through :meth:`forward_clip`
    whole, as the authors train (13-frame crops, loss on the middle 9), not window by window.

    Args:
        channels: image channels (3 in the released nets).
        variant: ``small`` (Ours-s) or ``plus`` (Ours+): the block structure (see the module docstring).
        width0: channels of the full-resolution stages (14 small, 24 plus).
        width: channels of the fusion stage (64 small, 80 plus; at least 16, and a multiple of 8 for plus).
        growth: channels added per level of the full-resolution U-Nets (4 small, 12 plus).
        units: full-resolution U-Nets before and after the fusion stage (3 small, 5 plus).
        chunk: frames restored per run of the net by :meth:`forward_clip` (the authors' ``one_len``: 96 small,
            48 plus; memory grows with it; results change a little with it, since the shifts see the chunk).
    """

    # torch.export takes it (dynamic height and width, tested); the ONNX conversion of the fusion stage's many shift
    # blocks ran for over 25 minutes on the tiny test net (2 cores) and was stopped: refused in one line instead.
    not_exportable = {"onnx": "the ONNX conversion of its fusion stage's shift blocks takes tens of minutes"}

    frames = 5
    context = 2  # frames of context on each side
    trains_on_clips = True

    def __init__(self, channels: int = 3, variant: str = "small", width0: int = 14, width: int = 64,
                 growth: int = 4, units: int = 3, chunk: int = 96):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Shift-Net: variant must be one of {VARIANTS}, got {variant!r}")
        self.variant, self.chunk = variant, int(chunk)
        self.multiple = 4 if variant == "small" else 8
        reduction = 1 if variant == "small" else 4
        act = nn.PReLU()
        self.feat_extract = nn.Sequential(nn.Conv2d(channels, width0, 3, 1, 1), CAB(width0, act, reduction))
        self.conv_last = _conv(width0, channels, 5)
        self.conv_trans = _conv(width0, width0, 3, bias=True)
        self.stage1 = Fusion(width0, width, variant)
        for i in range(1, units + 1):
            self.add_module(f"orb{i}", UNit(width0, growth, reduction))
        for i in range(1, units + 1):
            self.add_module(f"rorb{i}", UNit(width0, growth, reduction))
        self.rconcat = nn.Conv2d(3 * width0, width0, 3, 1, 1)
        self.units = units

    def _run(self, x: Tensor) -> Tensor:
        """The authors' net on clips ``x`` ``(N, T, C, H, W)`` (sizes already padded): ``(N, T - 4, C, H, W)``."""
        n, t = x.shape[:2]
        frames = x.flatten(0, 1)
        middle = lambda y: y.unflatten(0, (n, t))[:, self.context:t - self.context].flatten(0, 1)  # noqa: E731
        x0 = self.feat_extract(frames)
        res0 = x0
        for i in range(1, self.units + 1):
            res0 = getattr(self, f"orb{i}")(res0)
        res0 = res0 + x0
        fused = self.stage1(self.conv_trans(res0), t)
        y = self.rconcat(torch.cat((middle(x0), middle(res0), middle(fused)), 1))
        z = y
        for i in range(1, self.units + 1):
            z = getattr(self, f"rorb{i}")(z)
        # the input frames added unflattened: a view of the (padded) input sliced in time, flattened, has strides that
        # torch.export can reshape only under a guard on the height (with 1 channel), so no dynamic height
        return self.conv_last(z + y).unflatten(0, (n, t - 2 * self.context)) + x[:, self.context:t - self.context]

    def _checked(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] < self.frames:
            raise ValueError(f"Shift-Net takes clips (N, T, C, H, W) of at least {self.frames} frames, got "
                             f"{tuple(x.shape)}")
        return pad_to_multiple(x, self.multiple, mode="reflect")[0]

    def forward(self, x: Tensor) -> Tensor:
        """The centre frame ``(N, C, H, W)`` of windows ``x`` ``(N, T, C, H, W)`` (T odd, at least 5), from the
        net run on the whole window."""
        h, w = x.shape[-2:]
        out = self._run(self._checked(x))
        return crop(out[:, out.shape[1] // 2], (h, w))

    def forward_clip(self, x: Tensor, step: int | None = None) -> Tensor:
        """Every frame of ``x`` ``(N, T, C, H, W)`` with 2 frames on each side: ``(N, T - 4, C, H, W)``, the net run
        on chunks of ``chunk + 4`` frames (the last one aligned to the clip's end; a clip shorter than that in
        one run). ``step`` (the engine's ``windows_per_step``) is not used: the chunk is the net's ``chunk``."""
        h, w = x.shape[-2:]
        x = self._checked(x)
        t, c = x.shape[1], self.context
        length = min(self.chunk, t - 2 * c)
        outputs, done = [], 0  # done: output frames restored so far
        while done < t - 2 * c:
            first = min(done, t - 2 * c - length)  # the chunk's first output frame
            out = self._run(x[:, first:first + length + 2 * c])
            outputs.append(out[:, done - first:])
            done = first + length
        return crop(torch.cat(outputs, 1), (h, w))


# Released layout: the authors' BasicSR checkpoints, {"params": state dict} of GShiftNet(future_frames=2,
# past_frames=2) from gshift_deblur2.py (small) or gshift_deblur1.py (plus). Key names are m3l's; the small
# files' unused orb4/orb5/rorb4/rorb5 and both variants' unused lrelu are dropped.


def is_shiftnet(raw: dict) -> bool:
    state = unwrap(raw)
    # lrelu (unused by the forward) is in every authors' file and in no m3l state dict, whose keys are otherwise theirs
    return "stage1.concat.body.0.weight" in state and "rconcat.weight" in state and "lrelu.weight" in state


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = dict(unwrap(raw))
    plus = "stage1.encoder_level3.body.0.weight" in state
    units = 5 if plus else 3
    width0 = int(state["feat_extract.0.weight"].shape[0])
    net_args = {"channels": int(state["feat_extract.0.weight"].shape[1]), "variant": "plus" if plus else "small",
                "width0": width0, "width": int(state["stage1.down01.0.weight"].shape[0]),
                "growth": int(state["orb1.down12.down.weight"].shape[0]) - width0, "units": units,
                "chunk": 48 if plus else 96}
    unused = ("lrelu.",) + (() if plus else ("orb4.", "orb5.", "rorb4.", "rorb5."))
    state = {k: v for k, v in state.items() if not k.startswith(unused)}
    names = {key: key for key in state}  # m3l's names are the authors'
    try:
        return check_fits(state, names, ShiftNet, net_args, "shiftnet"), net_args
    except (ValueError, AssertionError) as error:
        raise M3LError(f"shiftnet: the file does not fit Shift-Net {net_args['variant']}: {error}") from None


LAYOUTS = (Layout(name="shiftnet", detect=is_shiftnet, convert=convert_authors,
                  description="the Shift-Net authors' BasicSR files ({'params': ...}): net_gopro_deblur*.pth, "
                              "net_dvd_deblur*.pth"),)

GDRIVE = "https://drive.google.com/uc?export=download&id="
SOURCE = ("Li et al., CVPR 2023 (dasongli1/Shift-Net, Google Drive; Apache-2.0 as its setup.py declares, no "
          "LICENSE file)")
SMALL = {"channels": 3, "variant": "small", "width0": 14, "width": 64, "growth": 4, "units": 3, "chunk": 96}
PLUS = {"channels": 3, "variant": "plus", "width0": 24, "width": 80, "growth": 12, "units": 5, "chunk": 48}

# m3l.run.test overrides: GoPro as released (the standard set gopro: GOPRO_Large/test/<seq>/blur|sharp/), DVD as
# the CDVD-TSP copy the authors use (the standard set dvd: their DVD/test, blur/<seq>/ and gt/<seq>/).
PROTOCOLS = {"gopro": ("data.channels=3", "data.input=/blur/", "data.target=/sharp/",
                       "data.test_sets={gopro:{data_root}/gopro/test}"),
             "dvd": ("data.channels=3", "data.input=/blur/", "data.target=/gt/",
                     "data.test_sets={dvd:{data_root}/dvd}")}

# Published numbers: GoPro, the authors' README table (figures/comparison1.png, the paper's GoPro table; also on
# their project page as "Quantitative comparison ... on GoPro"), RGB PSNR / SSIM over the frames their
# inference/test_deblur*.py restores. DVD: the paper's DVD table could not be read here (the README and project
# page show GoPro only), so the DVD entries carry no numbers.
PUBLISHED = {"gopro_small": (35.22, 0.975), "gopro_plus": (35.88, 0.979)}
GOPRO_SOURCE = ("; published PSNR / SSIM: the authors' README table (figures/comparison1.png: Ours-s 35.22 / 0.975, "
                "Ours+ 35.88 / 0.979 on GoPro), the paper's GoPro table")
DVD_SOURCE = ("; published DVD PSNR / SSIM not verified here (the paper's DVD table could not be read), so none "
              "recorded; test with " + " ".join(PROTOCOLS["dvd"]))

WEIGHTS = tuple(
    Weights(model="shiftnet", variant=variant, url=GDRIVE + drive, file=file, sha256=None,
            net=SMALL if variant.endswith("small") else PLUS, layout="shiftnet",
            metrics={f"{data}/real/psnr": PUBLISHED[variant][0], f"{data}/real/ssim": PUBLISHED[variant][1]}
            if variant in PUBLISHED else {},
            protocol=PROTOCOLS[data] if variant in PUBLISHED else (), source=SOURCE + (GOPRO_SOURCE if data == "gopro" else DVD_SOURCE))
    for variant, data, drive, file in [
        ("gopro_small", "gopro", "1WnFZRnXN9ZJebMZaAZF6a0c8f3CrLjR_", "net_gopro_deblur_small.pth"),
        ("gopro_plus", "gopro", "1f79zxmCL-ygVmoJd86OT6uksPGk2BpL0", "net_gopro_deblur.pth"),
        ("dvd_small", "dvd", "181FLpwRe87iFa-7U3myxR3nNc8qjRe-z", "net_dvd_deblur_small.pth"),
        ("dvd_plus", "dvd", "1vPQkAznRaVawQOMOuvhnCD8DKS2RQToM", "net_dvd_deblur.pth")])

FAMILY = register(Family(
    "shiftnet", ShiftNet, tiny={"variant": "small", "width0": 4, "width": 16, "growth": 2, "units": 1, "chunk": 4},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""Shift-Net (Li et al., CVPR 2023), video deblurring with grouped spatial-temporal shifts. ``pretrained=True``:
    the authors' GoPro Ours-s (``gopro_small``); ``variant``: ``gopro_plus``, ``dvd_small``, ``dvd_plus``."""))
