"""``ImageFolderDataModule``: train, validate, test and correct over folders of clean images.

Any degradation (see :mod:`m3l.data.degradations`) is applied on the fly: random patches for
training; for validation and testing, each image with a fixed seed, as the published protocols do.
With no folders given it uses the embedded default dataset (:mod:`m3l.data.embedded`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from m3l.data import cache as pixel_cache
from m3l.data import embedded
from m3l.data.datasets import CorrectDataset, EvalDataset, PatchDataset, collate, folder_side, relative_name
from m3l.data.degradations import GaussianNoise, require_test_levels, side_from_config
from m3l.data.progressive import epoch_batches, parse_schedule, stage_at
from m3l.errors import M3LError
from m3l.io.images import list_images, read_named


def info(*lines: str) -> None:
    """Lines for the log, from the first rank only (the data modules' start-of-training summary)."""
    from pytorch_lightning.utilities import rank_zero_info

    for line in lines:
        rank_zero_info(line)


def default_workers() -> int:
    """Data-loading workers that leave a core for the net: ``min(4, cores - 1)``."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _files(source, what: str) -> tuple[list[Path], Path]:
    """Image files of a folder, a single image, or a list of images; with a clear error if none."""
    if isinstance(source, (list, tuple)):
        files = [Path(f) for f in source]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise M3LError(f"{what}: image not found: {missing[0]}")
        return files, files[0].parent
    root = Path(source).expanduser()
    if not root.exists():
        raise M3LError(f"{what}: {root} does not exist; give a folder of images or a single image")
    files = list_images(root)
    if not files:
        raise M3LError(f"{what}: no images (png, jpg, bmp, tif, ...) in {root}")
    return files, root


def _label(source) -> str:
    """What names a training set's cache folder: its folder, resolved (or the list of its images)."""
    if isinstance(source, (list, tuple)):
        return "\n".join(str(Path(f).resolve()) for f in source)
    return str(Path(source).expanduser().resolve())


class FolderDataModule(pl.LightningDataModule):
    """What m3l's folder data modules share (images, paired images, clips): the data loaders and the
    images to correct (the clip module streams its own).

    Subclasses set ``train_set``, ``val_set`` and ``test_sets_`` in ``setup`` and call
    :meth:`setup_predict` for the ``predict`` stage; they need ``correct_dir``, ``channels``,
    ``correct_side``, ``num_workers`` and ``train_batch_size`` attributes, and call :meth:`use_progressive`.
    Their training datasets have ``patch_size`` and ``length`` attributes (a progressive schedule sets them).

    ``predict_filter``, when set, maps the relative names of the images to correct to those still to
    do; ``m3l.run.correct`` sets it to the serializer's ``pending``, so a rerun skips finished outputs
    without reading their inputs.
    """

    predict_filter: Callable[[list[str]], list[str]] | None = None
    progressive: list = []
    cache: bool = False
    cache_dir: str | None = None
    _stage_loader: tuple | None = None  # ((stage index, batches), its DataLoader)

    def use_progressive(self, progressive) -> None:
        """``data.progressive``: training patch and batch sizes by step (see :mod:`m3l.data.progressive`). The
        training set is built with the largest patch (every training image must hold it); each epoch's loader
        takes its stage's patch and batch size."""
        self.progressive = parse_schedule(progressive)
        if self.progressive:
            self.patch_size = max(stage.patch_size for stage in self.progressive)

    def prepare_data(self) -> None:
        """Build the training set's decoded-pixel cache (:mod:`m3l.data.cache`) when fitting: Lightning runs this
        once per node, on its first process, before every process's ``setup`` (which opens the cache, and builds
        it under the same file lock if it is still missing)."""
        if self.trainer is not None and self.trainer.state.fn != "fit":
            return
        self.train_cache()

    def train_cache(self) -> pixel_cache.PixelCache | None:
        """The training set's pixel cache, built if needed; None when the set is not cached (``data.cache=false``,
        the embedded data)."""
        return None

    def setup_predict(self) -> None:
        if self.correct_dir is None:
            raise M3LError("data.correct_dir is not set: pass data.correct_dir=<folder or image>")
        files, root = _files(self.correct_dir, "data.correct_dir")
        if self.predict_filter is not None:
            by_name = {relative_name(f, root): f for f in files}
            files = [by_name[name] for name in self.predict_filter(list(by_name))]
        for folder in {f.parent for f in files}:
            folder_side(folder)  # a bad side.yaml stops here, in one line, not in a loader worker
        self.predict_set = CorrectDataset(files, root, self.channels, self.correct_side,
                                          getattr(self, "color_input", "luma"))

    def _loader(self, dataset, batch_size: int = 1, persistent: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=persistent and self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        if self.progressive:
            return self._progressive_loader()
        return self._loader(self.train_set, self.train_batch_size, persistent=True)

    def _progressive_loader(self) -> DataLoader:
        """The loader of the stage at the trainer's step, its epoch cut short at the stage's end; the same loader
        (and workers) while the stage and epoch length stay. Lightning is asked to call this every epoch."""
        from pytorch_lightning.utilities import rank_zero_info

        trainer, step, devices, accumulate = self.trainer, 0, 1, 1
        if trainer is not None:
            trainer.reload_dataloaders_every_n_epochs = 1
            step, devices, accumulate = trainer.global_step, trainer.world_size, trainer.accumulate_grad_batches
        index, stage, left = stage_at(self.progressive, step)
        batches = epoch_batches(len(self.train_set), stage, left, devices, accumulate)
        if self._stage_loader is None or self._stage_loader[0] != (index, batches):
            if self._stage_loader is None or self._stage_loader[0][0] != index:
                rank_zero_info(f"data.progressive: stage {index + 1} of {len(self.progressive)} from step {step}: "
                               f"{stage.patch_size}x{stage.patch_size} patches, batch {stage.batch_size} a device")
            dataset = copy.copy(self.train_set)
            dataset.patch_size, dataset.length = stage.patch_size, batches * stage.batch_size * devices
            self._stage_loader = (index, batches), self._loader(dataset, stage.batch_size, persistent=True)
        return self._stage_loader[1]

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, persistent=True)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.test_sets_]

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set)


