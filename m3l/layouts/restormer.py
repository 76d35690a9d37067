"""The Restormer authors' layout (swz30/Restormer, v1.0 release: ``motion_deblurring.pth``,
``single_image_defocus_deblurring.pth``, ``deraining.pth``, ``real_denoising.pth``,
``gaussian_gray_denoising_blind.pth`` / ``_sigma15|25|50.pth``, ``gaussian_color_denoising_*.pth``).

BasicSR files: ``{"params": state_dict}`` (m3l/layouts/unwrap.py). The authors' ``Restormer`` keys (their
``basicsr/models/archs/restormer_arch.py``): ``patch_embed.proj``; ``encoder_level1..3`` and ``latent``
(transformer blocks); ``down1_2``, ``down2_3``, ``down3_4`` (``.body.0``, the conv before the pixel unshuffle);
``up4_3``, ``up3_2``, ``up2_1`` (``.body.0``); ``reduce_chan_level3``, ``reduce_chan_level2``;
``decoder_level3..1``; ``refinement``; ``output``. A block: ``norm1.body``, ``attn.{temperature, qkv,
qkv_dwconv, project_out}``, ``norm2.body``, ``ffn.{project_in, dwconv, project_out}``. Layer norms with a
``bias`` are ``LayerNorm_type: WithBias`` (deblurring, deraining), without one ``BiasFree`` (the denoising
models): ``layer_norm`` of :class:`m3l.models.restormer.Restormer`. The released files have no conv biases.
The dual-pixel defocus model (6 input channels, ``skip_conv``, no global residual) is not supported.
"""

from __future__ import annotations

import re

from m3l.errors import M3LError
from m3l.layouts import Layout, register
from m3l.layouts.drunet import check_fits
from m3l.layouts.unwrap import unwrap

TARGET = "m3l.models.restormer.Restormer"
EXPANSION = 2.66  # ffn_expansion_factor of every option file of the authors
# A transformer block's parameters: the authors' name, m3l's.
BLOCK = {"norm1.body.weight": "norm1.weight", "norm1.body.bias": "norm1.bias",
         "attn.temperature": "attention.temperature", "attn.qkv.weight": "attention.qkv.0.weight",
         "attn.qkv_dwconv.weight": "attention.qkv.1.weight", "attn.project_out.weight": "attention.out.weight",
         "norm2.body.weight": "norm2.weight", "norm2.body.bias": "norm2.bias",
         "ffn.project_in.weight": "ffn.inp.0.weight", "ffn.dwconv.weight": "ffn.inp.1.weight",
         "ffn.project_out.weight": "ffn.out.weight"}
ENCODERS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
DECODERS = ("decoder_level3", "decoder_level2", "decoder_level1")  # m3l's decoders run from the bottom


def is_restormer(raw: dict) -> bool:
    state = unwrap(raw)
    return "patch_embed.proj.weight" in state and "output.weight" in state


def count(state: dict, stage: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(stage)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def blocks(state: dict, authors: str, m3l: str, layer_norm: str) -> dict[str, str]:
    names = {}
    for j in range(count(state, authors)):
        names |= {f"{authors}.{j}.{a}": f"{m3l}.{j}.{b}" for a, b in BLOCK.items()
                  if layer_norm == "with_bias" or not a.endswith(".bias")}
    return names


def net_args_of(state: dict) -> dict:
    embed, output = state["patch_embed.proj.weight"], state["output.weight"]
    if "skip_conv.weight" in state or embed.shape[1] != output.shape[0]:
        raise M3LError(f"restormer: the file is a dual-pixel model ({embed.shape[1]} input planes, "
                       f"{output.shape[0]} output, skip_conv): m3l's Restormer restores single images; use "
                       f"single_image_defocus_deblurring.pth")
    if any(k.endswith(("qkv.bias", "project_in.bias", "reduce_chan_level2.bias")) for k in state):
        raise M3LError("restormer: the file has conv biases (bias: True in the authors' options); m3l's "
                       "Restormer has the released files' bias-free convolutions")
    width = int(embed.shape[0])
    try:
        heads = [int(state[f"{stage}.0.attn.temperature"].shape[0]) for stage in ENCODERS]
        hidden = int(state["encoder_level1.0.ffn.project_out.weight"].shape[1])
    except KeyError as error:
        raise M3LError(f"restormer: the file lacks key {error.args[0]} (every level has at least one block in "
                       f"the authors' Restormer); is the file complete?") from None
    expansion = EXPANSION if int(width * EXPANSION) == hidden else round(hidden / width, 4)
    return {"channels": int(embed.shape[1]), "width": width, "num_blocks": [count(state, s) for s in ENCODERS],
            "heads": heads, "refinement_blocks": count(state, "refinement"), "expansion": expansion,
            "layer_norm": "with_bias" if "encoder_level1.0.norm1.body.bias" in state else "bias_free"}


def convert(raw: dict) -> tuple[dict, dict]:
    from m3l.models.restormer import Restormer

    state = unwrap(raw)
    net_args = net_args_of(state)
    norm = net_args["layer_norm"]
    names = {"patch_embed.proj.weight": "embed.weight", "output.weight": "output.weight"}
    for i, stage in enumerate(ENCODERS):
        names |= blocks(state, stage, f"encoders.{i}", norm)
    for i, stage in enumerate(DECODERS):
        names |= blocks(state, stage, f"decoders.{i}", norm)
    names |= blocks(state, "refinement", "refinement", norm)
    for i, (down, up) in enumerate(zip(("down1_2", "down2_3", "down3_4"), ("up4_3", "up3_2", "up2_1"))):
        names |= {f"{down}.body.0.weight": f"downs.{i}.0.weight", f"{up}.body.0.weight": f"ups.{i}.0.weight"}
    names |= {"reduce_chan_level3.weight": "reduces.0.weight", "reduce_chan_level2.weight": "reduces.1.weight"}
    return check_fits(state, names, Restormer, net_args, "restormer"), net_args


register(Layout(name="restormer", target=TARGET,
                description="the Restormer authors' files: motion_deblurring.pth, real_denoising.pth, "
                            "gaussian_gray_denoising_blind.pth",
                detect=is_restormer, convert=convert))
