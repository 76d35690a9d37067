"""Video nets: a window of ``frames`` consecutive frames ``(N, frames, C, H, W)`` in, its centre frame
``(N, C, H, W)`` out. :class:`m3l.engine.video_restoration.VideoRestorationModule` slides the window over clips.

- :class:`PerFrame` runs any image net on each frame alone (``frames = 1``): the baseline.
- :class:`FastDVDnet` (Tassano, Delon, Veit, CVPR 2020): two stages of U-Net denoising blocks over 5
  frames, each block seeing 3 frames and the noise map, with no optical flow (the blocks learn to align).
  2.48M parameters for RGB at the paper's widths (32, 64, 128).

FastDVDnet's released weights (the authors' ``model.pth``) are below the nets: their layout and weights entry;
the family registers as ``fastdvdnet``.
"""

from __future__ import annotations

import torch
from torch import nn

from m3l.models.common import crop, pad_to_multiple

from m3l.models._layouts import Layout, check_fits, unwrap
from m3l.models._registry import Family, Weights, register


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


# Released layouts.
#
# The FastDVDnet authors' layout (m-tassano/fastdvdnet: ``model.pth``, ``model_clipped_noise.pth``).
#
# Saved from ``nn.DataParallel`` (``module.`` before every key; m3l.checkpoint.state_dict_of removes it). The
# authors' ``FastDVDnet`` (their ``models.py``) has two ``DenBlock`` s, ``temp1`` (the first stage, shared by
# the three windows) and ``temp2``; m3l's :class:`m3l.models.video.FastDVDnet` calls them ``stage1`` /
# ``stage2``. In a block, every ``Conv2d => BatchNorm2d => ReLU`` sits in a ``convblock`` Sequential,
# nested in ``CvBlock`` s; m3l's :class:`~m3l.models.video.DenoisingBlock` flattens them:
#
# - ``inc.convblock.{0,1,3,4}``: ``inc.{0,1,3,4}``
# - ``downc0.convblock.{0,1}``: ``down0.{0,1}``; ``downc0.convblock.3.convblock.{0,1,3,4}``: ``down0.{3,4,6,7}``
# - ``upc2.convblock.0.convblock.{0,1,3,4}``: ``up1.{0,1,3,4}``; ``upc2.convblock.1``: ``up1.6``
# - ``outc.convblock.{0,1,3}``: ``out.{0,1,3}``
#
# (``downc1`` is ``down1``, ``upc1`` is ``up0``). Convolutions have no bias; batch norms have their
# running statistics. The file fixes the widths (32, 64, 128), the input conv's channels per frame (30)
# and the image channels (3).

NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# (the authors' layer, m3l's, is it a batch norm) of one denoising block.
LAYERS = [("inc.convblock.0", "inc.0", False), ("inc.convblock.1", "inc.1", True),
          ("inc.convblock.3", "inc.3", False), ("inc.convblock.4", "inc.4", True)]
for authors, m3l in (("downc0", "down0"), ("downc1", "down1")):
    LAYERS += [(f"{authors}.convblock.0", f"{m3l}.0", False), (f"{authors}.convblock.1", f"{m3l}.1", True)]
    LAYERS += [(f"{authors}.convblock.3.convblock.{i}", f"{m3l}.{i + 3}", i in (1, 4)) for i in (0, 1, 3, 4)]
for authors, m3l in (("upc2", "up1"), ("upc1", "up0")):
    LAYERS += [(f"{authors}.convblock.0.convblock.{i}", f"{m3l}.{i}", i in (1, 4)) for i in (0, 1, 3, 4)]
    LAYERS += [(f"{authors}.convblock.1", f"{m3l}.6", False)]
LAYERS += [("outc.convblock.0", "out.0", False), ("outc.convblock.1", "out.1", True), ("outc.convblock.3", "out.3", False)]


def is_fastdvdnet(raw: dict) -> bool:
    state = unwrap(raw)
    return "temp1.inc.convblock.0.weight" in state and "temp2.outc.convblock.3.weight" in state


def convert_authors(raw: dict) -> tuple[dict, dict]:
    state = unwrap(raw)
    first = state["temp1.inc.convblock.0.weight"]  # (3 * per_frame, channels + 1, 3, 3): grouped per frame
    net_args = {"channels": int(first.shape[1]) - 1,
                "widths": [int(state[f"temp1.{layer}.weight"].shape[0])
                           for layer in ("inc.convblock.3", "downc0.convblock.0", "downc1.convblock.0")],
                "per_frame": int(first.shape[0]) // 3}
    names = {}
    for authors_stage, m3l_stage in (("temp1", "stage1"), ("temp2", "stage2")):
        for authors, m3l, norm in LAYERS:
            for p in NORM if norm else ("weight",):
                names[f"{authors_stage}.{authors}.{p}"] = f"{m3l_stage}.{m3l}.{p}"
    return check_fits(state, names, FastDVDnet, net_args, "fastdvdnet"), net_args


LAYOUTS = (Layout(name="fastdvdnet", detect=is_fastdvdnet, convert=convert_authors,
                  description="the FastDVDnet authors' model.pth (nn.DataParallel, module.temp1.*)"),)


# Weights entries (Tassano et al. 2020): nn.DataParallel's module.* keys, in the repository itself.
WEIGHTS = (
    Weights(model="fastdvdnet", variant="authors", url="https://github.com/m-tassano/fastdvdnet/raw/master/model.pth",
            sha256=None, net={"channels": 3, "widths": [32, 64, 128], "per_frame": 30}, layout="fastdvdnet",
            metrics={"davis_test/sigma10/psnr": 38.71, "davis_test/sigma20/psnr": 35.77,
                     "davis_test/sigma30/psnr": 34.04, "davis_test/sigma40/psnr": 32.82,
                     "davis_test/sigma50/psnr": 31.86, "set8/sigma10/psnr": 36.44, "set8/sigma20/psnr": 33.43,
                     "set8/sigma30/psnr": 31.68, "set8/sigma40/psnr": 30.46, "set8/sigma50/psnr": 29.53},
            protocol=("preset=paper", "data_root={data_root}"),  # Set8 and DAVIS-test at sigma 10-50
            source="Tassano et al. 2020 (m-tassano/fastdvdnet; MIT licence)"),
)

# The family is FastDVDnet (PerFrame wraps an image net: it has no weights of its own).
FAMILY = register(Family(
    "fastdvdnet", FastDVDnet, tiny={"widths": [4, 8, 8], "per_frame": 2}, layouts=LAYOUTS, weights=WEIGHTS,
    doc="""FastDVDnet (Tassano et al. 2020), video denoising over 5 frames with a noise map. ``pretrained=True``:
    the authors' ``model.pth`` (DAVIS 38.71 ... 31.86 dB at sigma 10 ... 50)."""))
