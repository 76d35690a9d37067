"""BSVD (Qi, Chen, Yang, Chen, ACM MM 2022, "Real-time Streaming Video Denoising with Bidirectional Buffers"):
video denoising by two U-Nets ("W-Net") of plain 2D convolutions, each frame through them on its own, with a
*temporal shift* before 8 of each U-Net's convolutions (those of its two down and two up blocks): an eighth of the
channels comes from the next frame, an eighth from the previous one (zeros beyond the clip's ends), the rest stays.
16 shifts: each output frame sees 16 frames on each side. Non-blind: the noise map is a 4th input channel.

Two ways to run the same math:

- a window (m3l's video interface, :mod:`m3l.engine.video_restoration`): :meth:`BSVD.forward` takes
  ``frames = 33`` frames (the receptive field) and returns the centre one, which is exactly the whole-clip output
  of that frame wherever it has 16 frames on each side;
- a stream (the paper's "bidirectional buffers"): :meth:`BSVD.stream` feeds a clip ``step`` frames at a time
  through the layers, each shift keeping one frame back (the frame whose next neighbour has not come yet) and an
  eighth of the frame before; every frame passes each layer once, memory grows with ``step``, not with the clip.
  :meth:`BSVD.forward_clip` (the engine's reuse path: the restored frames of every window of a clip at once) and
  :meth:`BSVD.restore_clip` (the authors' test: a whole clip, zeros beyond its ends) run through it.

The engine mirrors 16 frames onto each end of a clip before the windows; the authors' test runs each clip as it is
(zero features beyond its ends): the first and last 16 frames of a clip differ between the two (the published
numbers are the authors'). Training through the engine restores one frame per 33-frame window (the authors train on
11-frame clips with zero ends and a loss on every frame): exact, but 33 frame passes per supervised frame.

The released net (``bsvd-64.pth``): widths 64 / 128 / 256, 64 channels between the stages and after the input
convolution, ReLU6, no normalisation, biases; RGB.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from m3l.models.common import crop, pad_to_multiple

from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import Family, Weights, register

FOLD = 8  # an eighth of the channels comes from the next frame, an eighth from the previous one


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1)


class _Buffer:
    """What a temporal shift holds between two calls of a stream: ``pending``, the last frame it was given (its next
    frame has not come yet), and ``previous``, the backward-shifted eighth of the last frame it returned."""

    def __init__(self):
        self.pending: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None


def shift(x: torch.Tensor, buffer: _Buffer, last: bool) -> torch.Tensor:
    """The temporal shift of frames ``x`` ``(N, T, C, H, W)`` of a stream: channels ``[0, C/8)`` of each returned
    frame are those of the frame after it, ``[C/8, 2C/8)`` those of the frame before it (zeros before the stream's
    first frame and after its last), the rest its own. Returns the frames whose next frame is known: the one kept
    back from the previous call and all of ``x`` but its last, which is kept back, unless ``last`` (the stream ends
    with ``x``: zeros after it)."""
    frames = x if buffer.pending is None else torch.cat([buffer.pending, x], 1)
    n, t, c, h, w = frames.shape
    if t == 0:  # nothing has come through yet
        return frames
    fold = c // FOLD
    zero = frames.new_zeros(n, 1, fold, h, w)
    if last:
        centre, after = frames, torch.cat([frames[:, 1:, :fold], zero], 1)
        buffer.pending = None
    else:
        centre, after = frames[:, :-1], frames[:, 1:, :fold]
        buffer.pending = frames[:, -1:]
        if t == 1:
            return centre
    before = torch.cat([zero if buffer.previous is None else buffer.previous, centre[:, :-1, fold:2 * fold]], 1)
    buffer.previous = centre[:, -1:, fold:2 * fold]
    return torch.cat([after, before, centre[:, :, 2 * fold:]], 2)


class ShiftConv(nn.Module):
    """A 3x3 convolution of temporally shifted frames (:func:`shift`), applied to each frame."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = _conv(in_ch, out_ch)

    def forward(self, x: torch.Tensor, buffer: _Buffer, last: bool) -> torch.Tensor:
        shifted = shift(x, buffer, last)
        return self.conv(shifted.flatten(0, 1)).unflatten(0, shifted.shape[:2])


class ShiftPair(nn.Module):
    """Two shifted convolutions, each followed by the activation."""

    def __init__(self, in_ch: int, out_ch: int, act: nn.Module):
        super().__init__()
        self.shift1, self.shift2, self.act = ShiftConv(in_ch, out_ch), ShiftConv(out_ch, out_ch), act

    def forward(self, x: torch.Tensor, buffers: list[_Buffer], last: bool) -> torch.Tensor:
        return self.act(self.shift2(self.act(self.shift1(x, buffers[0], last)), buffers[1], last))


