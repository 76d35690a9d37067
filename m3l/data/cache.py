"""The decoded-pixel cache: a training set decoded once into one memory-mapped file, shared by every worker and rank.

Without it, :class:`~m3l.data.image_folders.ImageFolderDataModule` holds every training image as float32 in each
process (4 bytes a pixel and channel: KAIR's trainH, 11 gigapixels, is 45 GB gray a rank) and
:class:`~m3l.data.paired_folders.PairedFolderDataModule` decodes two whole PNGs for every patch (GoPro: ~14 patches
per worker CPU-second). With ``data.cache=true`` (the default for folder training sets) the training images, pairs
or clips are decoded once, on first use, into ``pixels.bin``: each image's integer pixels as decoded (uint8, uint16
for 16-bit images; ``(C, H, W)``, a clip ``(T, C, H, W)``) one after the other, beside ``manifest.json`` (the key,
and each array's offset, shape and dtype). Training maps the file read-only and cuts each patch out of it: a
random crop reads only the crop's rows, the float conversion happens per patch (:func:`m3l.io.images.to_float`, the
same arithmetic as :func:`~m3l.io.images.read_image`, so a cached run draws the same batches as an uncached one), and
the pages live once in the OS page cache whatever the number of workers and ranks: memory per process stays flat
whatever the set's size.

Why a numpy memory map and not LMDB or litdata: a memory map needs no new dependency and no serialisation (a
crop is a strided view of the map, no per-record decode or copy of the whole image), every process shares the
same pages, and the format is two files any tool can read. LMDB stores opaque values (each read copies the
whole image, or needs a codec again) and adds a C dependency; litdata's optimized format is chunked for
streaming from object stores and decodes per item, which suits sequential reads, not random crops of large
images.

Safety: the cache lives in ``<data.cache_dir>/<kind>-<hash of the set's folder and decode settings>/``
(``data.cache_dir`` defaults to ``$M3L_CACHE/pixels``, else ``$XDG_CACHE_HOME/m3l/pixels``, else
``~/.cache/m3l/pixels``; on a cluster, node-local scratch). Its key covers every file's path, size and mtime and
the decode settings (channels, the format, Pillow's and PyAV's versions, the decoding code), so a changed, added or
removed file rebuilds it (in place). A build takes an exclusive ``flock`` on ``.<name>.lock`` beside it (readers a
shared one), writes into a temporary folder, writes the manifest last and renames the folder into place: two ranks
or jobs racing build it once, and a killed build leaves only a temporary folder, removed by the next build. A cache whose manifest is missing, unreadable,
of another key or whose pixel file has the wrong size is rebuilt, never used. A full disk stops the build with
one line (:class:`~m3l.errors.M3LError`) and leaves no cache behind. Lightning's ``prepare_data`` (once per node)
builds it; ``setup`` opens it (and builds it if it is missing, under the same lock).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import mmap
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3l.io.atomic import discard, remove_temporaries, temporary
from m3l.errors import M3LError, shown

FORMAT = 1
MANIFEST = "manifest.json"
PIXELS = "pixels.bin"
ALIGN = 64  # every array starts at a multiple of 64 bytes
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int32": np.int32}  # what a manifest may name, nothing else
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Item:
    """One array of a cache: an image (``files`` holds it), a clip's frames stacked (``clip``: the frame images
    in order) or a video file decoded whole (``video``); ``name`` names it in messages."""

    files: tuple[Path, ...]
    name: str
    clip: bool = False
    video: bool = False


DEFAULT_DIR: Path | None = None  # replaces the default folder below (the test suite's temp folder)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``data.cache_dir``, else ``$M3L_CACHE/pixels``, else ``$XDG_CACHE_HOME/m3l/pixels``, else ``~/.cache/m3l/pixels``."""
    from m3l.data.embedded import cache_dir as m3l_cache

    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    return (DEFAULT_DIR or m3l_cache() / "pixels").absolute()


