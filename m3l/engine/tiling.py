"""Tiled inference: restore an image larger than memory allows, tile by tile, with no seams.

Each ``tile x tile`` tile is run with ``overlap`` pixels of context on every side, and only its centre
is kept. When ``overlap`` is at least the net's receptive-field radius (17 pixels for DnCNN-17) the
result equals the whole-image output exactly; below that, differences stay within ``overlap`` of the
tile borders and are reported by ``benchmarks/scaling.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tiled(restore: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int = 32) -> torch.Tensor:
    """``restore(x)`` computed on ``tile``-sized tiles of the ``(N, C, H, W)`` batch ``x``."""
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile must be positive and overlap non-negative, got tile={tile}, overlap={overlap}")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return restore(x)
    output = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            b0, r0 = min(bottom + overlap, height), min(right + overlap, width)
            piece = restore(x[..., t0:b0, l0:r0])
            if output is None:
                output = piece.new_empty((*piece.shape[:-2], height, width))
            output[..., top:bottom, left:right] = piece[..., top - t0:bottom - t0, left - l0:right - l0]
    return output