def per_frame(module, x: torch.Tensor) -> torch.Tensor:
    """``module`` (2D) on each frame of ``x`` ``(N, T, C, H, W)``."""
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class Down(nn.Module):
    """A stride-2 convolution, then two shifted convolutions."""

    def __init__(self, in_ch: int, out_ch: int, act: nn.Module):
        super().__init__()
        self.conv, self.act, self.pair = _conv(in_ch, out_ch, 2), act, ShiftPair(out_ch, out_ch, act)

    def forward(self, x, buffers, last):
        return self.pair(per_frame(lambda f: self.act(self.conv(f)), x), buffers, last)


class Up(nn.Module):
    """Two shifted convolutions, then a convolution to 4 ``out_ch`` channels and a pixel shuffle (x2)."""

    def __init__(self, in_ch: int, out_ch: int, act: nn.Module):
        super().__init__()
        self.pair, self.conv = ShiftPair(in_ch, in_ch, act), _conv(in_ch, 4 * out_ch)

    def forward(self, x, buffers, last):
        return per_frame(lambda f: F.pixel_shuffle(self.conv(f), 2), self.pair(x, buffers, last))


class _Queue:
    """Frames waiting along time for the deeper path of a U-Net to catch up (a skip connection in a stream)."""

    def __init__(self):
        self.frames: torch.Tensor | None = None

    def push(self, x: torch.Tensor) -> None:
        self.frames = x if self.frames is None else torch.cat([self.frames, x], 1)

    def pop(self, count: int) -> torch.Tensor:
        out, self.frames = self.frames[:, :count], self.frames[:, count:]
        return out


class Stage(nn.Module):
    """One U-Net of BSVD: input convolutions (``in_ch`` to ``input_width`` to ``widths[0]``), two down blocks, two
    up blocks with additive skips, an output convolution pair; the first ``channels`` output channels are the
    input's first ``channels`` minus the net's (the restored image), the others are passed on as features."""

    shifts = 8

    def __init__(self, in_ch: int, out_ch: int, channels: int, widths, input_width: int, act: nn.Module):
        super().__init__()
        w0, w1, w2 = widths
        self.channels, self.act = channels, act
        self.input = nn.ModuleList([_conv(in_ch, input_width), _conv(input_width, w0)])
        self.down0, self.down1 = Down(w0, w1, act), Down(w1, w2, act)
        self.up1, self.up0 = Up(w2, w1, act), Up(w1, w0, act)
        self.output = nn.ModuleList([_conv(w0, w0), _conv(w0, out_ch)])

    def forward(self, x: torch.Tensor, state: dict, last: bool) -> torch.Tensor:
        """Frames ``x`` ``(N, T, C, H, W)`` of a stream in; the frames that are complete out (``state``: this
        stage's buffers and queues, kept between calls)."""
        if not state:
            state.update(buffers=[_Buffer() for _ in range(self.shifts)], queues=[_Queue() for _ in range(3)])
        b, (q_in, q0, q1) = state["buffers"], state["queues"]
        q_in.push(x[:, :, :self.channels])
        x0 = per_frame(lambda f: self.act(self.input[1](self.act(self.input[0](f)))), x)
        q0.push(x0)
        x1 = self.down0(x0, b[0:2], last)
        q1.push(x1)
        x2 = self.up1(self.down1(x1, b[2:4], last), b[4:6], last)
        x1 = self.up0(x2 + q1.pop(x2.shape[1]), b[6:8], last)
        out = per_frame(lambda f: self.output[1](self.act(self.output[0](f))), x1 + q0.pop(x1.shape[1]))
        c = self.channels
        return torch.cat([q_in.pop(out.shape[1]) - out[:, :, :c], out[:, :, c:]], 2)


