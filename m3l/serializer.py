"""``ImageSerializer``: writes each corrected image as soon as its batch is done.

A Lightning ``BasePredictionWriter``: outputs go under ``root_dir`` with the input's relative path
and name (extension ``.png``: 8-bit, rounded), each written to a temporary name then renamed, so an
interrupted run never leaves a partial image.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from m3l.errors import M3LError
from m3l.imageio import write_png

log = logging.getLogger(__name__)


class ImageSerializer(BasePredictionWriter):
    def __init__(self, root_dir: str, suffix: str = ".png"):
        super().__init__(write_interval="batch")
        self.root_dir = Path(root_dir)
        self.suffix = suffix
        self.written: list[Path] = []
        self.skipped: list[str] = []

    def output_path(self, name: str) -> Path:
        """Where the image with relative name ``name`` goes; never outside ``root_dir``."""
        relative = Path(*[part for part in Path(name).parts if part not in ("..", "/", "\\")]).with_suffix(self.suffix)
        if relative.is_absolute() or relative.drive:
            relative = relative.relative_to(relative.anchor)
        return self.root_dir / relative

    def on_predict_start(self, trainer, pl_module) -> None:
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

    def on_predict_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self.started
        message = (f"wrote {len(self.written)} images to {self.root_dir} in {seconds:.2f} s "
                   f"({len(self.written) / max(seconds, 1e-9):.3f} images/s)")
        if self.skipped:
            message += f"; skipped {len(self.skipped)} unreadable: {', '.join(self.skipped)}"
        log.info(message)
        print(message)
