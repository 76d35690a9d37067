"""Geometric self-ensemble at test time (``ensemble=x8``): restore the 8 flips / rotations of an image, undo
each on its output and average them (Lim et al. 2017, EDSR's "+"; KAIR's ``test_mode`` 3). It costs 8 forward
passes and typically gains a few tenths of a dB on a net trained with flip / rotation augmentation.

The transforms act on the last two (spatial) dimensions, so clips ``(B, T, C, H, W)`` and windows of frames are
flipped / rotated frame by frame. Side information that is spatial (a tensor whose last two dimensions are the
image's, such as a per-pixel noise-level map) is transformed with the image; per-image values (a noise level
``sigma``, a JPEG ``quality``) are passed unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from m3l.errors import M3LError

# ensemble=NAME: the (rotations by 90 degrees, flipped) pairs it averages over.
ENSEMBLES = {"x8": tuple((k, flip) for flip in (False, True) for k in range(4))}


def parse(value) -> str | None:
    """The config's ``ensemble`` checked: ``None`` (null, false, none: no ensemble) or a name of :data:`ENSEMBLES`."""
    if value in (None, False) or str(value).lower() in ("none", "null", "false", ""):
        return None
    if str(value) not in ENSEMBLES:
        raise M3LError(f"ensemble: unknown value {value!r}; allowed: {', '.join(ENSEMBLES)} (the 8 flips / "
                       f"rotations, averaged) or null (none)")
    return str(value)


def transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``x`` rotated ``k`` times by 90 degrees, then mirrored left-right if ``flip``, over its last two dimensions."""
    x = torch.rot90(x, k, (-2, -1)) if k else x
    return x.flip(-1) if flip else x


def invert(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Undo :func:`transform` on ``y``."""
    y = y.flip(-1) if flip else y
    return torch.rot90(y, -k, (-2, -1)) if k else y


def ensembled(restore: Callable[..., torch.Tensor], x: torch.Tensor, side: dict | None = None,
              name: str = "x8") -> torch.Tensor:
    """The mean of ``invert(restore(transform(x), **transformed side))`` over the transforms of ``name``.

    Each pass runs on its own (memory: one pass and the running sum). The mean is in float32 at least: a bf16 /
    fp16 output (``trainer.precision=bf16-mixed``) is averaged and returned without rounding to 8 mantissa bits.
    """
    side = dict(side or {})
    size = x.shape[-2:]

    def moved(value, k, flip):
        spatial = isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[-2:] == size
        return transform(value, k, flip) if spatial else value

    total, pairs = None, ENSEMBLES[name]
    for k, flip in pairs:
        y = invert(restore(transform(x, k, flip), **{key: moved(v, k, flip) for key, v in side.items()}), k, flip)
        y = y.to(torch.promote_types(y.dtype, torch.float32))
        total = y if total is None else total + y
    return total / len(pairs)
