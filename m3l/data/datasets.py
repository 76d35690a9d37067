"""Datasets over images: random training patches, evaluation pairs, and images to correct.

Every item is a dict: ``input`` (the degraded image), ``target`` (the clean one, not for correction),
``path`` (the name relative to its folder), ``side`` (degradation parameters, see
:mod:`m3l.data.degradations`) and, for evaluation, ``dataset`` and ``degradation`` names.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from m3l.errors import M3LError
from m3l.io.images import read_for_correction, read_image, read_named, to_float

SIDE_FILE = "side.yaml"


@functools.lru_cache(maxsize=256)
def folder_side(folder: Path) -> dict:
    """The side information a folder's ``side.yaml`` gives its images (``sigma: 25``, ``quality: 10``, in the
    degradation configs' units), as tensors; ``{}`` without one."""
    from omegaconf import OmegaConf

    from m3l.data.degradations import side_from_config

    path = folder / SIDE_FILE
    if not path.is_file():
        return {}
    try:
        values = OmegaConf.to_container(OmegaConf.load(path))
        return side_from_config(values)
    except Exception as error:  # a YAML error, a list, a non-number
        raise M3LError(f"{path}: not a mapping of side information such as 'sigma: 25' ({error})") from None


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (a folder), or its bare name when ``root`` is the file itself."""
    return path.name if root == path or not root.is_dir() else path.relative_to(root).as_posix()


class PatchDataset(Dataset):
    """``length`` random ``patch_size`` crops of decoded images, augmented and degraded on the fly.

    Images are decoded once: ``images`` is a list of ``(C, H, W)`` float tensors, or the integer arrays of a pixel
    cache (:class:`m3l.data.cache.PixelCache`), whose crops are converted to float one patch at a time (the same
    floats). Each item picks an image, a position and one of the 8 flips / rotations with torch's RNG (seeded per
    worker by Lightning), then degrades the patch with a numpy RNG drawn from it.
    """

    def __init__(self, images: list[torch.Tensor] | Sequence[np.ndarray], degradation, patch_size: int = 40, length: int = 1600,
                 augment: bool = True):
        self.images, self.degradation = images, degradation
        self.patch_size, self.length, self.augment = patch_size, length, augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        image = self.images[int(torch.randint(len(self.images), ()))]
        p = self.patch_size
        top = int(torch.randint(image.shape[1] - p + 1, ()))
        left = int(torch.randint(image.shape[2] - p + 1, ()))
        patch = image[:, top:top + p, left:left + p]
        if isinstance(patch, np.ndarray):  # a crop of the pixel cache: only its rows are read
            patch = to_float(patch)
        if self.augment:
            k, flip = int(torch.randint(4, ())), bool(torch.randint(2, ()))
            patch = torch.rot90(patch, k, (1, 2))
            patch = patch.flip(2) if flip else patch
        rng = np.random.RandomState(int(torch.randint(2**31 - 1, ())))
        degraded, side = self.degradation(patch.contiguous(), rng)
        return {"input": degraded, "target": patch.contiguous(), "side": side}


class EvalDataset(Dataset):
    """Clean images from files, each degraded with ``numpy.random.RandomState(seed)`` (published protocol)."""

    def __init__(self, files: list[Path], root: Path, degradation, channels: int = 1, dataset: str = "test",
                 seed: int = 0):
        self.files, self.root, self.degradation = files, Path(root), degradation
        self.channels, self.dataset, self.seed = channels, dataset, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        target = read_named(self.files[index], self.channels)  # a bad image: one line naming it
        degraded, side = self.degradation(target, np.random.RandomState(self.seed))
        return {"input": degraded, "target": target, "side": side,
                "path": relative_name(self.files[index], self.root),
                "dataset": self.dataset, "degradation": self.degradation.name}


class CorrectDataset(Dataset):
    """Images to correct, as they are (no degradation added). Unreadable files yield an ``error`` item.

    Side information: ``side`` (``data.correct_side``) for every image, overridden by a ``side.yaml`` in
    an image's own folder (the workflow's degraded test sets carry one per degradation). Each item also carries
    what the output keeps (``icc``, ``exif``) and, for a colour image given to a gray net, its ``chroma``
    (``color_input="luma"``: the net restores the luminance; ``"refuse"``: one line), see
    :func:`m3l.io.images.read_for_correction`.
    """

    def __init__(self, files: list[Path], root: Path, channels: int = 1, side: dict | None = None,
                 color_input: str = "luma"):
        self.files, self.root, self.channels, self.color_input = files, Path(root), channels, color_input
        self.side = dict(side or {})  # side information for every image (data.correct_side), e.g. the noise level

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        name = relative_name(path, self.root)
        try:
            image, keep = read_for_correction(path, self.channels, self.color_input)
        except M3LError:
            raise
        except Exception as error:  # Pillow raises several types for bad files
            return {"path": name, "error": f"{type(error).__name__}: {error}"}
        # keep: the ICC profile and EXIF for the output, and a colour image's chroma (gray net: see imageio)
        return {"input": image, "path": name, "side": {**self.side, **folder_side(path.parent)}, **keep}


def collate(items: list[dict]) -> dict:
    """Batch items (images or clips); items that failed to load (an ``error`` entry) are skipped with a
    warning naming each, and listed under ``skipped`` when no item of the batch could be read."""
    good = [item for item in items if "error" not in item]
    for item in items:
        if "error" in item:
            warnings.warn(f"skipping {item['path']}: cannot be read ({item['error']})", stacklevel=1)
    if not good:
        return {"path": [item["path"] for item in items], "skipped": [item["path"] for item in items]}
    return default_collate(good)
