"""Uformer (Wang, Cun, Bao, Zhou, Liu, Li: "Uformer: A General U-Shaped Transformer for Image Restoration", CVPR
2022; arXiv 2106.03106; code ZhendongWang6/Uformer).

A 5-level U-Net of LeWin transformer blocks on token maps: a 3x3 convolution with a LeakyReLU embeds the image in
``width`` channels; four encoder stages (``width``, 2x, 4x, 8x channels) each followed by a 4x4 stride-2
convolution; a bottleneck stage (16x); four decoder stages, each after a 2x2 stride-2 transposed convolution that
halves the channels and a concatenation with the encoder stage of its size (16x, 8x, 4x, 2x channels); a 3x3
convolution back to the image's channels, added to the image. A LeWin block is pre-norm: window self-attention over
``window x window`` windows (a learned relative-position bias per head; every odd block of a stage shifts its
windows by half a window, pixels brought by the roll from the opposite border kept apart by a -100 bias), then
the locally-enhanced feed-forward (LeFF: a linear layer to ``mlp_ratio`` x the channels, GELU, a 3x3 depthwise
convolution, GELU, a linear layer back), both residual. The decoder blocks add a learned "modulator" (one vector a
window position) to the windows' tokens before attention. ``blocks`` counts the blocks of the nine stages,
``heads`` their attention heads. Uformer-B, the released nets: width 32, blocks ``[1, 2, 8, 8, 2, 8, 8, 2, 1]``,
heads ``[1, 2, 4, 8, 16, 16, 8, 4, 2]`` (32 channels a head), window 8, LeFF ratio 4, modulators: 50,880,946
parameters (50.88M, the paper's Table).

``input_resolution`` (the authors' ``img_size``): a stage whose map at that input size (``input_resolution /
2**level``) is no larger than a window never shifts. The authors' test scripts build the released nets with 128
(their ``--train_ps`` default), so the bottleneck (128 / 16 = 8) does not shift at test, although the GoPro net
was trained with 256 patches (where it does); the weights entries use 128, as the authors' tests.

Test-time padding, as the authors' test scripts (``test/test_sidd.py``, ``test/test_gopro_hide.py``:
``expand2square(x, factor=128)``): the image is placed in the centre of a zero square whose side is its larger side
rounded up to a multiple of 128 (``16 * window``: the bottleneck's map must be whole windows), the net run on the
square, and the image's area cut out again. ``square=False`` pads each side to its own multiple of 128 (centred,
zeros): cheaper for wide images (a GoPro frame is 1280x768 rather than 1280x1280), but not the authors' protocol.

State-dict keys are the authors' (``input_proj.proj.0``, ``encoderlayer_<i>.blocks.<j>.attn.qkv.to_q``,
``...attn.relative_position_bias_table`` of shape ((2 window - 1)^2, heads), ``...mlp.dwconv.0``,
``dowsample_<i>.conv.0``, ``conv.blocks.<j>`` (the bottleneck), ``upsample_<i>.deconv.0``,
``decoderlayer_<i>.blocks.<j>.modulator``, ``output_proj.proj.0``), so the authors' files load after
:func:`convert_authors` drops their ``relative_position_index`` buffers (recomputed here) and the ``module.`` of
``nn.DataParallel``. Their files are training checkpoints ``{"epoch", "state_dict", "optimizer"}`` (their
``train/train_motiondeblur.py`` saves the DataParallel net's state dict: keys start ``module.``); only the
net's tensors are read.

Not implemented (no released Uformer-B uses them): the authors' ``token_projection="conv"``, ``token_mlp="ffn"`` /
``"fastleff"``, ``cross_modulator``, the attention ``mask`` input, ``dd_in != 3`` (the authors then drop the global
residual; here the output is always added to the image, of ``channels`` channels in and out).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._blocks import DropPath
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import GOPRO_TEST, SIDD_TEST, Family, Weights, register

LEVELS = (0, 1, 2, 3, 4, 3, 2, 1, 0)  # the U's level of each of the nine stages
STAGES = ("encoderlayer_0", "encoderlayer_1", "encoderlayer_2", "encoderlayer_3", "conv",
          "decoderlayer_0", "decoderlayer_1", "decoderlayer_2", "decoderlayer_3")
MASKED = -100.0  # the authors' bias between pixels of a shifted window that came from opposite borders


def roll(x: Tensor, shift: int) -> Tensor:
    """``x`` of shape ``(N, H, W, C)`` rolled cyclically by ``-shift`` rows and columns (up and left for a positive
    ``shift``), as slices (no modulo of a symbolic size for torch.export)."""
    x = torch.cat((x[:, shift:], x[:, :shift]), dim=1)
    return torch.cat((x[:, :, shift:], x[:, :, :shift]), dim=2)


def to_windows(x: Tensor, p: int) -> Tensor:
    """``(N, H, W, C)`` to ``(N, windows, p*p, C)``: the non-overlapping ``p x p`` windows, row by row (by
    ``F.unfold``: no reshape of H or W, so torch.export keeps them symbolic)."""
    c = x.shape[-1]
    windows = F.unfold(x.permute(0, 3, 1, 2).contiguous(), p, stride=p)  # N, C * p*p, windows
    return windows.unflatten(1, (c, p * p)).permute(0, 3, 2, 1)


def from_windows(windows: Tensor, p: int, size: tuple) -> Tensor:
    """The inverse of :func:`to_windows` for an ``size = (H, W)`` map: ``(N, H, W, C)``."""
    out = F.fold(windows.permute(0, 3, 2, 1).flatten(1, 2), size, p, stride=p)
    return out.permute(0, 2, 3, 1).contiguous()


class LinearProjection(nn.Module):
    """The query (``to_q``) and key-value (``to_kv``) projections of window attention, the authors' names."""

    def __init__(self, width: int):
        super().__init__()
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)


