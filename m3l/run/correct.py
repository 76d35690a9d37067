"""Correct images: ``python -m m3l.run.correct model=NAME checkpoint=PATH data.correct_dir=IN
serializer.root_dir=OUT``.

``IN`` is a folder (searched recursively) or a single image; for video models (``model=fastdvdnet``), a
folder of clips (frame folders, video files) or one video file, written back as clips (m3l.io.video_serializer).
The data module's
``predict_dataloader`` reads it; the serializer (a Lightning prediction writer) writes each restored
image under ``OUT`` as soon as its batch is done, keeping its relative path and name (as ``.png``).
Unreadable files are skipped with a warning naming each, and a summary at the end. Inputs whose output
already exists are skipped without being read (a rerun resumes), unless ``serializer.overwrite=true``; outputs
count as done only when the same weights and settings made them (``OUT/.m3l_correct.yaml`` records them; other
ones stop with one line).

``IN`` and ``OUT`` must be apart: the same folder, ``OUT`` inside ``IN`` (a rerun would correct its own
outputs) or ``IN`` inside ``OUT`` (outputs could replace inputs) is refused in one line, as are empty paths.
An image too large for memory stops with one line that names it and says to pass ``tile=``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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


def check_apart(source: Path, root: Path, output_of) -> None:
    """One line if correcting ``source`` into ``root`` could overwrite or re-read its own files: the same folder,
    either inside the other (symbolic links resolved), or a single image whose output is the image itself."""
    from m3l.errors import shown

    inputs, outputs = source.resolve(), root.resolve()
    where = f"data.correct_dir={shown(source)} and serializer.root_dir={shown(root)}"
    if source.is_dir():
        if inputs == outputs:
            problem = "are the same folder: the originals would count as done, or be replaced with overwrite=true"
        elif outputs.is_relative_to(inputs):
            problem = "overlap: the output folder is inside the input folder, so a rerun would correct its outputs"
        elif inputs.is_relative_to(outputs):
            problem = "overlap: the input folder is inside the output folder, so outputs could replace the inputs"
        else:
            return
    elif Path(output_of(source.name)).resolve() == inputs:
        problem = "would write the corrected image over the original"
    else:
        return
    raise M3LError(f"{where} {problem}; give an output folder outside the inputs")


RECORD = ".m3l_correct.yaml"  # in serializer.root_dir: what corrected the images there


def what_corrects(cfg: DictConfig, weights: str) -> dict:
    """What makes the outputs what they are: the model, the weights (a file's sha256; the net's arguments must fit
    them), the side information, the colour rule, the output format and the self-ensemble."""
    import hashlib

    path = Path(str(weights).removeprefix("pretrained "))
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        weights = f"sha256:{digest.hexdigest()}"
    plain = lambda key: OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True) if OmegaConf.select(
        cfg, key) is not None else None
    return {"model": cfg.get("name"), "weights": str(weights), "side": plain("data.correct_side"), "color_input": OmegaConf.select(cfg, "data.color_input"),
            "format": OmegaConf.select(cfg, "serializer.format"), "ensemble": cfg.get("ensemble")}


def recorded(root: Path) -> dict | None:
    """What corrected the images in ``root`` (its :data:`RECORD`), if anything says."""
    import yaml

    try:
        before = yaml.safe_load((root / RECORD).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return before if isinstance(before, dict) else None


def check_same_correction(root: Path, record: dict, overwrite: bool) -> None:
    """Outputs already in ``root`` count as done only if the same weights and settings made them: one line
    otherwise (a rerun with other weights would silently keep the old images)."""
    from m3l.errors import shown

    before = recorded(root)
    if before is not None and before != record and not overwrite:
        changed = [key for key in record if before.get(key) != record[key]]
        raise M3LError(f"serializer.root_dir={shown(root)} holds images corrected with other {', '.join(changed)} "
                       f"(see {RECORD} there): pass serializer.overwrite=true to redo them, or another "
                       f"serializer.root_dir")


def record_correction(root: Path, record: dict) -> None:
    """Write ``record`` as what corrected the images in ``root`` (once some are there; only when it changed)."""
    import yaml

    from m3l.io.atomic import atomic_write
    from m3l.errors import shown

    path = root / RECORD
    if recorded(root) == record or not root.is_dir():
        return
    try:
        with atomic_write(path, "w") as f:
            yaml.safe_dump(record, f, sort_keys=False)
    except OSError as error:  # a full disk
        raise M3LError(f"cannot write {shown(path)}: {error.strerror or error}") from None


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (torch's, on CPU or GPU, or Python's)."""
    import torch

    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                                or "not enough memory" in text)


