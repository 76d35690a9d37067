"""``ImageSerializer``: writes each corrected image as soon as its batch is done.

A Lightning ``BasePredictionWriter``: outputs go under ``root_dir`` with the input's relative path
and name (extension ``.png``: 8-bit, rounded), each written atomically (:mod:`m3l.atomic`), so an
interrupted run never leaves a partial image.

Correction resumes: :meth:`ImageSerializer.pending` drops the inputs whose output already exists
(unless ``overwrite``) before anything is read, and removes what a killed run left half-written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from m3l.atomic import remove_temporaries
from m3l.errors import M3LError
from m3l.imageio import write_png

log = logging.getLogger(__name__)


class ImageSerializer(BasePredictionWriter):
    """Args:
        root_dir: the output folder.
        suffix: the outputs' extension.
        overwrite: correct every input again, even those whose output exists (default: skip them).
    """

    def __init__(self, root_dir: str, suffix: str = ".png", overwrite: bool = False):
        super().__init__(write_interval="batch")
        self.root_dir = Path(root_dir)
        self.suffix = suffix
        self.overwrite = overwrite
        self.written: list[Path] = []
        self.skipped: list[str] = []
        self.done: list[str] = []
        self.started = time.perf_counter()

    def output_path(self, name: str) -> Path:
        """Where the image with relative name ``name`` goes; never outside ``root_dir``."""
        relative = Path(*[part for part in Path(name).parts if part not in ("..", "/", "\\")]).with_suffix(self.suffix)
        if relative.is_absolute() or relative.drive:
            relative = relative.relative_to(relative.anchor)
        return self.root_dir / relative

    def pending(self, names: Sequence[str]) -> list[str]:
        """The relative ``names`` still to correct: all with ``overwrite``, else those without an output.

        Data modules call it on their file list before building the dataset (see
        ``FolderDataModule.predict_filter``), so finished inputs are not even read. Temporary files that
        a killed run left for these outputs are removed.
        """
        outputs = [self.output_path(name) for name in names]
        remove_temporaries(outputs)
        done = [False] * len(names) if self.overwrite else [out.exists() for out in outputs]
        self.done = [name for name, finished in zip(names, done) if finished]
        return [name for name, finished in zip(names, done) if not finished]

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "predict":
            return
        try:
            self.root_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise M3LError(f"serializer.root_dir: cannot create {self.root_dir}: {error.strerror}") from None
        self.written, self.skipped = [], []
        self.started = time.perf_counter()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        self.skipped += batch.get("skipped", [])
        if prediction is None:
            return
        for image, name in zip(prediction, batch["path"]):
            path = self.output_path(name)
            try:
                self.written.append(write_png(image, path))
            except OSError as error:
                raise M3LError(f"cannot write {path}: {error.strerror or error}") from None

    def wrote(self, seconds: float) -> str:
        """What the summary says was written, and how fast."""
        return (f"wrote {len(self.written)} images to {self.root_dir} in {seconds:.2f} s "
                f"({len(self.written) / max(seconds, 1e-9):.3f} images/s)")

    def summary(self) -> str:
        """The closing line: how many were written, skipped as already done, and skipped as unreadable."""
        message = self.wrote(time.perf_counter() - self.started)
        if self.done:
            message += f"; skipped {len(self.done)} already done (serializer.overwrite=true redoes them)"
        if self.skipped:
            message += f"; skipped {len(self.skipped)} unreadable: {', '.join(self.skipped)}"
        return message

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Print the summary; runs also when nothing was left to correct (Lightning then skips the loop)."""
        if stage == "predict":
            message = self.summary()
            log.info(message)
            print(message)
