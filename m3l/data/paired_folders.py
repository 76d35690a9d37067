"""``PairedFolderDataModule``: real degraded / clean pairs on disk (GoPro, SIDD, your own).

Pairs are found by name: every image under a folder whose path (relative to the folder, with a leading
``/``) contains ``input`` is an input, and its target is the same path with ``input`` replaced by
``target``. GoPro: ``input: /blur/``, ``target: /sharp/`` (``train/GOPR0372_07_00/blur/000047.png``);
SIDD (Medium, sRGB): ``input: NOISY``, ``target: GT``; two plain folders: ``input: /input/``,
``target: /target/``. Training takes random aligned crops of a random pair, flipped and rotated alike, from the
decoded-pixel cache (:mod:`m3l.data.cache`: both sides decoded once into one memory-mapped file, a crop reads only
its own pixels); with ``data.cache=false`` both whole images are read and decoded for every patch. Validation and
test pairs are read when needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from m3l.data import cache as pixel_cache
from m3l.data.degradations import side_from_config
from m3l.data.image_folders import FolderDataModule, default_workers, info
from m3l.errors import M3LError
from m3l.io.images import list_images, read_named, to_float


def find_pairs(root: str | Path, input: str, target: str, what: str) -> list[tuple[Path, Path, str]]:
    """``(input file, target file, name)`` for every input under ``root``; a missing target is an error."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise M3LError(f"{what}: {root} is not a folder of {input!r} / {target!r} image pairs")
    pairs = []
    for f in list_images(root):
        rel = "/" + f.relative_to(root).as_posix()
        if input not in rel:
            continue
        partner = root / rel.replace(input, target, 1)[1:]
        if not partner.is_file():
            raise M3LError(f"{what}: {f} has no target {partner} (pairs: {input!r} -> {target!r} in the path)")
        pairs.append((f, partner, rel[1:]))
    if not pairs:
        raise M3LError(f"{what}: no image under {root} has {input!r} in its path (set data.input / data.target)")
    return pairs