def correct(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from m3l.io.clips import is_video
    from m3l.io.images import list_images
    from m3l.errors import shown

    require(cfg, "data.correct_dir")
    if cfg.get("serializer") is None:
        raise M3LError("serializer is not set: add 'override /serializer: image_serializer' to the model "
                       "config's defaults, or pass serializer=image_serializer")
    require(cfg, "serializer.root_dir")
    for key in ("data.correct_dir", "serializer.root_dir"):  # an empty path would silently mean the cwd
        if not str(OmegaConf.select(cfg, key)).strip():
            raise M3LError(f"{key} is empty: pass {key}=PATH (use . for the current folder)")
    source = Path(cfg.data.correct_dir)
    if not source.exists():
        raise M3LError(f"data.correct_dir: {shown(source)} does not exist; give a folder of images or a single image")
    if source.is_dir() and not list_images(source) and not any(map(is_video, source.rglob("*"))):
        raise M3LError(f"data.correct_dir: no images (png, jpg, bmp, tif, ...) or videos (mp4, mkv, avi) in "
                       f"{shown(source)}")
    serializer = instantiate(cfg.serializer)
    if hasattr(serializer, "output_path"):
        check_apart(source, Path(cfg.serializer.root_dir), serializer.output_path)

    return_freed_memory()
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    weights = load_checkpoint(module, cfg)  # checkpoint=PATH, or the net's pretrained weights
    record = what_corrects(cfg, weights) if hasattr(serializer, "pending") else None
    if record is not None:
        check_same_correction(Path(cfg.serializer.root_dir), record, serializer.overwrite)
    if hasattr(datamodule, "predict_filter") and hasattr(serializer, "pending"):
        datamodule.predict_filter = serializer.pending  # resume: finished outputs are not read again
    trainer = build_trainer(cfg, callbacks=[serializer], logger=False)
    if trainer.world_size > 1:  # each rank would need its own share of the images, and a folder smaller than the
        raise M3LError(f"correct runs on one device, not {trainer.world_size} processes: pass trainer.devices=1 "
                       f"(trainer.num_nodes=1), or split the images over several correct jobs")  # world hangs
    try:
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    except Exception as error:
        if not out_of_memory(error):
            raise
        name = getattr(serializer, "current", None)
        image = f"{shown(name)} " if name else "an image "
        hint = (f"a smaller tile= than {cfg.tile}" if cfg.get("tile") else
                "tile=512 (or smaller): tiled inference, exact when tile_overlap covers the net's receptive field")
        reason = (str(error).splitlines() or [type(error).__name__])[0].rpartition("DefaultCPUAllocator: ")[2]
        raise M3LError(f"data.correct_dir: {image}does not fit in memory ({reason[:120]}); pass {hint}") from None
    if record is not None and serializer.written:
        record_correction(Path(cfg.serializer.root_dir), record)
    if not serializer.written and not getattr(serializer, "done", None):
        what = f"{source} could not be read as an image or video" if source.is_file() else f"none of the images in {source} could be read"
        raise M3LError(f"data.correct_dir: {what}")


main = entry(correct, "correct")

if __name__ == "__main__":
    main()
