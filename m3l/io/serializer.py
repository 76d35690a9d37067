"""``ImageSerializer``: writes each corrected image as soon as its batch is done.

A Lightning ``BasePredictionWriter``: outputs go under ``root_dir`` with the input's relative path
and name, in ``format`` (``png``: 8-bit, rounded; ``png16``: 16-bit gray; ``tiff``: 16-bit; ``jpeg`` at
``quality``), with the input's ICC profile and EXIF (its orientation applied), each written atomically
(:mod:`m3l.io.atomic`), so an interrupted run never leaves a partial image. A colour image corrected by a gray net
comes out in colour: its restored luminance with its own chroma (``data.color_input``).

Correction resumes: :meth:`ImageSerializer.pending` drops the inputs whose output already exists
(unless ``overwrite``) before anything is read, and removes what a killed run left half-written.

Outputs stay inside ``root_dir``: ``..`` and absolute parts of a name are dropped, and an output whose folder
leads out of ``root_dir`` through a symbolic link is refused (before anything is corrected, and again just before
each write). Inputs that would share an output (``a.png``, ``a.jpg`` and ``a.PNG`` all make ``a.png``) are
refused up front, naming them, instead of overwriting each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from m3l.io.atomic import remove_temporaries
from m3l.errors import M3LError, shown
from m3l.io.images import FORMATS, with_chroma, write_image

log = logging.getLogger(__name__)


def collisions(names: Sequence[str], output_path) -> list[list[str]]:
    """Groups of ``names`` whose ``output_path`` is the same file (inputs that differ only by extension)."""
    by_output: dict[Path, list[str]] = {}
    for name in names:
        by_output.setdefault(output_path(name), []).append(name)
    return [group for group in by_output.values() if len(group) > 1]


class ImageSerializer(BasePredictionWriter):
    """Args:
        root_dir: the output folder.
        suffix: the outputs' extension (default: the format's, ``.png``, ``.tif``, ``.jpg``).
        overwrite: correct every input again, even those whose output exists (default: skip them).
        format: ``png`` (8-bit), ``png16`` (16-bit gray), ``tiff`` (16-bit, gray or colour), ``jpeg``.
        quality: the JPEG quality of ``format=jpeg``.
    """

    def __init__(self, root_dir: str, suffix: str | None = None, overwrite: bool = False, format: str = "png",
                 quality: int = 95):
        super().__init__(write_interval="batch")
        if root_dir is None or not str(root_dir).strip():
            raise M3LError("serializer.root_dir is empty: pass serializer.root_dir=FOLDER for the corrected images")
        if format not in FORMATS:
            raise M3LError(f"serializer.format: {format!r} is not one of {', '.join(FORMATS)}")
        if not 1 <= int(quality) <= 100:
            raise M3LError(f"serializer.quality: {quality} is not a JPEG quality (1-100)")
        self.root_dir = Path(root_dir)
        self.format, self.quality = format, int(quality)
        self.suffix = suffix or FORMATS[format][0]
        self.overwrite = overwrite
        self.luma: list[str] = []  # colour images a gray net restored on their luminance
        self.written: list[Path] = []
        self.skipped: list[str] = []
        self.done: list[str] = []
        self.current: str | None = None  # the batch being corrected
        self.started = time.perf_counter()

    def output_path(self, name: str) -> Path:
        """Where the image with relative name ``name`` goes; never outside ``root_dir``."""
        relative = Path(*[part for part in Path(name).parts if part not in ("..", "/", "\\")]).with_suffix(self.suffix)
        if relative.is_absolute() or relative.drive:
            relative = relative.relative_to(relative.anchor)
        return self.root_dir / relative

    def inside(self, path: Path) -> Path:
        """``path`` if its folder, symbolic links resolved, is inside ``root_dir`` (also resolved); else one line."""
        root = self.root_dir.resolve()
        if not path.parent.resolve().is_relative_to(root):
            raise M3LError(f"serializer.root_dir: {shown(path.parent)} leads outside {shown(self.root_dir)} (a "
                           f"symbolic link); refusing to write {shown(path.name)} there: remove the link or "
                           f"choose another serializer.root_dir")
        return path

    def pending(self, names: Sequence[str]) -> list[str]:
        """The relative ``names`` still to correct: all with ``overwrite``, else those without an output.

        Data modules call it on their file list before building the dataset (see
        ``FolderDataModule.predict_filter``), so finished inputs are not even read. Temporary files that
        a killed run left for these outputs are removed. Before anything else, inputs that would share an
        output and outputs that a symbolic link would send out of ``root_dir`` are refused in one line.
        """
        clashes = collisions(names, self.output_path)
        if clashes:
            listed = "; ".join(" and ".join(map(shown, group)) for group in clashes[:3])
            more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
            raise M3LError(f"data.correct_dir: {listed}{more} would be written to the same "
                           f"{shown(self.output_path(clashes[0][0]).name)}: inputs that differ only by extension "
                           f"would overwrite each other's output; rename or move all but one")
        outputs = [self.inside(self.output_path(name)) for name in names]
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
            raise M3LError(f"serializer.root_dir: cannot create {shown(self.root_dir)}: {error.strerror}") from None
        self.written, self.skipped = [], []
        self.started = time.perf_counter()

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        """Remember what is being corrected, for a line that names it if it does not fit in memory."""
        names = batch.get("path") if isinstance(batch, dict) else None
        self.current = ", ".join(names) if isinstance(names, (list, tuple)) else names

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        self.current = None
        self.skipped += batch.get("skipped", [])
        if prediction is None:
            return
        for index, (image, name) in enumerate(zip(prediction, batch["path"])):
            path = self.inside(self.output_path(name))
            if "chroma" in batch:  # a colour image, a gray net: its restored luminance with its own colours
                image = with_chroma(image, batch["chroma"][index])
                self.luma.append(name)
            keep = {key: batch[key][index] for key in ("icc", "exif") if key in batch}
            try:
                self.written.append(write_image(image, path, self.format, self.quality, **keep))
            except OSError as error:
                raise M3LError(f"cannot write {shown(path)}: {error.strerror or error}") from None

    def wrote(self, seconds: float) -> str:
        """What the summary says was written, and how fast."""
        return (f"wrote {len(self.written)} images to {shown(self.root_dir)} in {seconds:.2f} s "
                f"({len(self.written) / max(seconds, 1e-9):.3f} images/s)")

    def summary(self) -> str:
        """The closing line: how many were written, skipped as already done, and skipped as unreadable."""
        message = self.wrote(time.perf_counter() - self.started)
        if self.done:
            message += f"; skipped {len(self.done)} already done (serializer.overwrite=true redoes them)"
        if self.skipped:
            message += f"; skipped {len(self.skipped)} unreadable: {', '.join(map(shown, self.skipped))}"
        if self.luma:
            message += (f"; {len(self.luma)} colour images ({', '.join(map(shown, self.luma[:3]))}"
                        f"{', ...' if len(self.luma) > 3 else ''}) restored on their luminance, colours kept, as the "
                        f"net is gray (data.color_input=luma; a colour model restores every channel)")
        return message

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """Print the summary; runs also when nothing was left to correct (Lightning then skips the loop)."""
        if stage == "predict":
            message = self.summary()
            log.info(message)
            print(message)