class ImageFolderDataModule(FolderDataModule):
    """Restoration data from folders of clean images.

    Args:
        train_dir: folder of clean training images; ``None`` uses embedded dead-leaves images.
        val_dir: folder (or image, or list of images) for validation; ``None`` uses embedded photos.
        test_sets: ``{name: folder}`` of test sets; ``None`` (or ``{photos: null}``) uses the embedded photos as
            ``photos``.
        correct_dir: folder or single image to correct (``m3l.run.correct``); searched recursively.
        correct_side: side information for correction, in the degradation configs' units (``{sigma: 25}``,
            ``{quality: 10}``), for nets whose ``forward`` needs it (FFDNet, DRUNet) or can use it (FBCNN).
        degradation: applied to training and validation images (default: Gaussian noise, sigma 25); a
            config of the ``degradation`` group (``degradation@data.degradation=jpeg10`` on the command line).
        test_degradations: each test set is evaluated once per entry (default: ``[degradation]`` when its
            level is fixed; one that draws its level per image stops with one line).
        channels: 1 for gray, 3 for RGB; images are converted on load.
        patch_size, train_batch_size, patches_per_epoch: training crops, batch size and epoch length.
        augment: random flips and rotations of training patches.
        num_workers: data-loading processes (default ``min(4, cores - 1)``).
        seed: noise seed of every validation / test image (0, as in the published test scripts).
        deadleaves: size of the embedded training set (``count``, ``size``).
        color_input: a colour image to correct with a gray net (``channels=1``): ``luma`` restores its
            luminance and keeps its colours (JPEG's YCbCr), ``refuse`` stops with one line naming colour models.
        progressive: stages of patch and batch sizes by step (see :mod:`m3l.data.progressive`); they replace
            ``patch_size`` and ``train_batch_size`` for training.
        cache: decode the training images once into a memory-mapped cache shared by every worker and rank
            (:mod:`m3l.data.cache`; the default); ``False`` holds them decoded as float32 in each process.
        cache_dir: where the cache lives (default ``~/.cache/m3l/pixels``; node-local scratch on a cluster).
    """

    def __init__(self, train_dir: str | None = None, val_dir=None, test_sets: Mapping | None = None,
                 correct_dir: str | None = None, degradation=None, test_degradations: Sequence | None = None,
                 channels: int = 1, patch_size: int = 40, train_batch_size: int = 16,
                 patches_per_epoch: int = 1600, augment: bool = True, num_workers: int | None = None,
                 seed: int = 0, deadleaves: Mapping | None = None, correct_side: Mapping | None = None,
                 progressive: Sequence[Mapping] | None = None, cache: bool = True, cache_dir: str | None = None,
                 color_input: str = "luma"):
        super().__init__()
        if channels not in (1, 3):
            raise M3LError(f"data.channels must be 1 (gray) or 3 (RGB), got {channels}")
        if color_input not in ("luma", "refuse"):
            raise M3LError(f"data.color_input must be luma or refuse, got {color_input!r}")
        self.color_input = color_input
        self.train_dir, self.val_dir, self.test_sets, self.correct_dir = train_dir, val_dir, test_sets, correct_dir
        self.cache, self.cache_dir = cache, cache_dir
        self.degradation = degradation or GaussianNoise(25.0)
        self.test_degradations = list(test_degradations or [])  # empty: the training one, if fixed
        self.channels, self.patch_size, self.train_batch_size = channels, patch_size, train_batch_size
        self.patches_per_epoch, self.augment, self.seed = patches_per_epoch, augment, seed
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.deadleaves = dict(deadleaves or {})
        self.correct_side = side_from_config(correct_side)
        self.use_progressive(progressive)

    # -- datasets -------------------------------------------------------------------------------
    def train_cache(self) -> pixel_cache.PixelCache | None:
        if self.train_dir is None or not self.cache:
            return None
        files, root = _files(self.train_dir, "data.train_dir")
        items = [pixel_cache.Item((f,), str(f)) for f in files]
        return pixel_cache.ensure(items, self.channels, "images", _label(self.train_dir), self.cache_dir)

    def _train_images(self) -> list[torch.Tensor] | pixel_cache.PixelCache:
        """The training images: in-memory tensors (embedded data, ``data.cache=false``) or the pixel cache."""
        if self.train_dir is None:
            images = embedded.dead_leaves_images(channels=self.channels, seed=self.seed, **self.deadleaves)
            return list(torch.from_numpy(images))
        pixels = self.train_cache()
        if pixels is not None:
            small = [name for name, shape in zip(pixels.names, pixels.shapes) if min(shape[1:]) < self.patch_size]
            if small:
                raise M3LError(f"data.train_dir: {small[0]} is smaller than data.patch_size={self.patch_size}")
            info(*pixel_cache.summary(pixels, "data.train_dir", len(pixels), "images"))
            return pixels
        files, _ = _files(self.train_dir, "data.train_dir")
        images = [read_named(f, self.channels) for f in files]  # a bad image: one line naming it
        small = [f for f, im in zip(files, images) if min(im.shape[1:]) < self.patch_size]
        if small:
            raise M3LError(f"data.train_dir: {small[0]} is smaller than data.patch_size={self.patch_size}")
        held = sum(im.numel() * im.element_size() for im in images)
        info(f"data.train_dir: {len(images)} images, {sum(im[0].numel() for im in images) / 1e9:.2f} gigapixels, "
             f"decoded into memory (data.cache=false): {pixel_cache.human(held)} in every rank (float32)")
        return images

    def _eval_sets(self) -> list[EvalDataset]:
        sets = self.test_sets if self.test_sets is not None else {"photos": embedded.photos("test")}
        out, levels = [], require_test_levels(self.degradation, self.test_degradations)
        for name, source in sets.items():
            if source is None and name != "photos":
                raise M3LError(f"data.test_sets.{name} is null and nothing gives its folder (a null keeps the "
                               f"folder a preset gives that set): data.test_sets={{{name}: FOLDER}}")
            source = embedded.photos("test") if source is None else source  # {photos: null}: the embedded ones
            files, root = _files(source, f"data.test_sets.{name}")
            out += [EvalDataset(files, root, d, self.channels, name, self.seed) for d in levels]
        return out

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = PatchDataset(self._train_images(), self.degradation, self.patch_size,
                                          self.patches_per_epoch, self.augment)
        if stage in ("fit", "validate", None):
            files, root = _files(self.val_dir if self.val_dir is not None else embedded.photos("val"), "data.val_dir")
            self.val_set = EvalDataset(files, root, self.degradation, self.channels, "val", self.seed)
        if stage in ("test", None):
            self.test_sets_ = self._eval_sets()
        if stage == "predict":
            self.setup_predict()
