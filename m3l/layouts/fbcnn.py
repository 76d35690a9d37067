"""The FBCNN authors' layout (jiaxi-jiang/FBCNN: ``fbcnn_color.pth``, ``fbcnn_gray.pth``, ``fbcnn_gray_double.pth``).

Keys as DRUNet's for the encoder (``m_head``, ``m_down<l>``; see m3l/layouts/drunet.py), then
``m_body_encoder`` and ``m_body_decoder`` (residual blocks), ``m_up<l>.0`` (transposed conv) and
``m_up<l>.<1..blocks>.res`` (quality-factor attention blocks), ``m_tail``; the quality-factor predictor
``qf_pred.<i>.res`` (residual blocks) then ``qf_pred.<blocks+2|+4|+6>`` (its 3 linear layers after
pooling and flattening), the embedding ``qf_embed.{0,2,4}`` and ``to_gamma_<l>.0`` / ``to_beta_<l>.0``.
All layers have biases.
"""

from __future__ import annotations

from m3l.layouts import Layout, register
from m3l.layouts.drunet import check_fits, encoder, layers, net_args_of, residual
from m3l.layouts.m3l import strip_prefix

TARGET = "m3l.models.fbcnn.FBCNN"


def is_fbcnn(raw: dict) -> bool:
    return "m_head.weight" in raw and "qf_embed.0.weight" in raw and ("m_body_encoder.0.res.0.weight" in raw
                                                                      or "m_body_encoder.res.0.weight" in raw)


def convert(raw: dict) -> tuple[dict, dict]:
    from m3l.models.fbcnn import FBCNN

    state = strip_prefix(raw)
    net_args = {"channels": int(state["m_head.weight"].shape[1]), **net_args_of(state, "fbcnn", "m_body_encoder"),
                "embedding": int(state["qf_embed.0.weight"].shape[0])}
    blocks, params = net_args["blocks"], ("weight", "bias")
    names = encoder(blocks, params)
    names |= residual("m_body_encoder", 0, "body_encoder", blocks, params, alone=True)
    names |= residual("m_body_decoder", 0, "body_decoder", blocks, params, alone=True)
    for level in (3, 2, 1):  # m3l's lists run from the bottom: index 0 is the authors' level 3
        names |= layers(f"m_up{level}.0", f"ups.{3 - level}", params)
        names |= residual(f"m_up{level}", 1, f"attention.{3 - level}", blocks, params)
        names |= layers(f"to_gamma_{level}.0", f"to_gamma.{3 - level}.0", params)
        names |= layers(f"to_beta_{level}.0", f"to_beta.{3 - level}.0", params)
    names |= layers("m_tail", "tail", params)
    names |= residual("qf_pred", 0, "predictor.0", blocks, params)
    for authors, m3l in ((2, 3), (4, 5), (6, 7)):  # the Linear layers after pooling and flattening
        names |= layers(f"qf_pred.{blocks + authors}", f"predictor.{m3l}", params)
    for i in (0, 2, 4):
        names |= layers(f"qf_embed.{i}", f"embed.{i}", params)
    return check_fits(state, names, FBCNN, net_args, "fbcnn"), net_args


register(Layout(name="fbcnn", target=TARGET, description="the FBCNN authors': fbcnn_color.pth, fbcnn_gray.pth, "
                "fbcnn_gray_double.pth", detect=is_fbcnn, convert=convert))