class BSVD(nn.Module):
    """BSVD: two :class:`Stage` U-Nets over every frame, temporally shifted features (see the module's docstring).
    Non-blind: ``sigma`` (``(N,)`` or scalar, [0, 1] scale) becomes a noise-map channel. Sizes not divisible by 4
    are padded (reflection, bottom and right, as the authors' test) and cropped back.

    Args:
        channels: 1 (gray) or 3 (RGB; the released net).
        widths: channels of the three U-Net levels (64, 128, 256 in the released net; the paper's BSVD-64).
        mid_channels: channels passed from the first U-Net to the second (the authors' ``mid_ch``; 64), at least
            ``channels``: the first ``channels`` are the first U-Net's restored frame.
        input_width: channels after each U-Net's first convolution (the authors' ``interm_ch``; 64).
        act: ``"relu6"`` (the released net) or ``"relu"``.
    """

    frames = 2 * 2 * Stage.shifts + 1  # the receptive field: 16 frames on each side
    multiple = 4

    def __init__(self, channels: int = 3, widths=(64, 128, 256), mid_channels: int = 64, input_width: int = 64,
                 act: str = "relu6"):
        super().__init__()
        if act not in ("relu6", "relu"):
            raise ValueError(f"act must be relu6 or relu, got {act!r}")
        if mid_channels < channels:
            raise ValueError(f"mid_channels ({mid_channels}) must be at least channels ({channels})")
        activation = nn.ReLU6() if act == "relu6" else nn.ReLU()
        widths = tuple(widths)
        self.stage1 = Stage(channels + 1, mid_channels, channels, widths, input_width, activation)
        self.stage2 = Stage(mid_channels, channels, channels, widths, input_width, activation)

    def _input(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``x`` ``(N, T, C, H, W)`` padded to a multiple of 4 with its noise-map channel."""
        n, t = x.shape[:2]
        x = pad_to_multiple(x, self.multiple, mode="reflect")[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1, 1)
        return torch.cat([x, sigma.expand(n, t, 1, *x.shape[-2:])], 2)

    def stream(self, x: torch.Tensor, sigma, step: int = 8) -> torch.Tensor:
        """Every frame of the clip ``x`` ``(N, T, C, H, W)`` restored, zeros beyond its ends (the authors' test):
        fed ``step`` frames at a time, each frame through each layer once (see the module's docstring)."""
        h, w = x.shape[-2:]
        x = self._input(x, sigma)
        states, outputs, t = ({}, {}), [], x.shape[1]
        for first in range(0, t, max(1, step)):
            last = first + max(1, step) >= t
            y = self.stage1(x[:, first:first + max(1, step)], states[0], last)
            outputs.append(self.stage2(y, states[1], last))
        return crop(torch.cat(outputs, 1), (h, w))

    def restore_clip(self, x: torch.Tensor, sigma, step: int = 8) -> torch.Tensor:
        """The authors' test of a clip: :meth:`stream` (all of its frames, zero features beyond its ends)."""
        return self.stream(x, sigma, step)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The centre frame ``(N, C, H, W)`` of a window of ``frames`` (33) frames ``(N, 33, C, H, W)``."""
        if x.shape[1] != self.frames:
            raise ValueError(f"BSVD takes {self.frames} frames, got {x.shape[1]}")
        return self.stream(x, sigma, step=self.frames)[:, self.frames // 2]

    def forward_clip(self, x: torch.Tensor, sigma, step: int = 8) -> torch.Tensor:
        """The restored centre of every window of ``x`` ``(N, T, C, H, W)``: frames 16 .. T - 17,
        ``(N, T - 32, C, H, W)``, equal to :meth:`forward` on each window, each frame computed once per layer."""
        r = self.frames // 2
        if x.shape[1] < self.frames:
            raise ValueError(f"BSVD takes at least {self.frames} frames, got {x.shape[1]}")
        return self.stream(x, sigma, step)[:, r:x.shape[1] - r]


# Released layout: the authors' BasicSR checkpoints (bsvd-64.pth): {"params": state dict of their training net
# (TSN)}, keys base_model.nets_list.{0,1}.<block>. Convolutions with biases, no normalisation (norm 'none'), so a
# block's Sequential has identities and activations at the other indices. The shifted convolutions sit in
# TemporalShift wrappers (.c1.net / .c2.net). m3l's names:
#   inc.convblock.{0,3}                    input.{0,1}
#   downc{0,1}.convblock.0                 down{0,1}.conv
#   downc{0,1}.convblock.3.c{1,2}.net      down{0,1}.pair.shift{1,2}.conv
#   upc2 / upc1 .convblock.0.c{1,2}.net    up1 / up0 .pair.shift{1,2}.conv
#   upc2 / upc1 .convblock.1               up1 / up0 .conv
#   outc.convblock.{0,3}                   output.{0,1}
# The file does not say the activation: ReLU6 (the released non-blind net's `act: relu6`).

AUTHORS_PREFIX = "base_model.nets_list."
BLOCKS = [("inc.convblock.0", "input.0"), ("inc.convblock.3", "input.1"), ("outc.convblock.0", "output.0"),
          ("outc.convblock.3", "output.1")]
for _authors, _m3l in (("downc0", "down0"), ("downc1", "down1")):
    BLOCKS += [(f"{_authors}.convblock.0", f"{_m3l}.conv")]
    BLOCKS += [(f"{_authors}.convblock.3.c{i}.net", f"{_m3l}.pair.shift{i}.conv") for i in (1, 2)]
for _authors, _m3l in (("upc2", "up1"), ("upc1", "up0")):
    BLOCKS += [(f"{_authors}.convblock.0.c{i}.net", f"{_m3l}.pair.shift{i}.conv") for i in (1, 2)]
    BLOCKS += [(f"{_authors}.convblock.1", f"{_m3l}.conv")]


def is_bsvd(raw: dict) -> bool:
    state = unwrap(raw)
    return f"{AUTHORS_PREFIX}0.inc.convblock.0.weight" in state and f"{AUTHORS_PREFIX}1.outc.convblock.3.weight" in state


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = unwrap(raw)
    first = state[f"{AUTHORS_PREFIX}0.inc.convblock.0.weight"]  # (input_width, channels + 1, 3, 3)
    net_args = {"channels": int(state[f"{AUTHORS_PREFIX}1.outc.convblock.3.weight"].shape[0]),
                "widths": [int(state[f"{AUTHORS_PREFIX}0.{layer}.weight"].shape[0])
                           for layer in ("inc.convblock.3", "downc0.convblock.0", "downc1.convblock.0")],
                "mid_channels": int(state[f"{AUTHORS_PREFIX}0.outc.convblock.3.weight"].shape[0]),
                "input_width": int(first.shape[0]), "act": "relu6"}
    names = {f"{AUTHORS_PREFIX}{i}.{authors}.{p}": f"stage{i + 1}.{m3l}.{p}"
             for i in (0, 1) for authors, m3l in BLOCKS for p in ("weight", "bias")}
    return check_fits(state, names, BSVD, net_args, "bsvd"), net_args


LAYOUTS = (Layout(name="bsvd", detect=is_bsvd, convert=convert_authors,
                  description="the BSVD authors' BasicSR checkpoint (params: base_model.nets_list.{0,1}.*)"),)

# The authors' README links a OneDrive folder holding bsvd-64.pth (not a direct download: fetch it by hand into
# torch.hub's cache under the name m3l.hub prints). The published numbers: the paper's Table 2 (BSVD-64, PSNR on RGB,
# non-blind Gaussian noise), read from the authors' project page (ChenyangQiQi/ChenyangQiQi.github.io commit
# 74ad9dc, BSVD/images/result_davis_set8.png, the table's image; its FastDVDnet row equals FastDVDnet's entry and
# each BSVD-64 average is the mean of its five values). Measured by preset=paper (set8/, davis_test/ under data_root;
# its header lists where it differs from the authors' test: ends mirrored, every frame, float32).
DAVIS = (39.81, 36.82, 35.09, 33.86, 32.91)   # sigma 10, 20, 30, 40, 50 (average 35.70)
SET8 = (36.74, 33.83, 32.14, 30.97, 30.06)    # (average 32.75)
ONEDRIVE = ("https://hkustconnect-my.sharepoint.com/:f:/g/personal/cqiaa_connect_ust_hk/"
            "Em-latu2Zm1MpPoxstOmpCQBzNTkyGVqdUEODK3oxcz6eA?e=loC1pu")
WEIGHTS = (
    Weights(model="bsvd", variant="c64", url=ONEDRIVE, file="bsvd-64.pth", sha256=None,
            net={"channels": 3, "widths": [64, 128, 256], "mid_channels": 64, "input_width": 64, "act": "relu6"},
            layout="bsvd",
            metrics={f"{name}/sigma{s}/psnr": v for name, values in (("davis_test", DAVIS), ("set8", SET8))
                     for s, v in zip((10, 20, 30, 40, 50), values)},
            protocol=("preset=paper", "data_root={data_root}"),
            source="Qi et al. 2022 (ChenyangQiQi/BSVD, options/test/bsvd_c64.yml; MIT licence); numbers: the paper's "
                   "Table 2 (BSVD-64, DAVIS 2017 test-dev and Set8, at most 85 frames a sequence), as the authors' "
                   "project page shows it (chenyangqiqi.github.io/BSVD, images/result_davis_set8.png)"),
)

FAMILY = register(Family(
    "bsvd", BSVD, tiny={"widths": [4, 8, 16], "mid_channels": 4, "input_width": 4}, layouts=LAYOUTS,
    weights=WEIGHTS,
    doc="""BSVD (Qi et al. 2022), streaming video denoising with temporal shifts (bidirectional buffers), a
    33-frame receptive field and a noise map. ``pretrained=True``: the authors' ``bsvd-64.pth`` (BSVD-64)."""))
