"""SwinIR (Liang, Cao, Sun, Zhang, Van Gool, Timofte: "SwinIR: Image Restoration Using Swin Transformer",
ICCV Workshops 2021), for image denoising and JPEG artifact removal (no upsampling: the authors'
``upsampler=""``; their super-resolution variants are not here).

A 3x3 convolution lifts the image to ``embed_dim`` features; residual Swin transformer blocks (RSTB:
``depths[i]`` Swin layers, then a 3x3 convolution, plus a skip) refine them; a layer norm, a 3x3
convolution and the shallow features' skip, then a 3x3 convolution back to the image, added to the input
(global residual). A Swin layer is window attention over non-overlapping ``window_size`` x ``window_size``
windows with a learned relative-position bias, every second layer on windows shifted by half a window
(a cyclic roll; pixels that the roll brought together from opposite borders do not attend to each other),
then a two-layer GELU MLP (``mlp_ratio`` x wider), each with a pre-norm and a residual. The input is
centred by the training set's RGB mean (colour) and scaled by ``img_range`` (1 for denoising, 255 for the
JPEG models, as the authors' ``main_test_swinir.py``), and both are undone at the end.

The paper's nets (SwinIR-M): ``embed_dim=180``, ``depths=heads=[6]*6``, ``mlp_ratio=2``,
``resi_connection="1conv"``; window 8 for denoising (trained on 128 px patches), window 7 and
``img_range=255`` for JPEG (126 px patches; "JPEG encoding uses 8x8 blocks"): 11,504,163 parameters in
colour, 11,497,681 in gray (window 8); 11,492,067 / 11,485,585 with window 7.

Sizes. In eval mode the image is padded as the authors' test script pads it before calling their net:
bottom and right, by mirror images (symmetric: the border pixel repeated) up to the next multiple of the
window strictly above the size, ``(size // window + 1) * window`` (so a size that is already a multiple
gains a whole window), and the output is cropped back. In training mode it is padded as the authors' net
pads its own input (reflection up to a multiple; nothing for their 128 / 126 px patches). The image must
be at least ``window_size + 1`` pixels high and wide.

Parameter names are the authors' (``conv_first``, ``patch_embed.norm``, ``layers.<i>.residual_group.
blocks.<j>.{norm1, attn.relative_position_bias_table, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
``layers.<i>.conv``, ``norm``, ``conv_after_body``, ``conv_last``), so their released files load as they are;
their two buffers (``relative_position_index`` and the shifted-window ``attn_mask`` of the training size)
are recomputed here and are not part of the state dict. The released files' layout: :func:`convert`.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._blocks import DropPath
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import Family, Weights, noise, register, rows
from m3l.models.common import crop, pad_to_multiple

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # the authors' colour mean (DIV2K's), subtracted before the net
MASKED = -100.0  # the authors' attention logit offset between pixels of different regions of a shifted window


def relative_position_index(window: int) -> Tensor:
    """``(window**2, window**2)``: for each pair of pixels of a window (row-major), the row of the bias table
    for their offset, ``(dy + window - 1) * (2 * window - 1) + (dx + window - 1)``."""
    y, x = (c.flatten() for c in torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    return (y[:, None] - y[None, :] + window - 1) * (2 * window - 1) + (x[:, None] - x[None, :] + window - 1)


def to_windows(x: Tensor, window: int) -> Tensor:
    """``(B, H, W, C)`` to ``(B, L, window**2, C)``: the ``L = H W / window**2`` windows in the authors' (row-major)
    order, their pixels row-major. ``F.unfold`` rather than reshapes: the exporter's shape algebra cannot split a
    dynamic size into windows (it cannot prove ``(n + 1) * window`` divisible by ``n + 1``)."""
    c = x.shape[-1]
    columns = F.unfold(x.permute(0, 3, 1, 2), window, stride=window)  # (B, C * window**2, L)
    return columns.unflatten(1, (c, window * window)).permute(0, 3, 2, 1)


def from_windows(x: Tensor, window: int, size: tuple[int, int]) -> Tensor:
    """Undoes :func:`to_windows` (``F.fold``, windows not overlapping: a copy): ``(B, H, W, C)``."""
    columns = x.permute(0, 3, 2, 1).flatten(1, 2)  # (B, C * window**2, L)
    return F.fold(columns, size, window, stride=window).permute(0, 2, 3, 1)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device=None, dtype=torch.float32) -> Tensor:
    """``(L, window**2, window**2)``, windows as :func:`to_windows`: 0 between pixels of one region of a window after
    the cyclic shift, -100 between pixels the roll brought from opposite borders. Regions along each axis:
    ``[0, n - window)``, ``[n - window, n - shift)``, ``[n - shift, n)``."""
    def regions(n: int) -> Tensor:
        i = torch.arange(n, device=device)
        return (i >= n - window).long() + (i >= n - shift).long()

    label = (regions(h)[:, None] * 3 + regions(w)[None, :]).to(dtype)[None, :, :, None]  # (1, H, W, 1)
    label = to_windows(label, window)[0, ..., 0]  # (L, window**2)
    different = label[:, None, :] != label[:, :, None]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, MASKED)


def mirror_pad(x: Tensor, window: int) -> Tensor:
    """The authors' test padding (``main_test_swinir.py``): bottom and right, to ``(size // window + 1) * window``,
    by the image's mirror (``cat([x, flip(x)])``: the border pixel repeated; mirrored again for an image under half
    a window, which their script does not handle alike). Index gathers, so ``torch.export`` keeps sizes dynamic."""
    h, w = x.shape[-2:]

    def indices(size: int) -> Tensor:
        i = torch.arange((size // window + 1) * window, device=x.device)
        if isinstance(size, int) and len(i) > 2 * size:  # under half a window (eager only; exports take window + 1)
            i = i % (2 * size)
        return torch.minimum(i, 2 * size - 1 - i)  # i, then 2 size - 1 - i: the border pixel repeated

    return x.index_select(-2, indices(h)).index_select(-1, indices(w))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per head and relative offset."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads, self.scale = window, heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, L, N, C)`` (L windows of N = window**2 pixels); ``mask``: ``(L, N, N)`` or None."""
        n, c = x.shape[-2:]
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, c // self.heads))  # (B, L, N, 3, heads, C / heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, L, heads, N, C / heads)
        logits = (q * self.scale) @ k.transpose(-2, -1)  # (B, L, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        logits = logits + bias.reshape(n, n, self.heads).permute(2, 0, 1)
        if mask is not None:
            logits = logits + mask[:, None]
        y = logits.softmax(dim=-1) @ v
        return self.proj(y.transpose(-3, -2).flatten(-2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinLayer(nn.Module):
    """One Swin transformer layer (the authors' ``SwinTransformerBlock``) on ``(B, H, W, C)`` features."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        s = self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = from_windows(self.attn(to_windows(y, self.window), mask if s else None), self.window, x.shape[1:3])
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinLayers(nn.Module):
    """The Swin layers of an RSTB (the authors' ``BasicLayer``: ``residual_group.blocks``)."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        self.blocks = nn.ModuleList(SwinLayer(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                                              drop_path[i]) for i in range(depth))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


def residual_conv(dim: int, kind: str) -> nn.Module:
    """The convolution closing a residual group: ``1conv`` (3x3) or ``3conv`` (3x3 to dim / 4, 1x1, 3x3 back,
    leaky ReLUs between: the authors' lighter variant)."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, padding=1)
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim // 4, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim, 3, padding=1))


def channels_last(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C): the authors' tokens, H and W kept apart


def channels_first(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2).contiguous()  # the convolutions then run as the authors' do (same sums)


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin layers, a convolution, a skip."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, drop_path: list[float],
                 resi_connection: str):
        super().__init__()
        self.residual_group = SwinLayers(dim, depth, heads, window, mlp_ratio, drop_path)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return channels_last(self.conv(channels_first(self.residual_group(x, mask)))) + x


class TokenNorm(nn.Module):
    """The layer norm of the tokens entering the transformer (the authors' ``patch_embed``, patch size 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class SwinIR(nn.Module):
    """SwinIR without upsampling (denoising, JPEG artifact removal); see the module's docstring.

    Args:
        channels: image channels (1 gray, 3 colour; the authors' ``in_chans``).
        embed_dim: feature width.
        depths: Swin layers of each residual group.
        heads: attention heads of each residual group (the authors' ``num_heads``).
        window_size: attention window side; the image is padded to a multiple of it.
        mlp_ratio: MLP hidden width / ``embed_dim``.
        img_range: the scale of the image inside the net (1.0; 255.0 for the authors' JPEG models).
        resi_connection: ``1conv`` or ``3conv`` (see :func:`residual_conv`).
        drop_path: the stochastic-depth rate of the last layer (linearly from 0 over the layers; training only;
            0.1 in the authors' code).
    """

    def __init__(self, channels: int = 3, embed_dim: int = 180, depths=(6, 6, 6, 6, 6, 6), heads=(6, 6, 6, 6, 6, 6),
                 window_size: int = 8, mlp_ratio: float = 2.0, img_range: float = 1.0, resi_connection: str = "1conv",
                 drop_path: float = 0.1):
        super().__init__()
        depths, heads = list(depths), list(heads)
        if resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"SwinIR: resi_connection={resi_connection!r}; use 1conv or 3conv")
        if len(depths) != len(heads) or any(embed_dim % h for h in heads):
            raise ValueError(f"SwinIR: depths {depths} and heads {heads} must have one entry per residual group, "
                             f"each number of heads dividing embed_dim={embed_dim}")
        self.window_size, self.img_range, self.multiple = window_size, float(img_range), window_size
        mean = RGB_MEAN if channels == 3 else (0.0,) * channels
        self.register_buffer("mean", torch.tensor(mean).reshape(1, channels, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(channels, embed_dim, 3, padding=1)
        self.patch_embed = TokenNorm(embed_dim)
        total = sum(depths)
        rates = [drop_path * i / (total - 1) if total > 1 else 0.0 for i in range(total)]  # linear from 0
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(RSTB(embed_dim, d, h, window_size, mlp_ratio, rates[s:s + d], resi_connection)
                                    for d, h, s in zip(depths, heads, starts))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)
        self.conv_last = nn.Conv2d(embed_dim, channels, 3, padding=1)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        """The authors' initialisation: truncated normal (std 0.02) linear weights, zero biases, unit layer norms
        (convolutions keep PyTorch's default)."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def features(self, x: Tensor) -> Tensor:
        shift = self.window_size // 2
        h, w = x.shape[-2:]
        mask = shifted_window_mask(h, w, self.window_size, shift, x.device, x.dtype) if shift else None
        tokens = self.patch_embed(channels_last(x))
        for layer in self.layers:
            tokens = layer(tokens, mask)
        return channels_first(self.norm(tokens))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.training:  # the authors' net: reflection to a multiple (none for their training patches)
            x, _ = pad_to_multiple(x, self.window_size, mode="reflect")
        else:  # the authors' test script
            x = mirror_pad(x, self.window_size)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        first = self.conv_first(x)
        x = x + self.conv_last(self.conv_after_body(self.features(first)) + first)
        return crop(x / self.img_range + mean, (h, w))


# ------------------------------------------------------------------------------------------ released layouts
# The authors' files (JingyunLiang/SwinIR, release v0.0): {"params": state} (their training code, KAIR's
# save_network; main_test_swinir.py loads "params" where the file has it, else the file itself), keys as above
# plus the buffers "relative_position_index" of every layer and "attn_mask" of the shifted ones (dropped here).
BUFFERS = (".attn.relative_position_index", ".attn_mask")
UPSAMPLING = ("conv_before_upsample.0.weight", "upsample.0.weight", "conv_up1.weight", "conv_hr.weight")


def is_swinir(raw: dict) -> bool:
    state = unwrap(raw)
    return ("conv_first.weight" in state
            and "layers.0.residual_group.blocks.0.attn.relative_position_bias_table" in state)


def count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def net_args_of(state: dict) -> dict:
    """The architecture a SwinIR state implies: channels and width from ``conv_first``, the layers of each
    group, its heads and the window from its first bias table (``((2 window - 1)^2, heads)``), the MLP ratio from
    ``fc1``, the residual convolution from ``conv_after_body``. ``img_range`` is not in the file: 255 for window 7
    (the authors' JPEG models), else 1, the rule of their ``main_test_swinir.py``."""
    upsampling = [k for k in UPSAMPLING if k in state]
    if upsampling:
        raise M3LError(f"swinir: the file is a super-resolution SwinIR ({upsampling[0]}); m3l's SwinIR is the "
                       f"denoising / JPEG one (no upsampler): use the 004_grayDN_*, 005_colorDN_*, 006_*CAR_* files")
    first, last = state["conv_first.weight"], state.get("conv_last.weight")
    if first.dim() != 4 or last is None or last.dim() != 4 or last.shape[0] != first.shape[1]:
        raise M3LError("swinir: conv_first.weight and conv_last.weight do not agree on the image channels "
                       f"({tuple(first.shape)}, {None if last is None else tuple(last.shape)}); is the file complete?")
    groups = count(state, r"layers\.(\d+)\.residual_group\.")
    depths = [count(state, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.") for i in range(groups)]
    tables = [state.get(f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table") for i in range(groups)]
    if any(t is None or t.dim() != 2 for t in tables):
        raise M3LError("swinir: every residual group needs layers.<i>.residual_group.blocks.0.attn."
                       "relative_position_bias_table of shape ((2 window - 1)^2, heads); is the file complete?")
    side = math.isqrt(int(tables[0].shape[0]))
    if side * side != tables[0].shape[0] or side % 2 == 0:
        raise M3LError(f"swinir: layers.0.residual_group.blocks.0.attn.relative_position_bias_table has "
                       f"{tables[0].shape[0]} rows, not (2 window - 1)^2")
    window, embed = (side + 1) // 2, int(first.shape[0])
    hidden = state.get("layers.0.residual_group.blocks.0.mlp.fc1.weight")
    if hidden is None or hidden.dim() != 2:
        raise M3LError("swinir: the file lacks layers.0.residual_group.blocks.0.mlp.fc1.weight; is it complete?")
    return {"channels": int(first.shape[1]), "embed_dim": embed, "depths": depths,
            "heads": [int(t.shape[1]) for t in tables], "window_size": window,
            "mlp_ratio": float(hidden.shape[0]) / embed, "img_range": 255.0 if window == 7 else 1.0,
            "resi_connection": "1conv" if "conv_after_body.weight" in state else "3conv"}


def convert(raw: dict) -> tuple[dict, dict]:
    """m3l's state dict and net arguments of an authors' SwinIR file (or of a bare state dict of m3l's SwinIR):
    the same names, without the two buffers; every key and shape checked against the net it implies."""
    state = {k: v for k, v in unwrap(raw).items() if not k.endswith(BUFFERS)}
    net_args = net_args_of(state)
    return check_same_keys(state, SwinIR, net_args, "swinir"), net_args


LAYOUTS = (Layout(name="swinir", detect=is_swinir, convert=convert,
                  description="the SwinIR authors' denoising and JPEG files: 004_grayDN_*, 005_colorDN_*, 006_CAR_*, "
                              "006_colorCAR_*.pth"),)

# ------------------------------------------------------------------------------------------- weights entries
# The authors' release v0.0 (Apache-2.0). One file per noise level / JPEG quality, each tested at its own.
# Published numbers: the paper's Table 5 (gray denoising, PSNR), Table 6 (colour denoising, PSNR), Table 4 (gray
# JPEG, PSNR / SSIM / PSNR-B); colour JPEG (LIVE1, RGB: PSNR / SSIM / PSNR-B) from the repository's README.
# Checked against the tables as the authors' README shows them (JingyunLiang/SwinIR commit 6545850:
# figs/gray_image_denoising.png, figs/color_image_denoising.png, figs/jepg_compress_artfact_reduction.png, and the
# README's colour JPEG table; its columns are PSNR / PSNR-B / SSIM, stored here as PSNR / SSIM / PSNR-B).
# The authors' test: whole images, padded as in the module's docstring, noise np.random.seed(0) per image,
# PSNR / SSIM on the 8-bit output without border crop; gray JPEG on the Y channel of colour images.
RELEASE = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
SOURCE = ("Liang et al. 2021 (JingyunLiang/SwinIR release v0.0; Apache-2.0); numbers: the paper's Tables 4-6 "
          "as the authors' README shows them, colour JPEG from the README's table")
PAPER_ARCH = {"embed_dim": 180, "depths": [6] * 6, "heads": [6] * 6, "mlp_ratio": 2.0, "resi_connection": "1conv"}
DENOISING = {**PAPER_ARCH, "window_size": 8, "img_range": 1.0}
JPEG = {**PAPER_ARCH, "window_size": 7, "img_range": 255.0}
GRAY_DN = {"set12": (33.36, 31.01, 27.91), "bsd68": (31.97, 29.50, 26.58), "urban100": (33.70, 31.30, 27.98)}
COLOR_DN = {"cbsd68": (34.42, 31.78, 28.56), "kodak24": (35.34, 32.89, 29.79), "mcmaster": (35.61, 33.20, 30.22),
            "urban100": (35.13, 32.90, 29.82)}
GRAY_JPEG = {"classic5": {10: (30.27, .8249, 29.95), 20: (32.52, .8748, 31.99), 30: (33.73, .8961, 33.03),
                          40: (34.52, .9082, 33.66)},
             "live1_gray": {10: (29.86, .8287, 29.50), 20: (32.25, .8909, 31.70), 30: (33.69, .9174, 33.01),
                            40: (34.67, .9317, 33.88)}}
COLOR_JPEG = {"live1_color": {10: (28.06, .8089, 27.76), 20: (30.45, .8741, 29.97), 30: (31.82, .9018, 31.24),
                              40: (32.75, .9174, 32.12)}}


def sets(*names: str) -> str:
    return "data.test_sets={" + ",".join(f"{n}:{{data_root}}/{n}" for n in names) + "}"


def one_degradation(kind: str, key: str, value: int) -> str:
    return f"data.test_degradations=[{{_target_:m3l.data.degradations.{kind},{key}:{value}}}]"


def denoising(channels: int, s: int, table: dict) -> Weights:
    name = {1: "004_grayDN", 3: "005_colorDN"}[channels]
    return Weights(model="swinir", variant=f"{'gray' if channels == 1 else 'color'}_sigma{s}",
                   url=f"{RELEASE}{name}_DFWB_s128w8_SwinIR-M_noise{s}.pth", sha256=None,
                   net={"channels": channels, **DENOISING}, layout="swinir",
                   metrics=rows({n: noise((v[(15, 25, 50).index(s)],), (s,)) for n, v in table.items()}),
                   protocol=(f"data.channels={channels}", sets(*table), one_degradation("GaussianNoise", "sigma", s)),
                   source=SOURCE)


def jpeg(channels: int, q: int, table: dict) -> Weights:
    name = {1: "006_CAR", 3: "006_colorCAR"}[channels]
    return Weights(model="swinir", variant=f"{'gray' if channels == 1 else 'color'}_jpeg{q}",
                   url=f"{RELEASE}{name}_DFWB_s126w7_SwinIR-M_jpeg{q}.pth", sha256=None,
                   net={"channels": channels, **JPEG}, layout="swinir",
                   metrics=rows({n: {f"jpeg{q}": v[q]} for n, v in table.items()}, ("psnr", "ssim", "psnrb")),
                   protocol=(f"data.channels={channels}", sets(*table), one_degradation("JPEG", "quality", q),
                             "metrics.psnrb=true"), source=SOURCE)


WEIGHTS = (
    *[denoising(3, s, COLOR_DN) for s in (15, 25, 50)],
    *[denoising(1, s, GRAY_DN) for s in (15, 25, 50)],
    *[jpeg(1, q, GRAY_JPEG) for q in (10, 20, 30, 40)],
    *[jpeg(3, q, COLOR_JPEG) for q in (10, 20, 30, 40)],
)

FAMILY = register(Family(
    "swinir", SwinIR, tiny={"embed_dim": 8, "depths": [2], "heads": [2], "window_size": 4, "drop_path": 0.0},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""SwinIR (Liang et al. 2021), Swin-transformer denoising and JPEG artifact removal. ``pretrained=True``:
    the authors' colour sigma-15 model (CBSD68 34.42 dB); ``variant``: ``color_sigma15|25|50``,
    ``gray_sigma15|25|50`` (Set12 33.36 / 31.01 / 27.91 dB), ``gray_jpeg10|20|30|40`` (Classic5, LIVE1),
    ``color_jpeg10|20|30|40`` (LIVE1); or a weights file's path (its layout gives the architecture). ``kwargs`` go
    to ``m3l.models.swinir.SwinIR`` (channels, embed_dim, depths, heads, window_size, mlp_ratio, img_range,
    resi_connection, drop_path)."""))
