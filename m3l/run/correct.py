"""Correct images: ``python -m m3l.run.correct model=NAME checkpoint=PATH data.correct_dir=IN
serializer.root_dir=OUT``.

``IN`` is a folder (searched recursively) or a single image; for video models (``model=fastdvdnet``), a
folder of clips (frame folders, video files) or one video file, written back as clips (m3l.video_serializer).
The data module's
``predict_dataloader`` reads it; the serializer (a Lightning prediction writer) writes each restored
image under ``OUT`` as soon as its batch is done, keeping its relative path and name (as ``.png``).
Unreadable files are skipped with a warning naming each, and a summary at the end. Inputs whose output
already exists are skipped without being read (a rerun resumes), unless ``serializer.overwrite=true``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from m3l.errors import M3LError
from m3l.run.common import build_datamodule, build_module, build_trainer, entry, load_checkpoint, require


def return_freed_memory() -> None:
    """Let glibc give image-sized buffers back to the OS when freed (a fixed 1 MiB mmap threshold), so
    memory stays flat over thousands of images: its default raises the threshold above the first large
    image's size, and the heap then keeps growing (measured by benchmarks/correct_load.py)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def correct(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from m3l.data.video import is_video
    from m3l.imageio import list_images

    require(cfg, "data.correct_dir")
    if cfg.get("serializer") is None:
        raise M3LError("serializer is not set: add 'override /serializer: image_serializer' to the model "
                       "config's defaults, or pass serializer=image_serializer")
    require(cfg, "serializer.root_dir")
    source = Path(cfg.data.correct_dir)
    if not source.exists():
        raise M3LError(f"data.correct_dir: {source} does not exist; give a folder of images or a single image")
    if source.is_dir() and not list_images(source) and not any(map(is_video, source.rglob("*"))):
        raise M3LError(f"data.correct_dir: no images (png, jpg, bmp, tif, ...) or videos (mp4, mkv, avi) in {source}")

    return_freed_memory()
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    load_checkpoint(module, cfg)  # checkpoint=PATH, or the net's pretrained weights
    serializer = instantiate(cfg.serializer)
    if hasattr(datamodule, "predict_filter") and hasattr(serializer, "pending"):
        datamodule.predict_filter = serializer.pending  # resume: finished outputs are not read again
    trainer = build_trainer(cfg, callbacks=[serializer], logger=False)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    if not serializer.written and not getattr(serializer, "done", None):
        what = f"{source} could not be read as an image or video" if source.is_file() else f"none of the images in {source} could be read"
        raise M3LError(f"data.correct_dir: {what}")


main = entry(correct, "correct")

if __name__ == "__main__":
    main()
