"""SCUNet (Zhang, Li, Liang, Cao, Zhang, Tang, Fan, Timofte, Van Gool: "Practical Blind Image Denoising via
Swin-Conv-UNet and Data Synthesis", Machine Intelligence Research 20(6), 2023; arXiv 2203.13278).

A 4-level U-Net (widths ``width``, 2x, 4x, 8x; 2x2 stride-2 convolutions down, 2x2 transposed convolutions up,
skips added, no global residual) whose blocks are swin-conv blocks: a 1x1 convolution, its channels split in
halves, one half through a residual 3x3-ReLU-3x3 convolution block, the other through a swin transformer block
(window self-attention over 8x8 windows with a learned relative-position bias, layer norms, a 4x MLP with GELU),
the halves concatenated, a 1x1 convolution, added to the block's input. Within each stage the blocks alternate
plain windows (even blocks) and windows shifted by half a window (odd blocks), unless the stage's training patch
(``input_resolution / 2**level``) is no larger than a window. ``blocks`` counts the swin-conv blocks of the
seven stages (down 1-3, body, up 3-1): the released nets have ``[4, 4, 4, 4, 4, 4, 4]`` at width 64, with
attention heads of 32 channels: 17,946,072 parameters in color (17,943,768 in gray).

The image is padded at the bottom and right to a multiple of 64 by repeating its edge and the result cropped
back, as the authors' forward does (their ``models/network_scunet.py``: ``ReplicationPad2d``). Their Gaussian
test scripts run the net on four overlapping tiles of 64-multiple sizes (``utils_model.test_onesplit``) rather
than on the whole image: results measured here on whole images may differ slightly from the paper's.

State-dict keys are the authors' (``m_head.0``, ``m_down1.<i>.conv1_1``, ``...trans_block.msa.embedding_layer``,
``...trans_block.msa.relative_position_params`` of shape (heads, 15, 15), ``m_up3.0`` the transposed conv,
``m_tail.0``, ...), so the released files (cszn/KAIR v1.0: ``scunet_color_15.pth``, ``scunet_gray_25.pth``,
``scunet_color_real_psnr.pth``, ...) load unchanged; :func:`is_scunet` / :func:`convert_authors` below recognise
them and give the architecture (``net.pretrained=FILE``), and :data:`WEIGHTS` lists them (the registry's table).

The real-world weights (``scunet_color_real_psnr``: L1-trained, ``scunet_color_real_gan``: with perceptual and
adversarial losses, sharper) were trained on the paper's synthesized real noise (Gaussian, Poisson, speckle, JPEG,
processed camera sensor noise, resizing, in random order): they are m3l's default for photos with real camera
noise, used with ``correct`` (no sigma to give)::

    python -m m3l.run.correct model=scunet net.pretrained=scunet_color_real_psnr data.correct_dir=PHOTOS \\
        serializer.root_dir=OUT
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._blocks import DropPath
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import Family, Weights, register
from m3l.models.common import crop, pad_to_multiple

MULTIPLE = 64  # the authors pad to a multiple of 64: three 2x downsamplings, then 8x8 windows


def roll(x: Tensor, shift: int) -> Tensor:
    """``x`` of shape ``(N, H, W, C)`` rolled cyclically by ``-shift`` rows and columns (up and left for a positive
    ``shift``): ``torch.roll(x, (-shift, -shift), (1, 2))``, as slices (no modulo of a size for torch.export)."""
    x = torch.cat((x[:, shift:], x[:, :shift]), dim=1)
    return torch.cat((x[:, :, shift:], x[:, :, :shift]), dim=2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window x window`` windows of a ``(N, H, W, C)`` map,
    with a learned bias per head and relative offset; ``shifted``: the windows are moved by half a window
    (the map rolled up and left, then back) and pixels that the roll brought from the opposite border do not
    attend to each other. ``H`` and ``W`` must be multiples of ``window``.

    Parameter names are the authors' (``embedding_layer``: the q, k, v projection, grouped as three blocks of
    ``heads x head_dim`` channels; ``relative_position_params``: ``(heads, 2 window - 1, 2 window - 1)``;
    ``linear``: the output projection)."""

    def __init__(self, width: int, head_dim: int, window: int, shifted: bool):
        super().__init__()
        if width % head_dim:
            raise ValueError(f"SCUNet: a transformer half of {width} channels is not a whole number of heads of "
                             f"{head_dim} channels (width / 2 must be a multiple of head_dim)")
        self.heads, self.head_dim, self.window, self.shifted = width // head_dim, head_dim, window, shifted
        self.embedding_layer = nn.Linear(width, 3 * width)
        self.relative_position_params = nn.Parameter(torch.empty(self.heads, 2 * window - 1, 2 * window - 1))
        nn.init.trunc_normal_(self.relative_position_params, std=0.02)
        self.linear = nn.Linear(width, width)
        # (window^2, window^2): index into the flattened (2 window - 1)^2 offsets of each query / key pair
        row, col = (t.flatten() for t in torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        offset = (row[:, None] - row[None, :] + window - 1) * (2 * window - 1) + (col[:, None] - col[None, :] + window - 1)
        self.register_buffer("offset_index", offset, persistent=False)

    def bias(self, h: int, w: int) -> Tensor:
        """``(windows or 1, heads, window^2, window^2)`` for an ``h x w`` map: the relative-position bias of each
        head, and ``-inf`` between pixels that the shift brought from opposite borders (the last ``window // 2``
        rows and columns of the rolled map came from its top and left: the authors' mask of the last window row
        and column)."""
        relative = self.relative_position_params.flatten(1)[:, self.offset_index][None]  # 1, heads, n, n
        if not self.shifted:
            return relative
        shift, device = self.window // 2, relative.device
        wrapped = ((torch.arange(h, device=device) >= h - shift).float()[:, None] * 2
                   + (torch.arange(w, device=device) >= w - shift).float()[None, :])  # h, w: 0-3
        label = F.unfold(wrapped[None, None], self.window, stride=self.window)[0].t()  # windows, n
        return relative.masked_fill((label[:, :, None] != label[:, None, :])[:, None], float("-inf"))

    def forward(self, x: Tensor) -> Tensor:
        # Windows in and out by F.unfold / F.fold (no reshape of H or W), tensors contiguous between layouts:
        # torch.export then keeps H and W symbolic.
        n, h, w, c = x.shape
        p, shift = self.window, self.window // 2
        if self.shifted:
            x = roll(x, shift)
        windows = F.unfold(x.permute(0, 3, 1, 2).contiguous(), p, stride=p)  # n, C * p*p, windows
        windows = windows.unflatten(1, (c, p * p)).permute(0, 3, 2, 1)  # n, windows, p*p, C
        qkv = self.embedding_layer(windows).unflatten(-1, (3, self.heads, self.head_dim))
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each n, windows, heads, p*p, head_dim
        attention = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1) + self.bias(h, w).to(q.dtype)
        out = self.linear((attention.softmax(dim=-1) @ v).transpose(2, 3).flatten(-2))  # heads concatenated
        out = F.fold(out.permute(0, 3, 2, 1).flatten(1, 2), (h, w), p, stride=p).permute(0, 2, 3, 1).contiguous()
        return roll(out, -shift) if self.shifted else out


