"""MPRNet (Zamir, Arora, Khan, Hayat, Khan, Yang, Shao: "Multi-Stage Progressive Image Restoration", CVPR 2021;
arXiv 2102.02808): deblurring, deraining and real-noise denoising.

Three stages restore the image progressively, each with its own shallow features (a 3x3 convolution and a
channel-attention block, CAB: conv, PReLU, conv, squeeze-excitation by a global mean, plus the input):

1. the image is cut into four quarters; each goes through a 3-level U-Net encoder (two CABs a level, widths
   ``width``, ``width + unet_step``, ``width + 2 unet_step``; bilinear 0.5x resampling and a 1x1 convolution
   down, bilinear 2x and a 1x1 convolution up, skips through a CAB and added); the left and right quarters'
   features are joined side by side and decoded as two halves (top, bottom);
2. the halves go through a second encoder-decoder whose encoder adds, level by level, 1x1 convolutions of
   stage 1's encoder and decoder features (cross-stage feature fusion); the halves' features are joined;
3. the whole image goes through an original-resolution subnetwork: three blocks of ``orsnet_blocks`` CABs and a
   3x3 convolution (residual), at ``width + orsnet_extra`` channels, each followed by the sum of 1x1
   convolutions of stage 2's encoder and decoder features of one level (upsampled to full size).

Between stages a supervised attention module (SAM) makes the stage's image (a 1x1 convolution of its
features plus the stage's input image) and gates the features passed on by a sigmoid of that image's features;
the next stage's shallow features are concatenated with them (a 3x3 convolution). The outputs are the three
stages' images; the restoration is the last stage's (a 3x3 convolution plus the input image). Every CAB shares
ONE PReLU (one learned slope for the whole net), as the authors' code builds it: their state dict repeats that
parameter under each CAB's ``body.1.weight`` and so does m3l's.

``forward`` returns the last stage's image. In training it also keeps the two earlier stages' images in
``stage_outputs`` (stage 2's, then stage 1's): :class:`m3l.engine.restoration.RestorationModule` adds the
training loss of each to the last stage's, which is the authors' loss (the sum over the stages of
Charbonnier + 0.05 edge loss: :class:`m3l.engine.losses.CharbonnierEdgeLoss`; Charbonnier alone for denoising).

The released nets differ in width only (the authors' ``n_feat``, ``scale_unetfeats``, ``scale_orsnetfeats``):
deblurring 96 / 48 / 32 (20,127,073 parameters; the paper's 20.1M), denoising 80 / 48 / 32 (15,741,025),
deraining 40 / 20 / 16 (3,637,249); 8 CABs a block, 3x3 kernels, attention reduction 4, no conv biases.

The image is padded at the bottom and right to a multiple of 8 by reflection and the result cropped back (the
quarters must split evenly and survive two halvings), as the authors' ``demo.py`` does (their test scripts run
GoPro, HIDE, the rain sets and SIDD blocks unpadded: those sizes are multiples of 8 already, or the script pads
the same way). Images need at least 5 pixels a side (reflection needs more pixels than it pads).

State-dict keys are the authors' (``shallow_feat1.0``, ``stage1_encoder.encoder_level1.0.body.0``,
``stage2_encoder.csff_enc1``, ``stage3_orsnet.orb1.body.8``, ``sam12.conv2``, ``concat23``, ``tail``, ...), so
their released files (``model_deblurring.pth``, ``model_deraining.pth``, ``model_denoising.pth``, saved as
``{'epoch', 'state_dict', 'optimizer'}``, keys possibly under ``nn.DataParallel``'s ``module.``) load
unchanged; :func:`is_mprnet` / :func:`convert_authors` recognise them and give the architecture
(``net.pretrained=FILE``), and :data:`WEIGHTS` lists them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m3l.errors import M3LError
from m3l.models._layouts import Layout, check_same_keys, unwrap
from m3l.models._registry import GOPRO_TEST, SIDD_TEST, Family, Weights, register, rows
from m3l.models.common import crop, pad_to_multiple

MULTIPLE = 8  # the quarters of stage 1 split evenly and are halved twice


def conv(c_in: int, c_out: int, kernel: int, bias: bool = False) -> nn.Conv2d:
    """A ``kernel x kernel`` convolution keeping the size (padding ``kernel // 2``)."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)


class ChannelAttention(nn.Module):
    """Squeeze-excitation: the channels scaled by ``sigmoid(conv(relu(conv(mean over the image))))``, the first
    1x1 convolution reducing the channels ``reduction`` times (the authors' ``CALayer``; ``conv_du`` theirs)."""

    def __init__(self, width: int, reduction: int, bias: bool):
        super().__init__()
        if width // reduction < 1:
            raise ValueError(f"MPRNet: {width} channels reduced {reduction} times leave none; use a smaller "
                             f"reduction or a larger width")
        self.conv_du = nn.Sequential(nn.Conv2d(width, width // reduction, 1, bias=bias), nn.ReLU(inplace=True),
                                     nn.Conv2d(width // reduction, width, 1, bias=bias), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class CAB(nn.Module):
    """Channel-attention block: ``x + CA(conv(act(conv(x))))``; ``act`` is the net's one shared PReLU."""

    def __init__(self, width: int, kernel: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.CA = ChannelAttention(width, reduction, bias)  # first: the authors' key order
        self.body = nn.Sequential(conv(width, width, kernel, bias), act, conv(width, width, kernel, bias))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.CA(self.body(x))


def cabs(n: int, width: int, kernel: int, reduction: int, bias: bool, act: nn.Module) -> list[nn.Module]:
    return [CAB(width, kernel, reduction, bias, act) for _ in range(n)]


class Bilinear(nn.Module):
    """Bilinear resampling to ``scale`` (0.5 or 2) times the size, half-pixel centres (``nn.Upsample``'s), the
    size given (not the factor): ``torch.export`` keeps height and width symbolic."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        size = (h // 2, w // 2) if self.scale < 1 else (h * 2, w * 2)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Resample(nn.Module):
    """Bilinear resampling by ``scale`` (0.5 or 2; half-pixel centres) then a 1x1 convolution ``c_in -> c_out``,
    as ``<name>``: an ``nn.Sequential``, the conv at index 1 (the authors' ``DownSample.down`` /
    ``UpSample.up``). ``forward(x, skip)`` adds ``skip`` (their ``SkipUpSample``)."""

    def __init__(self, c_in: int, c_out: int, scale: float, name: str):
        super().__init__()
        self.name = name
        self.add_module(name, nn.Sequential(Bilinear(scale), nn.Conv2d(c_in, c_out, 1, bias=False)))

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = self._modules[self.name](x)
        return x if skip is None else x + skip


class Encoder(nn.Module):
    """Three levels of two CABs (widths ``w``, ``w + s``, ``w + 2 s``), halved between levels; with ``fusion``
    (stage 2), each level adds 1x1 convolutions of the previous stage's encoder and decoder features."""

    def __init__(self, w: int, s: int, kernel: int, reduction: int, bias: bool, act: nn.Module, fusion: bool):
        super().__init__()
        widths = (w, w + s, w + 2 * s)
        for i, c in enumerate(widths, 1):
            setattr(self, f"encoder_level{i}", nn.Sequential(*cabs(2, c, kernel, reduction, bias, act)))
        self.down12 = Resample(widths[0], widths[1], 0.5, "down")
        self.down23 = Resample(widths[1], widths[2], 0.5, "down")
        self.fusion = fusion
        if fusion:
            for kind in ("enc", "dec"):
                for i, c in enumerate(widths, 1):
                    setattr(self, f"csff_{kind}{i}", nn.Conv2d(c, c, 1, bias=bias))

    def forward(self, x: Tensor, encoded: list[Tensor] | None = None, decoded: list[Tensor] | None = None
                ) -> list[Tensor]:
        out = []
        for i in range(3):
            if i:
                x = (self.down12, self.down23)[i - 1](x)
            x = getattr(self, f"encoder_level{i + 1}")(x)
            if self.fusion:
                x = x + getattr(self, f"csff_enc{i + 1}")(encoded[i]) + getattr(self, f"csff_dec{i + 1}")(decoded[i])
            out.append(x)
        return out


class Decoder(nn.Module):
    """From the deepest level up: two CABs a level, 2x upsampling plus the encoder's feature through a CAB."""

    def __init__(self, w: int, s: int, kernel: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        widths = (w, w + s, w + 2 * s)
        for i, c in enumerate(widths, 1):
            setattr(self, f"decoder_level{i}", nn.Sequential(*cabs(2, c, kernel, reduction, bias, act)))
        self.skip_attn1 = CAB(widths[0], kernel, reduction, bias, act)
        self.skip_attn2 = CAB(widths[1], kernel, reduction, bias, act)
        self.up21 = Resample(widths[1], widths[0], 2, "up")
        self.up32 = Resample(widths[2], widths[1], 2, "up")

    def forward(self, encoded: list[Tensor]) -> list[Tensor]:
        dec3 = self.decoder_level3(encoded[2])
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(encoded[1])))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(encoded[0])))
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: ``x + conv(CAB(...CAB(x)))``."""

    def __init__(self, width: int, kernel: int, reduction: int, bias: bool, act: nn.Module, blocks: int):
        super().__init__()
        self.body = nn.Sequential(*cabs(blocks, width, kernel, reduction, bias, act), conv(width, width, kernel))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by stage 2's features of one level (upsampled to full
    size by 2x steps, then 1x1 convolutions to ``w + extra`` channels)."""

    def __init__(self, w: int, extra: int, s: int, kernel: int, reduction: int, bias: bool, act: nn.Module,
                 blocks: int):
        super().__init__()
        for i in (1, 2, 3):
            setattr(self, f"orb{i}", ORB(w + extra, kernel, reduction, bias, act, blocks))
        self.up_enc1 = Resample(w + s, w, 2, "up")
        self.up_dec1 = Resample(w + s, w, 2, "up")
        self.up_enc2 = nn.Sequential(Resample(w + 2 * s, w + s, 2, "up"), Resample(w + s, w, 2, "up"))
        self.up_dec2 = nn.Sequential(Resample(w + 2 * s, w + s, 2, "up"), Resample(w + s, w, 2, "up"))
        for kind in ("enc", "dec"):
            for i in (1, 2, 3):
                setattr(self, f"conv_{kind}{i}", nn.Conv2d(w, w + extra, 1, bias=bias))

    def forward(self, x: Tensor, encoded: list[Tensor], decoded: list[Tensor]) -> Tensor:
        same = lambda t: t  # noqa: E731 (level 1 is at full size)
        ups_enc, ups_dec = (same, self.up_enc1, self.up_enc2), (same, self.up_dec1, self.up_dec2)
        for i in range(3):
            x = getattr(self, f"orb{i + 1}")(x)
            x = (x + getattr(self, f"conv_enc{i + 1}")(ups_enc[i](encoded[i]))
                 + getattr(self, f"conv_dec{i + 1}")(ups_dec[i](decoded[i])))
        return x


class SAM(nn.Module):
    """Supervised attention: the stage's image ``conv2(x) + image``, and ``x + conv1(x) * sigmoid(conv3(that
    image))`` passed on (1x1 convolutions)."""

    def __init__(self, width: int, channels: int, bias: bool):
        super().__init__()
        self.conv1 = conv(width, width, 1, bias)
        self.conv2 = conv(width, channels, 1, bias)
        self.conv3 = conv(channels, width, 1, bias)

    def forward(self, x: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        restored = self.conv2(x) + image
        return x + self.conv1(x) * torch.sigmoid(self.conv3(restored)), restored


def halves(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """The first and second halves of ``x`` along ``dim`` (an even size)."""
    n = x.shape[dim] // 2
    return x.narrow(dim, 0, n), x.narrow(dim, n, n)


def joined(a: list[Tensor], b: list[Tensor], dim: int) -> list[Tensor]:
    """Level by level, ``a``'s and ``b``'s features side by side (``dim`` 3) or one over the other (2)."""
    return [torch.cat(pair, dim=dim) for pair in zip(a, b)]


class MPRNet(nn.Module):
    """MPRNet; arguments (the authors' names in brackets):

    channels (``in_c`` = ``out_c``): image channels (3 in every released net; 1 works too).
    width (``n_feat``): channels of the shallow features and the U-Nets' top level (96 deblurring, 80 denoising,
        40 deraining).
    unet_step (``scale_unetfeats``): channels added at each deeper U-Net level (48, 48, 20).
    orsnet_extra (``scale_orsnetfeats``): channels stage 3 adds to ``width`` (32, 32, 16).
    orsnet_blocks (``num_cab``): CABs of each of stage 3's three blocks (8).
    kernel_size: the CABs' and stage convolutions' kernel (3).
    reduction: channel attention's reduction (4).
    bias: biases in the convolutions (False in every released net; the down / up 1x1 convolutions never have one).
    """

    def __init__(self, channels: int = 3, width: int = 96, unet_step: int = 48, orsnet_extra: int = 32,
                 orsnet_blocks: int = 8, kernel_size: int = 3, reduction: int = 4, bias: bool = False):
        super().__init__()
        w, s, k, r = width, unet_step, kernel_size, reduction
        act = nn.PReLU()  # one slope shared by every CAB (the authors'); not an attribute: no key of its own
        for i in (1, 2, 3):
            setattr(self, f"shallow_feat{i}", nn.Sequential(conv(channels, w, k, bias), CAB(w, k, r, bias, act)))
        self.stage1_encoder = Encoder(w, s, k, r, bias, act, fusion=False)
        self.stage1_decoder = Decoder(w, s, k, r, bias, act)
        self.stage2_encoder = Encoder(w, s, k, r, bias, act, fusion=True)
        self.stage2_decoder = Decoder(w, s, k, r, bias, act)
        self.stage3_orsnet = ORSNet(w, orsnet_extra, s, k, r, bias, act, orsnet_blocks)
        self.sam12 = SAM(w, channels, bias)
        self.sam23 = SAM(w, channels, bias)
        self.concat12 = conv(2 * w, w, k, bias)
        self.concat23 = conv(2 * w, w + orsnet_extra, k, bias)
        self.tail = conv(w + orsnet_extra, channels, k, bias)
        self.multiple = MULTIPLE
        self.stage_outputs: tuple[Tensor, Tensor] | None = None  # stage 2's and stage 1's images (training)

    def stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three stages' images (last first, as the authors' ``forward`` returns them) of ``x``, whose height
        and width are multiples of 8."""
        # Stage 1: the four quarters encoded one by one; the left and right quarters' features joined side by
        # side, decoded as the top and bottom halves (each run alone, as the authors': the channel attention's
        # means are a patch's own).
        halves2 = halves(x, 2)
        quarters = [self.stage1_encoder(self.shallow_feat1(q)) for half in halves2 for q in halves(half, 3)]
        encoded1 = [joined(quarters[0], quarters[1], 3), joined(quarters[2], quarters[3], 3)]
        decoded1 = [self.stage1_decoder(e) for e in encoded1]
        sam1 = [self.sam12(d[0], half) for d, half in zip(decoded1, halves2)]
        # Stage 2: each half, with stage 1's features; the halves' features joined top over bottom.
        encoded2 = [self.stage2_encoder(self.concat12(torch.cat([self.shallow_feat2(half), features], 1)), e, d)
                    for half, (features, _), e, d in zip(halves2, sam1, encoded1, decoded1)]
        encoded2 = joined(encoded2[0], encoded2[1], 2)
        decoded2 = self.stage2_decoder(encoded2)
        features, image2 = self.sam23(decoded2[0], x)
        # Stage 3: the whole image at full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x), features], 1))
        image1 = torch.cat([sam1[0][1], sam1[1][1]], dim=2)
        return self.tail(self.stage3_orsnet(x3, encoded2, decoded2)) + x, image2, image1

    def forward(self, x: Tensor) -> Tensor:
        x, size = pad_to_multiple(x, MULTIPLE, mode="reflect")
        last, *earlier = (crop(image, size) for image in self.stages(x))
        if self.training:
            self.stage_outputs = tuple(earlier)
        return last


# The authors' released files (Google Drive; {'epoch', 'state_dict', 'optimizer'}, as their train.py saves them):
# recognised by their keys.

def is_mprnet(raw: dict) -> bool:
    """The authors' MPRNet state dict: three shallow-feature heads, a stage-3 ORSNet and SAMs."""
    state = unwrap(raw)
    return all(k in state for k in ("shallow_feat1.0.weight", "shallow_feat3.0.weight", "sam23.conv2.weight",
                                    "stage3_orsnet.conv_enc1.weight"))


def net_args_of(state: dict) -> dict:
    """The :class:`MPRNet` arguments a state dict in the authors' layout implies (widths from the convolutions'
    shapes, the stage-3 blocks' CABs counted, a bias from ``shallow_feat1.0.bias``)."""
    head, tail, level2 = (state[k] for k in ("shallow_feat1.0.weight", "tail.weight",
                                             "stage1_encoder.encoder_level2.0.body.0.weight"))
    squeeze = state.get("shallow_feat1.1.CA.conv_du.0.weight")
    if head.dim() != 4 or tail.dim() != 4 or level2.dim() != 4 or squeeze is None or squeeze.dim() != 4:
        raise M3LError("mprnet: shallow_feat1.0.weight, tail.weight, stage1_encoder.encoder_level2.0.body.0.weight "
                       "and shallow_feat1.1.CA.conv_du.0.weight must be convolutions' weights (the authors' MPRNet)")
    width, channels = int(head.shape[0]), int(head.shape[1])
    blocks = 0
    while f"stage3_orsnet.orb1.body.{blocks}.body.0.weight" in state:
        blocks += 1
    if int(squeeze.shape[0]) < 1 or width % int(squeeze.shape[0]):
        raise M3LError(f"mprnet: shallow_feat1.1.CA.conv_du.0.weight has shape {tuple(squeeze.shape)}: its "
                       f"{int(squeeze.shape[0])} channels do not divide the width {width}")
    return {"channels": channels, "width": width, "unet_step": int(level2.shape[0]) - width,
            "orsnet_extra": int(tail.shape[1]) - width, "orsnet_blocks": blocks, "kernel_size": int(head.shape[-1]),
            "reduction": width // int(squeeze.shape[0]), "bias": "shallow_feat1.0.bias" in state}


def convert_authors(raw: dict) -> tuple[dict, dict]:
    """The file's tensors under their own names (m3l's net has the authors' keys), checked against the net they
    imply: one line naming the first key missing, extra or of another shape. The shared PReLU's slope is under
    every CAB's ``body.1.weight`` in the file as in the net."""
    state = unwrap(raw)
    net_args = net_args_of(state)
    return check_same_keys(state, MPRNet, net_args, "mprnet"), net_args


LAYOUTS = (Layout(name="mprnet", detect=is_mprnet, convert=convert_authors,
                  description="the MPRNet authors' files: model_deblurring.pth, model_deraining.pth, "
                              "model_denoising.pth"),)


# Weights entries (Zamir et al. 2021): the Google Drive files the repository's README links (swz30/MPRNet@43feb2a
# README.md "Quick Run" and the Deblurring / Deraining / Denoising READMEs). Published numbers: the paper's tables
# (PSNR dB / SSIM), each with the m3l.run.test overrides that measure it (the registry's GoPro and SIDD pairs,
# data=deraining: Y-channel PSNR / SSIM as their evaluate_PSNR_SSIM.m).
GDRIVE = "https://drive.google.com/uc?export=download&id="
SOURCE = "Zamir et al. 2021 (swz30/MPRNet, Google Drive; see the repository's licence)"
DEBLURRING = {"channels": 3, "width": 96, "unet_step": 48, "orsnet_extra": 32, "orsnet_blocks": 8}
DENOISING = {**DEBLURRING, "width": 80}
DERAINING = {**DEBLURRING, "width": 40, "unet_step": 20, "orsnet_extra": 16}
RAIN_TABLE = {"test100": (30.27, 0.897), "rain100h": (30.41, 0.890), "rain100l": (36.40, 0.965),
              "test2800": (33.64, 0.938), "test1200": (32.91, 0.916)}  # the paper's average: 32.73 / 0.921

WEIGHTS = (
    Weights(model="mprnet", variant="deblurring", url=GDRIVE + "1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb",
            file="model_deblurring.pth", sha256=None, net=DEBLURRING, layout="mprnet", protocol=GOPRO_TEST,
            metrics={"gopro/gopro_blur/psnr": 32.66, "gopro/gopro_blur/ssim": 0.959},
            source=f"{SOURCE}; motion deblurring trained on GoPro, the paper's Table 2: GoPro 32.66 dB / 0.959, "
                   f"HIDE 30.96 / 0.939 (not trained on; the standard set hide: data.input=/input/ "
                   f"data.target=/target/); RealBlur-R 35.99 / 0.952, RealBlur-J 28.70 / 0.873 (as read from the "
                   f"paper, not re-checked). The authors measure PSNR / SSIM in MATLAB (evaluate_GOPRO_HIDE.m)"),
    Weights(model="mprnet", variant="deraining", url=GDRIVE + "1O3WEJbcat7eTY6doXWeorAbQ1l_WmMnM",
            file="model_deraining.pth", sha256=None, net=DERAINING, layout="mprnet",
            metrics=rows({name: {"rain": values} for name, values in RAIN_TABLE.items()}, ("psnr", "ssim")),
            protocol=("data=deraining",
                      "data.test_sets={" + ",".join(f"{s}:{{data_root}}/{s}" for s in RAIN_TABLE) + "}"),
            source=f"{SOURCE}; deraining trained on Rain13K (13,712 pairs), one net for the five sets, the paper's "
                   f"Table 1 (Y-channel PSNR / SSIM, evaluate_PSNR_SSIM.m; average 32.73 / 0.921); the per-set "
                   f"values as read from the paper (Restormer's Table 1 repeats them), not re-checked against a "
                   f"stored copy here"),
    Weights(model="mprnet", variant="denoising", url=GDRIVE + "1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw",
            file="model_denoising.pth", sha256=None, net=DENOISING, layout="mprnet", protocol=SIDD_TEST,
            metrics={"sidd/real/psnr": 39.71, "sidd/real/ssim": 0.958},
            source=f"{SOURCE}; real-noise denoising (sRGB) trained on SIDD Medium, the paper's Table 4: SIDD "
                   f"39.71 dB / 0.958 on the 1280 validation blocks (the authors score test_SIDD.py's output with "
                   f"evaluate_SIDD.m); DND 39.80 / 0.954 (DND's server only, not measurable here)"),
)

FAMILY = register(Family(
    "mprnet", MPRNet, tiny={"width": 4, "unet_step": 4, "orsnet_extra": 4, "orsnet_blocks": 1},
    layouts=LAYOUTS, weights=WEIGHTS,
    doc="""MPRNet (Zamir et al. 2021), multi-stage deblurring, deraining and real-noise denoising, RGB.
    ``pretrained=True``: deblurring (GoPro 32.66 dB); ``variant``:
    ``deraining`` (Rain100L 36.40 dB, Y channel), ``denoising`` (real camera noise, SIDD 39.71 dB)."""))
