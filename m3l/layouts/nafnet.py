"""The NAFNet authors' layout (megvii-research/NAFNet: ``NAFNet-GoPro-width32.pth``, ``-width64``,
``NAFNet-SIDD-width32.pth``, ``-width64``, ``NAFNet-REDS-width64.pth``).

BasicSR files: ``{"params": state_dict}`` (see m3l/layouts/unwrap.py for ``params_ema``). The authors'
``NAFNet`` keys: ``intro``; ``encoders.<i>.<j>`` (NAFBlocks) and ``downs.<i>`` per level; ``middle_blks.<j>``;
``ups.<i>.0`` (the 1x1 conv before the pixel shuffle) and ``decoders.<i>.<j>``; ``ending``. A NAFBlock:
``norm1``, ``conv1``, ``conv2`` (depthwise), ``sca.1`` (the simplified channel attention's conv after
the global pooling), ``conv3``, ``norm2``, ``conv4``, ``conv5`` (the feed-forward branch), ``beta``, ``gamma``.
They are :class:`m3l.models.nafnet.NAFNet`'s, but ``middle_blks`` is ``middle``, ``sca.1`` is ``attention``,
``conv4`` / ``conv5`` are ``ffn_in`` / ``ffn_out``.

The file fixes width, channels and the block counts. The authors test their GoPro (and REDS) files with
``NAFNetLocal`` (TLC, ``train_size`` 256: ``net.tlc_size=384``), the SIDD ones with plain ``NAFNet``: TLC
is a test-time setting, not in the file, so it is left to the net config.
"""

from __future__ import annotations

import re

from m3l.errors import M3LError
from m3l.layouts import Layout, register
from m3l.layouts.drunet import check_fits
from m3l.layouts.unwrap import unwrap

TARGET = "m3l.models.nafnet.NAFNet"
# A NAFBlock's parameters: the authors' name, m3l's.
BLOCK = {"norm1": "norm1", "conv1": "conv1", "conv2": "conv2", "sca.1": "attention", "conv3": "conv3",
         "norm2": "norm2", "conv4": "ffn_in", "conv5": "ffn_out"}


def is_nafnet(raw: dict) -> bool:
    state = unwrap(raw)
    return "intro.weight" in state and "ending.weight" in state and any(".sca.1.weight" in k for k in state)


def count(state: dict, stage: str) -> int:
    """How many blocks ``<stage>.<j>.*`` the file has."""
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(stage)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def block_names(authors: str, m3l: str) -> dict[str, str]:
    names = {f"{authors}.{a}.{p}": f"{m3l}.{b}.{p}" for a, b in BLOCK.items() for p in ("weight", "bias")}
    return names | {f"{authors}.{p}": f"{m3l}.{p}" for p in ("beta", "gamma")}


def convert(raw: dict) -> tuple[dict, dict]:
    from m3l.models.nafnet import NAFNet

    state = unwrap(raw)
    levels = count(state, "downs")
    if levels != count(state, "ups"):
        raise M3LError(f"basicsr_nafnet: the file has {levels} downsamplings (downs.<i>) but {count(state, 'ups')} "
                       f"upsamplings (ups.<i>); is it complete?")
    net_args = {"channels": int(state["intro.weight"].shape[1]), "width": int(state["intro.weight"].shape[0]),
                "encoder_blocks": [count(state, f"encoders.{i}") for i in range(levels)],
                "middle_blocks": count(state, "middle_blks"),
                "decoder_blocks": [count(state, f"decoders.{i}") for i in range(levels)]}
    names = {f"{layer}.{p}": f"{layer}.{p}" for layer in ("intro", "ending") for p in ("weight", "bias")}
    for i in range(levels):
        names |= {f"downs.{i}.{p}": f"downs.{i}.{p}" for p in ("weight", "bias")} | {f"ups.{i}.0.weight": f"ups.{i}.0.weight"}
        for j in range(net_args["encoder_blocks"][i]):
            names |= block_names(f"encoders.{i}.{j}", f"encoders.{i}.{j}")
        for j in range(net_args["decoder_blocks"][i]):
            names |= block_names(f"decoders.{i}.{j}", f"decoders.{i}.{j}")
    for j in range(net_args["middle_blocks"]):
        names |= block_names(f"middle_blks.{j}", f"middle.{j}")
    return check_fits(state, names, NAFNet, net_args, "basicsr_nafnet"), net_args


register(Layout(name="basicsr_nafnet", target=TARGET,
                description="the NAFNet authors' BasicSR files: NAFNet-GoPro-width32.pth, NAFNet-SIDD-width64.pth",
                detect=is_nafnet, convert=convert))