def human(size: float) -> str:
    """``1.2 GB``, ``340 MB``, ``12 kB`` (powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def _stat(path: Path) -> list:
    try:
        st = path.stat()
    except OSError as error:
        raise M3LError(f"{shown(path)}: cannot read it ({error.strerror})") from None
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]  # abspath: no system call per file (8,000 files)


def decoder() -> str:
    """What decodes the pixels: Pillow's version (JPEG decoders differ between releases), PyAV's for videos, and
    the source of :func:`m3l.io.images.decode_image`, so that a cache never outlives a change in decoding."""
    import inspect
    from importlib.metadata import PackageNotFoundError, version

    from m3l.io import images

    versions = []
    for package in ("pillow", "av"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    source = inspect.getsource(images.decode_image) + inspect.getsource(images.to_float)
    return "; ".join(versions) + "; decode_image " + hashlib.sha256(source.encode()).hexdigest()[:12]


def cache_key(items: Sequence[Item], channels: int, kind: str) -> str:
    """The key of a set: the path, size and mtime of every file, the layout of the items, the decode settings and
    the decoder (:func:`decoder`)."""
    record = {"format": FORMAT, "kind": kind, "channels": channels, "decoder": decoder(),
              "items": [[item.clip, item.video, [_stat(f) for f in item.files]] for item in items]}
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()


class PixelCache(Sequence):
    """The arrays of a built cache, read-only views of its memory-mapped pixel file (``cache[i]`` is ``(C, H, W)``,
    a clip ``(T, C, H, W)``). Pickles as its folder and manifest (a spawned worker maps the file again)."""

    def __init__(self, folder: Path, manifest: dict, built: bool = False):
        self.folder, self.manifest, self.built = Path(folder), manifest, built
        self.shapes = [tuple(e["shape"]) for e in manifest["entries"]]
        self.names = [e["name"] for e in manifest["entries"]]
        self.nbytes = int(manifest["bytes"])
        self._views: list[np.ndarray] | None = None

    def open(self) -> PixelCache:
        """Map the pixel file (done once, on first use; cheap: nothing is read until a crop is cut)."""
        if self._views is None:
            with open(self.folder / PIXELS, "rb") as f:
                if os.fstat(f.fileno()).st_size != self.nbytes:
                    raise M3LError(f"{self.folder}: the pixel cache changed while in use; rerun to rebuild it")
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._views = [np.frombuffer(mapped, DTYPES[e["dtype"]], int(np.prod(e["shape"])), e["offset"])
                           .reshape(e["shape"]) for e in self.manifest["entries"]]
        return self

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.open()._views[index]

    @property
    def pixels(self) -> int:
        """Pixels of the set (a clip's frames counted), per channel."""
        return sum(int(np.prod(s[:-3])) * s[-2] * s[-1] for s in self.shapes)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_views": None}


# -- building ---------------------------------------------------------------------------------------------
def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_array(f, array: np.ndarray) -> None:
    """Append an array's bytes to the pixel file (a function of its own, so that tests can make the disk full)."""
    f.write(memoryview(np.ascontiguousarray(array)).cast("B"))


def _estimate(item: Item, channels: int) -> int:
    """Bytes an item will take, from the image headers (0 for a video: not known before decoding)."""
    from PIL import Image

    if item.video:
        return 0
    total = 0
    for path in item.files:
        try:
            with Image.open(path) as img:
                width, height, mode = img.width, img.height, img.mode
        except Exception:  # noqa: BLE001 - a bad file is reported, with its name, when it is decoded
            continue
        size = 2 if mode.startswith("I;16") else 4 if mode == "I" else 1
        total += width * height * channels * size
    return total


def _frames(item: Item, channels: int, what: str) -> Iterator[np.ndarray]:
    """The item's decoded ``(C, H, W)`` arrays, one at a time (a video's frames as uint8, as training reads them)."""
    from m3l.io.images import decode_image

    if item.video:
        import torch

        from m3l.io.clips import Clip, iter_frames

        try:
            for _, frame in iter_frames(Clip(item.files[0], item.name), channels):
                yield frame.mul(255).round().to(torch.uint8).numpy()  # as the uncached FrameSource keeps them
        except Exception as error:  # PyAV raises several types for bad files
            first = (str(error).splitlines() or [""])[0]
            raise M3LError(f"{what}: {shown(item.files[0])}: cannot decode it as a video ({type(error).__name__}: "
                           f"{first}); remove or replace it") from None
        return
    for path in item.files:
        try:
            array = decode_image(path, channels)
        except Exception as error:  # Pillow raises several types for bad files
            first = (str(error).splitlines() or [""])[0]
            raise M3LError(f"{what}: {shown(path)}: cannot read it as an image ({type(error).__name__}: {first}); "
                           f"remove or replace it") from None
        yield array


class _Progress:
    """A bar on a terminal; otherwise, once the build has taken 5 s, a line at every tenth of the way (or 30 s)."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.start = total, label, 0, time.monotonic()
        self.bar, self.last_line, self.last_fraction = None, self.start, 0.0
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="file", file=sys.stderr, leave=False)

    def update(self, nbytes: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update()
            return
        now, fraction = time.monotonic(), self.done / self.total
        if self.done < self.total and now - self.start >= 5 and (fraction - self.last_fraction >= 0.1
                                                                   or now - self.last_line >= 30):
            _log(f"{self.label}: {self.done}/{self.total} decoded ({human(nbytes)}, {now - self.start:.0f} s)")
            self.last_line, self.last_fraction = now, fraction

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _build(tmp: Path, items: Sequence[Item], channels: int, what: str, aligned: int, manifest: dict) -> dict:
    """Decode ``items`` into ``tmp/pixels.bin`` and write the manifest last; returns the manifest."""
    entries, offset = [], 0
    progress = _Progress(len(items), f"data cache: decoding {what}")
    try:
        with open(tmp / PIXELS, "wb") as f:
            for index, item in enumerate(items):
                first, count = None, 0
                for frame in _frames(item, channels, what):
                    if first is None:
                        first = frame
                    elif frame.shape != first.shape or frame.dtype != first.dtype:
                        raise M3LError(f"{what}: {shown(item.name)}: frames of different sizes or bit depths "
                                       f"({first.shape} {first.dtype}, then {frame.shape} {frame.dtype})")
                    _write_array(f, frame)
                    count += 1
                if first is None:
                    raise M3LError(f"{what}: {shown(item.name)}: no frames")
                shape = [count, *first.shape] if item.clip or item.video else list(first.shape)
                entries.append({"name": item.name, "offset": offset, "shape": shape, "dtype": first.dtype.name})
                if aligned > 1 and index % aligned:
                    head = index - index % aligned
                    if entries[head]["shape"] != shape:
                        raise M3LError(f"{shown(items[head].files[0])} and {shown(item.files[0])} differ in size: "
                                       f"{tuple(entries[head]['shape'])} vs {tuple(shape)}")
                offset += count * first.nbytes
                pad = -offset % ALIGN
                f.write(b"\0" * pad)
                offset += pad
                progress.update(offset)
            f.flush()
            os.fsync(f.fileno())
    finally:
        progress.close()
    manifest = {**manifest, "bytes": offset, "entries": entries}
    with open(tmp / MANIFEST, "w") as f:  # last: a folder without it is no cache
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())
    return manifest


def _load(folder: Path, key: str) -> tuple[PixelCache | None, str]:
    """The cache in ``folder`` if it is complete and of ``key``; else None and why not."""
    if not folder.exists():
        return None, "absent"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        size = (folder / PIXELS).stat().st_size
    except (OSError, ValueError) as error:
        return None, f"incomplete ({type(error).__name__})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("key") != key:
        return None, "of other files or settings"
    try:
        total = int(manifest["bytes"])
        for e in manifest["entries"]:
            end = int(e["offset"]) + int(np.prod(e["shape"])) * np.dtype(DTYPES[e["dtype"]]).itemsize
            if int(e["offset"]) < 0 or end > total or len(e["shape"]) not in (3, 4):
                raise ValueError(e)
    except (KeyError, TypeError, ValueError):
        return None, "damaged (bad manifest)"
    if size != total:
        return None, f"damaged (pixel file of {size} bytes, {total} expected)"
    return PixelCache(folder, manifest), ""


@contextmanager
def _locked(path: Path, exclusive: bool, waiting: str | None = None) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                _log(waiting)
            fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure(items: Sequence[Item], channels: int, kind: str, label: str, cache_dir=None, what: str = "data.train_dir",
           aligned: int = 1, log: Callable[[str], None] = _log) -> PixelCache:
    """The cache of ``items`` (decoded with ``channels``), built now if it is missing, stale or damaged.

    ``kind`` (``images``, ``pairs``, ``clips``) and ``label`` (the set's folder) name the cache's folder, so a
    changed set replaces its own cache; ``aligned=2``: items ``2i`` and ``2i + 1`` (a pair) must have the same
    shape. The returned cache's ``built`` says whether this call built it.
    """
    root = cache_root(cache_dir)
    key = cache_key(items, channels, kind)
    name = f"{kind}-{hashlib.sha256(json.dumps([kind, channels, str(label)]).encode()).hexdigest()[:16]}"
    folder = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = root / f".{name}.lock"
        with _locked(lock, exclusive=False):
            cache, _ = _load(folder, key)
            if cache is not None:
                return cache.open()  # mapped under the lock: a rebuild later cannot pull the file away
        with _locked(lock, exclusive=True, waiting=f"data cache: waiting for another process building {folder}"):
            cache, reason = _load(folder, key)
            if cache is not None:
                return cache.open()
            if reason != "absent":
                log(f"data cache: {folder} is {reason}: rebuilding it")
            remove_temporaries([folder])  # what killed builds left (we hold the lock: no build is running)
            need = sum(_estimate(item, channels) for item in items)
            free = shutil.disk_usage(root).free
            if need > free:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root))
            tmp = temporary(folder, folder=True)
            start = time.monotonic()
            try:
                manifest = _build(tmp, items, channels, what, aligned,
                                  {"format": FORMAT, "key": key, "kind": kind, "label": str(label),
                                   "channels": channels, "decoder": decoder(), "created": time.strftime("%Y-%m-%d %H:%M:%S")})
                if folder.exists():
                    discard(folder)
                os.replace(tmp, folder)
            except BaseException:
                discard(tmp)
                raise
            cache = PixelCache(folder, manifest, built=True).open()
            log(f"data cache: {len(items)} {'files' if kind != 'clips' else 'clips'} of {what} decoded in "
                f"{time.monotonic() - start:.0f} s into {folder} ({human(cache.nbytes)})")
            return cache
    except OSError as error:
        if error.errno in DISK_FULL:
            estimate = sum(_estimate(item, channels) for item in items)
            raise M3LError(f"data.cache_dir: no space left on {root} for the decoded {what} (about "
                           f"{human(estimate)}): free space, set data.cache_dir=<a folder with room> or "
                           f"data.cache=false; no cache was left behind") from None
        raise M3LError(f"data.cache_dir: cannot write the pixel cache in {root} ({error.strerror or error}): set "
                       f"data.cache_dir=<a writable folder> or data.cache=false") from None


def summary(cache: PixelCache, what: str, count: int, unit: str) -> list[str]:
    """The lines a data module prints at the start of training: the set's size, the cache's size on disk and
    where it is, and the memory to expect."""
    state = f"built {cache.manifest.get('created', '')}".strip()
    return [f"{what}: {count} {unit}, {cache.pixels / 1e9:.2f} gigapixels; decoded-pixel cache {human(cache.nbytes)} "
            f"on disk at {cache.folder} ({state})",
            f"data memory: crops are cut from the memory-mapped cache; its pages (up to {human(cache.nbytes)}, as "
            f"they are read) are shared by every rank and worker of the node through the OS page cache, and each "
            f"process holds only its batches"]