def _read_pair(pair, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    degraded, clean = read_named(pair[0], channels), read_named(pair[1], channels)  # bad images: one line
    if degraded.shape != clean.shape:
        raise M3LError(f"{pair[0]} and {pair[1]} differ in size: {tuple(degraded.shape)} vs {tuple(clean.shape)}")
    return degraded, clean


class PairedPatchDataset(Dataset):
    """``length`` random aligned crops of random pairs, both flipped / rotated alike (torch's RNG).

    With ``pixels`` (the pairs' :class:`~m3l.data.cache.PixelCache`: input ``2i``, target ``2i + 1``) the crops are
    cut from the cache and converted to float per patch; without, both images are decoded for every patch. The
    same seed draws the same patches either way."""

    def __init__(self, pairs, channels: int = 3, patch_size: int = 128, length: int = 1600, augment: bool = True,
                 pixels: pixel_cache.PixelCache | None = None):
        self.pairs, self.channels, self.patch_size, self.length, self.augment = pairs, channels, patch_size, length, augment
        self.pixels = pixels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        pick = int(torch.randint(len(self.pairs), ()))
        if self.pixels is not None:
            degraded, clean = self.pixels[2 * pick], self.pixels[2 * pick + 1]
        else:
            degraded, clean = _read_pair(self.pairs[pick], self.channels)
        p = self.patch_size
        if min(clean.shape[1:]) < p:
            raise M3LError(f"data.patch_size={p} is larger than a training pair ({tuple(clean.shape[1:])})")
        top, left = int(torch.randint(clean.shape[1] - p + 1, ())), int(torch.randint(clean.shape[2] - p + 1, ()))
        crops = [im[:, top:top + p, left:left + p] for im in (degraded, clean)]
        if self.pixels is not None:  # only the crops' rows of the map are read
            crops = [to_float(c) for c in crops]
        if self.augment:
            k, flip = int(torch.randint(4, ())), bool(torch.randint(2, ()))
            crops = [torch.rot90(c, k, (1, 2)) for c in crops]
            crops = [c.flip(2) for c in crops] if flip else crops
        return {"input": crops[0].contiguous(), "target": crops[1].contiguous(), "side": {}}


class PairedEvalDataset(Dataset):
    """Whole pairs, for validation and testing; ``degradation`` names the table rows."""

    def __init__(self, pairs, channels: int = 3, dataset: str = "test", degradation: str = "real"):
        self.pairs, self.channels, self.dataset, self.degradation = pairs, channels, dataset, degradation

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        degraded, clean = _read_pair(self.pairs[index], self.channels)
        return {"input": degraded, "target": clean, "side": {}, "path": self.pairs[index][2],
                "dataset": self.dataset, "degradation": self.degradation}


class PairedFolderDataModule(FolderDataModule):
    """Train, validate and test on degraded / clean pairs; correct a folder of degraded images.

    Args:
        train_dir, val_dir: folders of pairs; test_sets: ``{name: folder of pairs}``.
        input, target: the path fragments that tell an input from its target (see the module docstring).
        degradation: the name of the degradation in result tables (``real``, ``gopro_blur``, ...).
        correct_dir, correct_side, progressive: as for :class:`~m3l.data.image_folders.ImageFolderDataModule`.
        cache: decode the training pairs once into a memory-mapped cache shared by every worker and rank
            (:mod:`m3l.data.cache`; the default); ``False`` reads and decodes both images for every patch.
        cache_dir: where the cache lives (default ``~/.cache/m3l/pixels``; node-local scratch on a cluster).
    """

    def __init__(self, train_dir: str | None = None, val_dir: str | None = None, test_sets: Mapping | None = None,
                 correct_dir: str | None = None, input: str = "/input/", target: str = "/target/",
                 degradation: str = "real", channels: int = 3, patch_size: int = 128, train_batch_size: int = 8,
                 patches_per_epoch: int = 1600, augment: bool = True, num_workers: int | None = None,
                 correct_side: Mapping | None = None, progressive: Sequence[Mapping] | None = None,
                 cache: bool = True, cache_dir: str | None = None):
        super().__init__()
        self.cache, self.cache_dir = cache, cache_dir
        self.train_dir, self.val_dir, self.test_sets, self.correct_dir = train_dir, val_dir, dict(test_sets or {}), correct_dir
        self.input, self.target, self.degradation, self.channels = input, target, degradation, channels
        self.patch_size, self.train_batch_size, self.patches_per_epoch = patch_size, train_batch_size, patches_per_epoch
        self.augment = augment
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.correct_side = side_from_config(correct_side)
        self.use_progressive(progressive)

    def _pairs(self, folder, what: str):
        if folder is None:
            raise M3LError(f"{what} is not set: pass {what}=<folder of image pairs>")
        return find_pairs(folder, self.input, self.target, what)

    def train_cache(self) -> pixel_cache.PixelCache | None:
        if not self.cache or self.train_dir is None:
            return None
        pairs = self._pairs(self.train_dir, "data.train_dir")
        items = [pixel_cache.Item((f,), str(f)) for pair in pairs for f in pair[:2]]
        label = str(Path(self.train_dir).expanduser().resolve()) + f"\n{self.input}\n{self.target}"
        return pixel_cache.ensure(items, self.channels, "pairs", label, self.cache_dir, aligned=2)

    def _train_set(self) -> PairedPatchDataset:
        pairs = self._pairs(self.train_dir, "data.train_dir")
        pixels = self.train_cache()
        if pixels is None:
            info(f"data.train_dir: {len(pairs)} pairs, read and decoded for every patch (data.cache=false)")
        else:
            small = [(pixels.names[2 * i + 1], s) for i, s in enumerate(pixels.shapes[1::2]) if min(s[1:]) < self.patch_size]
            if small:
                raise M3LError(f"data.patch_size={self.patch_size} is larger than a training pair ({small[0][0]}: "
                               f"{small[0][1][1]}x{small[0][1][2]})")
            info(*pixel_cache.summary(pixels, "data.train_dir", len(pairs), "pairs"))
        return PairedPatchDataset(pairs, self.channels, self.patch_size, self.patches_per_epoch, self.augment, pixels)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._train_set()
        if stage in ("fit", "validate", None):
            self.val_set = PairedEvalDataset(self._pairs(self.val_dir, "data.val_dir"), self.channels, "val",
                                             self.degradation)
        if stage in ("test", None):
            if not self.test_sets:
                raise M3LError("data.test_sets is not set: pass data.test_sets={name: folder of image pairs}")
            self.test_sets_ = [PairedEvalDataset(self._pairs(folder, f"data.test_sets.{name}"), self.channels, name,
                                                 self.degradation) for name, folder in self.test_sets.items()]
        if stage == "predict":
            self.setup_predict()
