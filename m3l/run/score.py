"""Score another method's results: ``python -m m3l.run.score clean_dir=DIR restored_dir=DIR [degraded_dir=DIR]``.

Each clean image (searched recursively) is matched with the restored image of the same relative name, any image
extension (``sub/a.png`` with ``sub/a.jpg``: what ``m3l.run.correct`` and most methods write), and measured as
``m3l.run.test`` measures (:mod:`m3l.engine.metrics`, the same ``metrics.*`` keys: ``psnrb``, ``y_channel``,
``crop_border``). Writes the same two tables as the test: ``per_image_csv`` (one row per image; ``*_input`` columns
when ``degraded_dir`` is given) and ``metrics_csv`` (the mean row: dataset, degradation, n_images, psnr, ssim),
so :mod:`m3l.io.tables` aggregates them with m3l's own results, and prints the summary.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from m3l.errors import M3LError
from m3l.run.common import entry

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def names(key: str, folder: str) -> dict[str, Path]:
    """``{relative name without extension: image}`` of ``folder``; one line if it is no folder of images or two
    of its images differ only by extension."""
    from m3l.io.images import list_images

    root = Path(folder)
    if not root.is_dir():
        raise M3LError(f"{key}: {root} is not a folder: give the folder of images")
    found: dict[str, Path] = {}
    for path in list_images(root):
        name = path.relative_to(root).with_suffix("").as_posix()
        if name in found:
            raise M3LError(f"{key}: {found[name]} and {path} have the same name; images are matched by name, "
                           f"whatever their extension: keep one")
        found[name] = path
    if not found:
        raise M3LError(f"{key}: no images (png, jpg, bmp, tif, ...) in {root}")
    return found


def listed(paths, root: Path, most: int = 5) -> str:
    shown = [p.relative_to(root).as_posix() if isinstance(p, Path) else p for p in sorted(paths)[:most]]
    return ", ".join(shown) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def match(clean: dict[str, Path], other: dict[str, Path], key: str, folder: str, clean_dir: str) -> None:
    """One line naming the clean images ``other`` lacks and the images of ``other`` without a clean one."""
    missing, extra = sorted(set(clean) - set(other)), sorted(set(other) - set(clean))
    if missing or extra:
        parts = []
        if missing:
            lacking = listed([clean[n] for n in missing], Path(clean_dir))
            parts.append(f"lacks {len(missing)} of the clean images ({lacking})")
        if extra:
            parts.append(f"has {len(extra)} with no clean image of the same name in {clean_dir} "
                         f"({listed([other[n] for n in extra], Path(folder))})")
        raise M3LError(f"{key}: {folder} " + " and ".join(parts) + "; images are matched by relative name, any "
                       f"extension")


def unreadable(path: Path, error: BaseException) -> M3LError:
    """The one line for an image that cannot be read: not an image, cut short, a decompression bomb (more pixels
    than Pillow's limit), or too large for memory."""
    from PIL import Image

    from m3l.errors import shown

    if isinstance(error, Image.DecompressionBombError):
        return M3LError(f"{shown(path)}: refused: {error} (Image.MAX_IMAGE_PIXELS)")
    if isinstance(error, MemoryError):
        return M3LError(f"{shown(path)}: too large to read into memory")
    first = (str(error).splitlines() or [type(error).__name__])[0]
    return M3LError(f"{shown(path)}: cannot read it as an image ({first})")


READ_ERRORS = (OSError, ValueError, SyntaxError, MemoryError)  # and Pillow's DecompressionBombError (below)


def read(path: Path, channels: int):
    """``(1, C, H, W)`` in [0, 1]; one line naming the file if it cannot be read."""
    from PIL import Image

    from m3l.io.images import read_image

    try:
        return read_image(path, channels)[None]
    except (*READ_ERRORS, Image.DecompressionBombError) as error:
        raise unreadable(path, error) from None


def channels_of(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return 1 if image.mode in GRAY_MODES else 3
    except (*READ_ERRORS, Image.DecompressionBombError) as error:
        raise unreadable(path, error) from None


def crop_border(metrics) -> int:
    """``metrics.crop_border`` as a whole number of pixels >= 0; one line otherwise."""
    value = (metrics or {}).get("crop_border", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise M3LError(f"metrics.crop_border: {value!r} is not a whole number of pixels >= 0")
    return value


def check_crop(path: Path, height: int, width: int, crop: int) -> None:
    """One line if cropping ``crop`` pixels on every side leaves less than 2x2 pixels of the image to measure."""
    if min(height, width) - 2 * crop < 2:
        raise M3LError(f"metrics.crop_border={crop} leaves nothing to measure of {path} ({width}x{height} pixels): "
                       f"give at most {max(0, (min(height, width) - 2) // 2)}")


def score(cfg: DictConfig) -> None:
    import pandas as pd

    from m3l.engine.metrics import evaluate, protocol
    from m3l.run.common import require
    from m3l.run.test import print_table
    from m3l.io.tables import summarize, write_csv

    require(cfg, "clean_dir", "restored_dir")
    if cfg.channels not in (None, 1, 3):
        raise M3LError(f"channels: {cfg.channels} is not 1 (gray) or 3 (RGB); null reads each as its clean image")
    crop = crop_border(cfg.metrics)
    metric_names, options = protocol(cfg.metrics)
    clean = names("clean_dir", cfg.clean_dir)
    restored = names("restored_dir", cfg.restored_dir)
    match(clean, restored, "restored_dir", cfg.restored_dir, cfg.clean_dir)
    degraded = None
    if cfg.degraded_dir is not None:
        degraded = names("degraded_dir", cfg.degraded_dir)
        match(clean, degraded, "degraded_dir", cfg.degraded_dir, cfg.clean_dir)
    dataset = cfg.dataset_name or Path(cfg.clean_dir).resolve().name
    degradation = cfg.degradation_name or Path(cfg.restored_dir).resolve().name

    rows = []
    for name, clean_path in clean.items():
        channels = cfg.channels or channels_of(clean_path)
        target = read(clean_path, channels)
        check_crop(clean_path, target.shape[-2], target.shape[-1], crop)
        images = {"": restored[name], "_input": degraded[name] if degraded else None}
        relative = clean_path.relative_to(cfg.clean_dir).as_posix()
        row = {"dataset": dataset, "degradation": degradation, "image": relative,
               "height": target.shape[-2], "width": target.shape[-1]}
        for suffix, path in images.items():
            if path is None:
                continue
            image = read(path, channels)
            if image.shape[-2:] != target.shape[-2:]:
                raise M3LError(f"{path}: {image.shape[-1]}x{image.shape[-2]} pixels, but the clean {clean_path} is "
                               f"{target.shape[-1]}x{target.shape[-2]}: images are compared at the same size")
            row.update({f"{metric}{suffix}": float(values[0])
                        for metric, values in evaluate(image, target, metric_names, **options).items()})
        rows.append(row)

    per_image = pd.DataFrame(rows)
    summary = summarize(per_image)
    write_csv(per_image, cfg.per_image_csv)
    write_csv(summary, cfg.metrics_csv)
    print_table(summary, f"{cfg.restored_dir} against {cfg.clean_dir}")
    print(f"per-image results: {cfg.per_image_csv}")
    print(f"metrics: {cfg.metrics_csv}")


main = entry(score, "score", model=False)

if __name__ == "__main__":
    main()
