"""``PairedFolderDataModule``: real degraded / clean pairs on disk (GoPro, SIDD, your own).

Pairs are found by name: every image under a folder whose path (relative to the folder, with a leading
``/``) contains ``input`` is an input, and its target is the same path with ``input`` replaced by
``target``. GoPro: ``input: /blur/``, ``target: /sharp/`` (``train/GOPR0372_07_00/blur/000047.png``);
SIDD (Medium, sRGB): ``input: NOISY``, ``target: GT``; two plain folders: ``input: /input/``,
``target: /target/``. Images are read when needed (a GoPro training set does not fit in memory):
training takes random aligned crops of a random pair, flipped and rotated alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from m3l.data.degradations import side_from_config
from m3l.data.image_folders import FolderDataModule, default_workers
from m3l.errors import M3LError
from m3l.imageio import list_images, read_image


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
    degraded, clean = read_image(pair[0], channels), read_image(pair[1], channels)
    if degraded.shape != clean.shape:
        raise M3LError(f"{pair[0]} and {pair[1]} differ in size: {tuple(degraded.shape)} vs {tuple(clean.shape)}")
    return degraded, clean


class PairedPatchDataset(Dataset):
    """``length`` random aligned crops of random pairs, both flipped / rotated alike (torch's RNG)."""

    def __init__(self, pairs, channels: int = 3, patch_size: int = 128, length: int = 1600, augment: bool = True):
        self.pairs, self.channels, self.patch_size, self.length, self.augment = pairs, channels, patch_size, length, augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        degraded, clean = _read_pair(self.pairs[int(torch.randint(len(self.pairs), ()))], self.channels)
        p = self.patch_size
        if min(clean.shape[1:]) < p:
            raise M3LError(f"data.patch_size={p} is larger than a training pair ({tuple(clean.shape[1:])})")
        top, left = int(torch.randint(clean.shape[1] - p + 1, ())), int(torch.randint(clean.shape[2] - p + 1, ()))
        crops = [im[:, top:top + p, left:left + p] for im in (degraded, clean)]
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
    """

    def __init__(self, train_dir: str | None = None, val_dir: str | None = None, test_sets: Mapping | None = None,
                 correct_dir: str | None = None, input: str = "/input/", target: str = "/target/",
                 degradation: str = "real", channels: int = 3, patch_size: int = 128, train_batch_size: int = 8,
                 patches_per_epoch: int = 1600, augment: bool = True, num_workers: int | None = None,
                 correct_side: Mapping | None = None, progressive: Sequence[Mapping] | None = None):
        super().__init__()
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

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = PairedPatchDataset(self._pairs(self.train_dir, "data.train_dir"), self.channels,
                                                self.patch_size, self.patches_per_epoch, self.augment)
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