class WindowAttention(nn.Module):
    """Multi-head self-attention within each window (tokens ``(N, windows, p*p, C)``), with a learned bias per head
    and relative offset (``relative_position_bias_table``: ``((2 p - 1)^2, heads)``, the authors' layout) and an
    optional extra bias (the shifted windows' mask)."""

    def __init__(self, width: int, heads: int, window: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"Uformer: {heads} attention heads do not divide {width} channels")
        self.heads, self.window = heads, window
        self.scale = (width // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = LinearProjection(width)
        self.proj = nn.Linear(width, width)
        row, col = (t.flatten() for t in torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        index = ((row[:, None] - row[None, :] + window - 1) * (2 * window - 1)
                 + (col[:, None] - col[None, :] + window - 1))
        self.register_buffer("offset_index", index, persistent=False)  # (p*p, p*p) into the table's rows

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        head_dim = x.shape[-1] // self.heads
        q = self.qkv.to_q(x).unflatten(-1, (self.heads, head_dim)).transpose(-3, -2)  # N, windows, heads, n, d
        k, v = self.qkv.to_kv(x).unflatten(-1, (2, self.heads, head_dim)).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.offset_index].permute(2, 0, 1)  # heads, n, n
        attention = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            attention = attention + mask[:, None]  # windows, 1, n, n
        return self.proj((attention.softmax(dim=-1) @ v).transpose(-3, -2).flatten(-2))


class LeFF(nn.Module):
    """The locally-enhanced feed-forward on ``(N, H, W, C)``: linear + GELU, 3x3 depthwise conv + GELU, linear."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(width, hidden), nn.GELU())
        self.dwconv = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.GELU())
        self.linear2 = nn.Sequential(nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> Tensor:
        x = self.dwconv(self.linear1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.linear2(x)


class LeWinBlock(nn.Module):
    """The LeWin transformer block on ``(N, H, W, C)``, H and W multiples of ``window``."""

    def __init__(self, width: int, heads: int, window: int, shifted: bool, mlp_ratio: float, modulator: bool,
                 drop_path: float):
        super().__init__()
        self.window, self.shifted = window, shifted
        self.modulator = nn.Embedding(window * window, width) if modulator else None
        self.norm1 = nn.LayerNorm(width)
        self.attn = WindowAttention(width, heads, window)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = LeFF(width, int(width * mlp_ratio))

    def mask(self, h: int, w: int, like: Tensor) -> Tensor:
        """``(windows, p*p, p*p)``: -100 between pixels of a window of the rolled map that the roll brought from
        opposite borders (its last ``window // 2`` rows and columns came from the top and left), else 0: the
        authors' mask, whose three row and three column bands differ only there."""
        shift = self.window // 2
        wrapped = ((torch.arange(h, device=like.device) >= h - shift).to(like.dtype)[:, None] * 2
                   + (torch.arange(w, device=like.device) >= w - shift).to(like.dtype)[None, :])
        label = to_windows(wrapped[None, :, :, None], self.window)[0, :, :, 0]  # windows, p*p
        return (label[:, :, None] != label[:, None, :]).to(like.dtype) * MASKED

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        shift = self.window // 2
        y = self.norm1(x)
        if self.shifted:
            y = roll(y, shift)
        windows = to_windows(y, self.window)
        if self.modulator is not None:
            windows = windows + self.modulator.weight
        y = self.attn(windows, self.mask(h, w, x) if self.shifted else None)
        y = from_windows(y, self.window, (h, w))
        if self.shifted:
            y = roll(y, -shift)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """A stage's blocks (the authors' ``BasicUformerLayer``: ``blocks.<j>``); odd blocks shift their windows."""

    def __init__(self, width: int, depth: int, heads: int, window: int, shift: bool, mlp_ratio: float,
                 modulator: bool, rates: list[float]):
        super().__init__()
        self.blocks = nn.ModuleList(LeWinBlock(width, heads, window, shift and j % 2 == 1, mlp_ratio, modulator,
                                               rates[j]) for j in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Conv(nn.Module):
    """A convolution on ``(N, H, W, C)`` maps under the authors' names (``<name>.0``)."""

    def __init__(self, name: str, conv: nn.Module):
        super().__init__()
        self.name = name
        setattr(self, name, nn.Sequential(conv))

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.name)(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Uformer(nn.Module):
    """Uformer; arguments (the authors' names in brackets):

    channels (``in_chans``, ``dd_in``): image channels in and out (3 for every released net).
    width (``embed_dim``): channels of the first level (then 2x, 4x, 8x, 16x at the bottleneck).
    blocks (``depths``): LeWin blocks of the 9 stages: encoder 1-4, bottleneck, decoder 1-4.
    heads (``num_heads``): attention heads of the 9 stages.
    window (``win_size``): attention windows of ``window x window`` tokens; images are padded to a multiple of
        ``16 * window``.
    mlp_ratio: LeFF's hidden channels / channels.
    modulator: the decoder blocks' learned window modulators (true in every released net).
    drop_path (``drop_path_rate``): stochastic depth, rising linearly from 0 over the encoder blocks, this in the
        bottleneck, falling back to 0 over the decoder (the authors' 0.1 in training).
    input_resolution (``img_size``): a stage whose map at this input size is no larger than ``window`` does not
        shift (the authors' tests: 128; at least ``16 * window``).
    square: pad to a square (the authors' test scripts), else each side to its own multiple.
    """

    def __init__(self, channels: int = 3, width: int = 32, blocks=(1, 2, 8, 8, 2, 8, 8, 2, 1),
                 heads=(1, 2, 4, 8, 16, 16, 8, 4, 2), window: int = 8, mlp_ratio: float = 4.0, modulator: bool = True,
                 drop_path: float = 0.1, input_resolution: int = 128, square: bool = True):
        super().__init__()
        blocks, heads = [int(b) for b in blocks], [int(h) for h in heads]
        if len(blocks) != 9 or len(heads) != 9:
            raise ValueError(f"Uformer: blocks={blocks} and heads={heads} need 9 entries each (encoder 1-4, "
                             f"bottleneck, decoder 1-4)")
        if input_resolution // 16 < window:
            raise ValueError(f"Uformer: input_resolution={input_resolution} is under 16 * window = {16 * window}")
        if sum(blocks[5:]) > sum(blocks[:4]):
            raise ValueError(f"Uformer: blocks={blocks} has more decoder than encoder blocks (the authors' decoder "
                             f"drop-path rates are the encoder's, reversed)")
        encoder = torch.linspace(0, drop_path, sum(blocks[:4]), device="cpu").tolist()  # (also under a meta device)
        decoder = encoder[::-1]
        rates = [encoder[sum(blocks[:i]):sum(blocks[:i + 1])] for i in range(4)] + [[drop_path] * blocks[4]]
        rates += [decoder[sum(blocks[5:i]):sum(blocks[5:i + 1])] for i in range(5, 9)]
        widths = [width * 2 ** level for level in LEVELS[:5]] + [width * 2 ** (level + 1) for level in LEVELS[5:]]

        self.input_proj = Conv("proj", nn.Conv2d(channels, width, 3, padding=1))
        self.input_act = nn.LeakyReLU(inplace=True)
        self.output_proj = Conv("proj", nn.Conv2d(2 * width, channels, 3, padding=1))
        for i, name in enumerate(STAGES):
            shift = input_resolution // 2 ** LEVELS[i] > window
            setattr(self, name, Stage(widths[i], blocks[i], heads[i], window, shift, mlp_ratio,
                                      modulator and i >= 5, rates[i]))
        for i in range(4):
            setattr(self, f"dowsample_{i}", Conv("conv", nn.Conv2d(width * 2 ** i, width * 2 ** (i + 1), 4, 2, 1)))
            setattr(self, f"upsample_{i}", Conv("deconv", nn.ConvTranspose2d(widths[4 + i], width * 2 ** (3 - i),
                                                                             2, stride=2)))
        self.multiple, self.square = 16 * window, square
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        """The authors' initialisation: linear weights truncated normal (std 0.02), zero biases."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def pad(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """``x`` centred in zeros of a square (``square``) or of each side rounded up to ``self.multiple``; and the
        padding (left, right, top, bottom) to cut off again."""
        h, w = x.shape[-2:]
        m = self.multiple
        height, width = (h + m - 1) // m * m, (w + m - 1) // m * m
        if self.square:  # the side twice, by two formulas of equal value: torch.export then does not know that the
            # map is square, whose H * W would be a power (Pow), which m3l's .pt2 check refuses
            height, width = torch.sym_max(height, width), (torch.sym_max(h, w) + m - 1) // m * m
        top, left = (height - h) // 2, (width - w) // 2
        padding = (left, width - w - left, top, height - h - top)
        return F.pad(x, padding), padding

    def forward(self, x: Tensor) -> Tensor:
        padded, padding = self.pad(x)
        y = self.input_act(self.input_proj(padded.permute(0, 2, 3, 1)))
        skips = []
        for i in range(4):
            y = getattr(self, STAGES[i])(y)
            skips.append(y)
            y = getattr(self, f"dowsample_{i}")(y)
        y = self.conv(y)
        for i in range(4):
            y = torch.cat((getattr(self, f"upsample_{i}")(y), skips[3 - i]), dim=-1)
            y = getattr(self, STAGES[5 + i])(y)
        y = self.output_proj(y).permute(0, 3, 1, 2) + padded
        return F.pad(y, tuple(-p for p in padding))


# The authors' files (ZhendongWang6/Uformer, README "Pretrained model"): training checkpoints.

INDEX = re.compile(r"\.attn\.relative_position_index$")


def is_uformer(raw: dict) -> bool:
    """The authors' Uformer state dict (wrapped in ``state_dict``, keys with or without ``module.``)."""
    state = unwrap(raw)
    return all(key in state for key in ("input_proj.proj.0.weight", "output_proj.proj.0.weight",
                                        "conv.blocks.0.attn.relative_position_bias_table"))


def stage_blocks(state: dict, stage: str) -> int:
    count = 0
    while f"{stage}.blocks.{count}.norm1.weight" in state:
        count += 1
    return count


def net_args_of(state: dict) -> dict:
    """The :class:`Uformer` arguments a state dict in the authors' layout implies. ``input_resolution`` is not in
    the file: 128, with which the authors' test scripts build the released nets; ``drop_path`` their 0.1."""
    head = state["input_proj.proj.0.weight"]
    if head.dim() != 4:
        raise M3LError(f"uformer: input_proj.proj.0.weight has shape {tuple(head.shape)}, not a convolution's")
    blocks = [stage_blocks(state, s) for s in STAGES]
    if not all(blocks):
        empty = STAGES[blocks.index(0)]
        raise M3LError(f"uformer: the file has no blocks in {empty} (no {empty}.blocks.0.norm1.weight); is the file "
                       f"complete?")
    tables = [state[f"{s}.blocks.0.attn.relative_position_bias_table"] for s in STAGES]
    if any(t.dim() != 2 for t in tables):
        raise M3LError("uformer: a relative_position_bias_table is not ((2 window - 1)^2, heads); is this file in "
                       "another layout?")
    width = int(head.shape[0])
    linear1 = state.get("encoderlayer_0.blocks.0.mlp.linear1.0.weight")
    if linear1 is None:
        raise M3LError("uformer: the file lacks encoderlayer_0.blocks.0.mlp.linear1.0.weight (only the LeFF "
                       "feed-forward of the released nets is known)")
    return {"channels": int(head.shape[1]), "width": width, "blocks": blocks,
            "heads": [int(t.shape[1]) for t in tables], "window": (round(tables[0].shape[0] ** 0.5) + 1) // 2,
            "mlp_ratio": int(linear1.shape[0]) / width,
            "modulator": "decoderlayer_0.blocks.0.modulator.weight" in state,
            "drop_path": 0.1, "input_resolution": 128, "square": True}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names, less the ``relative_position_index`` buffers (this net computes
    them), checked against the net they imply: one line naming the first key missing, extra or of another shape."""
    state = {k: v for k, v in unwrap(raw).items() if not INDEX.search(k)}
    net_args = net_args_of(state)
    return check_same_keys(state, Uformer, net_args, "uformer"), net_args


LAYOUTS = (Layout(name="uformer", detect=is_uformer, convert=convert_authors,
                  description="the Uformer authors' checkpoints ({'state_dict': ...}, module.* keys): Uformer-B "
                              "SIDD and GoPro"),)


# Weights entries (Wang et al. 2022): the README's OneDrive (SharePoint) share links of the Uformer-B files;
# a share link answers with a web page unless "download=1" is added, as here. The released file names are not
# given by the README: `file` is m3l's name for them (put them under weights_dir by these names).
SHARE = "https://mailustceducn-my.sharepoint.com/:u:/g/personal/zhendongwang_mail_ustc_edu_cn/"
SOURCE = "Wang et al., CVPR 2022 (ZhendongWang6/Uformer, README's OneDrive links; MIT licence)"
ARCH = {"width": 32, "blocks": [1, 2, 8, 8, 2, 8, 8, 2, 1], "heads": [1, 2, 4, 8, 16, 16, 8, 4, 2], "window": 8,
        "mlp_ratio": 4.0, "modulator": True, "drop_path": 0.1, "input_resolution": 128, "square": True}

WEIGHTS = (
    Weights(model="uformer", variant="gopro", sha256=None, file="Uformer_B_GoPro.pth",
            url=SHARE + "EfCPoTSEKJRAshoE6EAC_3YB7oNkbLUX6AUgWSCwoJe0oA?download=1",
            net={"channels": 3, **ARCH}, layout="uformer", protocol=GOPRO_TEST,
            metrics={"gopro/gopro_blur/psnr": 33.06, "gopro/gopro_blur/ssim": 0.967},
            source=f"{SOURCE}; motion deblurring, trained on GoPro (256x256 patches); the paper's GoPro PSNR "
                   f"33.06 dB (CVPR version; arXiv v2 and Papers with Code: 32.97), SSIM 0.967 not checked against "
                   f"the PDF here; tested as the authors' test/test_gopro_hide.py (whole images in a zero square "
                   f"of a multiple of 128)"),
    Weights(model="uformer", variant="sidd", sha256=None, file="Uformer_B_SIDD.pth",
            url=SHARE + "Ea7hMP82A0xFlOKPlQnBJy0B9gVP-1MJL75mR4QKBMGc2w?download=1",
            net={"channels": 3, **ARCH}, layout="uformer", protocol=SIDD_TEST,
            metrics={"sidd/real/psnr": 39.89, "sidd/real/ssim": 0.960},
            source=f"{SOURCE}; real-noise denoising, trained on SIDD Medium sRGB (128x128 patches); the paper's "
                   f"SIDD PSNR 39.89 dB (CVPR version), SSIM 0.960 not checked against the PDF here; tested on the "
                   f"1280 256x256 validation blocks as PNG pairs input/ target/ (the authors' test/test_sidd.py reads "
                   f"ValidationNoisyBlocksSrgb.mat and scores with MATLAB)"),
)

FAMILY = register(Family(
    "uformer", Uformer,
    tiny={"width": 2, "blocks": [1, 2, 1, 1, 2, 1, 1, 2, 1], "heads": [1, 1, 1, 2, 2, 2, 2, 1, 1], "window": 2,
          "input_resolution": 64, "mlp_ratio": 2.0},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""Uformer-B (Wang et al. 2022), deblurring and real-noise denoising. ``pretrained=True``: motion deblurring
    (GoPro 33.06 dB); ``variant``:
    ``sidd`` (real camera noise, SIDD 39.89 dB)."""))
