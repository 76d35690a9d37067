"""The FastDVDnet authors' layout (m-tassano/fastdvdnet: ``model.pth``, ``model_clipped_noise.pth``).

Saved from ``nn.DataParallel`` (``module.`` before every key; m3l/layouts/unwrap.py removes it). The
authors' ``FastDVDnet`` (their ``models.py``) has two ``DenBlock`` s, ``temp1`` (the first stage, shared by
the three windows) and ``temp2``; m3l's :class:`m3l.models.video.FastDVDnet` calls them ``stage1`` /
``stage2``. In a block, every ``Conv2d => BatchNorm2d => ReLU`` sits in a ``convblock`` Sequential,
nested in ``CvBlock`` s; m3l's :class:`~m3l.models.video.DenoisingBlock` flattens them:

- ``inc.convblock.{0,1,3,4}``: ``inc.{0,1,3,4}``
- ``downc0.convblock.{0,1}``: ``down0.{0,1}``; ``downc0.convblock.3.convblock.{0,1,3,4}``: ``down0.{3,4,6,7}``
- ``upc2.convblock.0.convblock.{0,1,3,4}``: ``up1.{0,1,3,4}``; ``upc2.convblock.1``: ``up1.6``
- ``outc.convblock.{0,1,3}``: ``out.{0,1,3}``

(``downc1`` is ``down1``, ``upc1`` is ``up0``). Convolutions have no bias; batch norms have their
running statistics. The file fixes the widths (32, 64, 128), the input conv's channels per frame (30)
and the image channels (3).
"""

from __future__ import annotations

from m3l.layouts import Layout, register
from m3l.layouts.drunet import check_fits
from m3l.layouts.unwrap import unwrap

TARGET = "m3l.models.video.FastDVDnet"
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


def convert(raw: dict) -> tuple[dict, dict]:
    from m3l.models.video import FastDVDnet

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


register(Layout(name="fastdvdnet", target=TARGET,
                description="the FastDVDnet authors' model.pth (nn.DataParallel, module.temp1.*)",
                detect=is_fastdvdnet, convert=convert))