class SwinBlock(nn.Module):
    """Pre-norm transformer block on ``(N, H, W, C)``: window attention then a 4x MLP, both residual."""

    def __init__(self, width: int, head_dim: int, window: int, shifted: bool, drop_path: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.msa = WindowAttention(width, head_dim, window, shifted)
        self.drop_path = DropPath(drop_path)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class SwinConvBlock(nn.Module):
    """The swin-conv block: 1x1 conv, half the channels through a residual conv block and half through a
    :class:`SwinBlock`, concatenated, 1x1 conv, plus the input."""

    def __init__(self, width: int, head_dim: int, window: int, shifted: bool, drop_path: float):
        super().__init__()
        self.half = width // 2
        self.conv1_1 = nn.Conv2d(width, width, 1)
        self.conv_block = nn.Sequential(nn.Conv2d(self.half, self.half, 3, padding=1, bias=False), nn.ReLU(True),
                                        nn.Conv2d(self.half, self.half, 3, padding=1, bias=False))
        self.trans_block = SwinBlock(width - self.half, head_dim, window, shifted, drop_path)
        self.conv1_2 = nn.Conv2d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        conv, trans = self.conv1_1(x).split((self.half, x.shape[1] - self.half), dim=1)
        conv = conv + self.conv_block(conv)
        trans = self.trans_block(trans.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2).contiguous()
        return x + self.conv1_2(torch.cat((conv, trans), dim=1))


class SCUNet(nn.Module):
    """SCUNet; arguments (the authors' names in brackets):

    channels (``in_nc``): image channels, 1 gray or 3 RGB (the output has as many).
    blocks (``config``): swin-conv blocks of the 7 stages: down 1, 2, 3, body, up 3, 2, 1.
    width (``dim``): channels at the top level (then 2x, 4x, 8x); ``width / 2`` must be a multiple of
        ``head_dim``.
    head_dim: channels of an attention head (32 in every released net; a small ``width`` needs a smaller one).
    window: attention window size (8).
    drop_path (``drop_path_rate``): stochastic depth, rising linearly from 0 to this over the blocks (0: none).
    input_resolution: the training patch size the authors set; a stage whose patch (``input_resolution /
        2**level``) is at most ``window`` does not shift its windows (256 for every released net: all shift).
    """

    def __init__(self, channels: int = 3, blocks=(4, 4, 4, 4, 4, 4, 4), width: int = 64, head_dim: int = 32,
                 window: int = 8, drop_path: float = 0.0, input_resolution: int = 256):
        super().__init__()
        blocks = [int(b) for b in blocks]
        if len(blocks) != 7:
            raise ValueError(f"SCUNet: blocks={blocks} has {len(blocks)} entries; give 7 (down 1-3, body, up 3-1)")
        rates = torch.linspace(0, drop_path, sum(blocks), device="cpu").tolist()  # (also under a meta device)
        starts = [sum(blocks[:i]) for i in range(7)]
        levels = (0, 1, 2, 3, 2, 1, 0)  # the U's level of each stage

        def stage(i: int) -> list[nn.Module]:
            c = width * 2 ** levels[i]
            still = input_resolution // 2 ** levels[i] <= window  # too small a training patch to shift
            return [SwinConvBlock(c, head_dim, window, j % 2 == 1 and not still, rates[starts[i] + j])
                    for j in range(blocks[i])]

        self.m_head = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False))
        downs = [nn.Conv2d(width * 2 ** i, width * 2 ** (i + 1), 2, stride=2, bias=False) for i in range(3)]
        ups = [nn.ConvTranspose2d(width * 2 ** (i + 1), width * 2 ** i, 2, stride=2, bias=False) for i in (2, 1, 0)]
        self.m_down1 = nn.Sequential(*stage(0), downs[0])
        self.m_down2 = nn.Sequential(*stage(1), downs[1])
        self.m_down3 = nn.Sequential(*stage(2), downs[2])
        self.m_body = nn.Sequential(*stage(3))
        self.m_up3 = nn.Sequential(ups[0], *stage(4))
        self.m_up2 = nn.Sequential(ups[1], *stage(5))
        self.m_up1 = nn.Sequential(ups[2], *stage(6))
        self.m_tail = nn.Sequential(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.multiple = MULTIPLE

    def forward(self, x: Tensor) -> Tensor:
        x, size = pad_to_multiple(x, MULTIPLE, mode="replicate")
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        y = self.m_up3(self.m_body(x4) + x4)
        y = self.m_up2(y + x3)
        y = self.m_up1(y + x2)
        return crop(self.m_tail(y + x1), size)


# The authors' released files (cszn/KAIR's v1.0 release): recognised by their keys.

STAGES = ("m_down1", "m_down2", "m_down3", "m_body", "m_up3", "m_up2", "m_up1")
LEVELS = (0, 1, 2, 3, 2, 1, 0)  # the U's level of each stage
RELATIVE = "trans_block.msa.relative_position_params"


def is_scunet(raw: dict) -> bool:
    """The authors' SCUNet state dict: ``m_head.0`` / ``m_tail.0`` convs and swin-conv blocks (KAIR's DRUNet and
    FBCNN have ``m_head`` / ``m_tail`` too, unwrapped and without transformer blocks)."""
    state = unwrap(raw)
    return "m_head.0.weight" in state and "m_tail.0.weight" in state and any(k.endswith(RELATIVE) for k in state)


def stage_blocks(state: dict, stage: str) -> int:
    """How many swin-conv blocks ``<stage>.<i>.conv1_1`` the file has (an up stage's start at index 1)."""
    first = 1 if stage.startswith("m_up") else 0
    count = 0
    while f"{stage}.{first + count}.conv1_1.weight" in state:
        count += 1
    return count


def net_args_of(state: dict) -> dict:
    """The :class:`SCUNet` arguments a state dict in the authors' layout implies. ``input_resolution`` is not in
    the file: 256, with which the authors' scripts build every released net."""
    head = state["m_head.0.weight"]
    if head.dim() != 4:
        raise M3LError(f"scunet: m_head.0.weight has shape {tuple(head.shape)}, not a convolution's")
    width = int(head.shape[0])
    owner = next(k for k in state if k.endswith(RELATIVE))
    relative = state[owner]
    stage = owner.split(".")[0]
    if relative.dim() != 3 or stage not in STAGES:
        raise M3LError(f"scunet: {owner} has shape {tuple(relative.shape)}; the authors' is (heads, 2 window - 1, "
                       f"2 window - 1) in a stage {', '.join(STAGES)}")
    half, heads = width * 2 ** LEVELS[STAGES.index(stage)] // 2, int(relative.shape[0])
    if heads < 1 or half % heads:
        raise M3LError(f"scunet: {heads} attention heads do not divide the {half} transformer channels of {stage}")
    return {"channels": int(head.shape[1]), "blocks": [stage_blocks(state, s) for s in STAGES], "width": width,
            "head_dim": half // heads, "window": (int(relative.shape[-1]) + 1) // 2, "input_resolution": 256}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape."""
    state = unwrap(raw)
    net_args = net_args_of(state)
    return check_same_keys(state, SCUNet, net_args, "scunet"), net_args


LAYOUTS = (Layout(name="scunet", detect=is_scunet, convert=convert_authors,
                  description="the SCUNet authors' files: scunet_color_25.pth, scunet_gray_15.pth, "
                              "scunet_color_real_psnr.pth"),)


# Weights entries (Zhang et al. 2023): plain state dicts in cszn/KAIR's v1.0 release (the SCUNet repository's
# main_download_pretrained_models.py and README name them). One Gaussian net per sigma and colour; the paper's
# Table 1 (gray: Set12, BSD68, Urban100) and Table 2 (color: CBSD68, Kodak24, McMaster, Urban100), checked against
# the tables as the authors' README shows them (cszn/SCUNet commit 52e440a: figs/gray_scunet.png and
# figs/color_scunet.png).
RELEASE = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SOURCE = "Zhang et al. 2023 (cszn/SCUNet, files in cszn/KAIR's v1.0 release; Apache-2.0)"
ARCH = {"blocks": [4, 4, 4, 4, 4, 4, 4], "width": 64, "head_dim": 32, "window": 8, "input_resolution": 256}
SIGMAS = (15, 25, 50)
GRAY_TABLE = {"set12": (33.43, 31.09, 28.04), "bsd68": (31.99, 29.55, 26.67), "urban100": (33.88, 31.58, 28.56)}
COLOR_TABLE = {"cbsd68": (34.40, 31.79, 28.61), "kodak24": (35.34, 32.92, 29.87), "mcmaster": (35.60, 33.34, 30.29),
               "urban100": (35.18, 33.03, 30.14)}


def protocol(color: bool, sigma: int) -> tuple:
    """``m3l.run.test`` overrides measuring one Gaussian net: at its sigma only, on the paper's sets (gray: Set12,
    BSD68, Urban100 read as gray; color: CBSD68, Kodak24, McMaster, Urban100 in RGB)."""
    sets = COLOR_TABLE if color else GRAY_TABLE
    return (f"data.channels={3 if color else 1}",
            "data.test_sets={" + ",".join(f"{s}:{{data_root}}/{s}" for s in sets) + "}",
            "data.test_degradations=null", f"degradation@data.degradation=sigma{sigma}")


def gaussian(kind: str, i: int) -> Weights:
    color, s = kind == "color", SIGMAS[i]
    return Weights(model="scunet", variant=f"{kind}_{s}", url=f"{RELEASE}scunet_{kind}_{s}.pth", sha256=None,
                   net={"channels": 3 if color else 1, **ARCH}, layout="scunet", protocol=protocol(color, s),
                   metrics={f"{name}/sigma{s}/psnr": values[i]
                            for name, values in (COLOR_TABLE if color else GRAY_TABLE).items()},
                   source=f"{SOURCE}; Gaussian noise of sigma {s}, non-blind (one net per sigma); numbers: the "
                          f"paper's Table {2 if color else 1} as the authors' README shows it")


def real(kind: str, how: str) -> Weights:
    return Weights(model="scunet", variant=f"color_real_{kind}", url=f"{RELEASE}scunet_color_real_{kind}.pth",
                   sha256=None, net={"channels": 3, **ARCH}, layout="scunet",
                   source=f"{SOURCE}; blind real-image denoising ({how}), trained on the paper's synthesized real "
                          f"noise; no PSNR table (the paper shows real photos): for correct on photos with camera "
                          f"noise (model=scunet net.pretrained=scunet_color_real_{kind})")


# The first is pretrained=True's: the real-noise PSNR net, for photos.
WEIGHTS = (real("psnr", "L1 loss"), real("gan", "L1, perceptual and GAN losses: sharper, less faithful"),
           *(gaussian("color", i) for i in range(3)), *(gaussian("gray", i) for i in range(3)))

FAMILY = register(Family(
    "scunet", SCUNet, tiny={"blocks": [2, 1, 1, 2, 1, 1, 1], "width": 4, "head_dim": 2},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""SCUNet (Zhang et al. 2023), denoising. ``pretrained=True``: ``color_real_psnr``, blind real-image
    denoising of RGB photos (camera noise, JPEG, ...); ``variant``: ``color_real_gan`` (sharper), and the Gaussian
    nets, one a sigma: ``color_15`` / ``color_25`` / ``color_50`` (CBSD68 34.40 / 31.79 / 28.61 dB), ``gray_15`` /
    ``gray_25`` / ``gray_50`` (Set12 33.43 / 31.09 / 28.04 dB)."""))
