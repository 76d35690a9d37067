"""The decoded-pixel cache (m3l/data/cache.py): built once however many processes race, keyed on the files,
never used half-built, a full disk in one line, and the same patches and batches as decoding the images."""

import errno
import hashlib
import multiprocessing
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, write_images
from m3l.data import cache
from m3l.data.image_folders import ImageFolderDataModule
from m3l.data.paired_folders import PairedFolderDataModule
from m3l.data.video_folders import VideoFolderDataModule
from m3l.errors import M3LError
from m3l.io.images import read_image, to_float


def images(folder: Path, count: int = 4, mode: str = "L", seed: int = 0) -> list[Path]:
    return write_images(folder, {f"im{i}.png": (48 + 4 * i, 40) for i in range(count)}, mode=mode, seed=seed)


def items(files) -> list[cache.Item]:
    return [cache.Item((Path(f),), str(f)) for f in files]


def build(files, root, channels: int = 1) -> cache.PixelCache:
    return cache.ensure(items(files), channels, "images", "set", root)


def folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def digest(pixels) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in pixels)).hexdigest()


def _race(train_dir, cache_dir, barrier, results):
    data = ImageFolderDataModule(train_dir=train_dir, cache_dir=cache_dir, num_workers=0, patch_size=16)
    barrier.wait()
    data.prepare_data()  # both processes at once: one builds, the other waits on the lock and reuses it
    data.setup("fit")
    results.put(digest(data.train_set.images))


def test_two_processes_racing_build_the_cache_once_and_read_the_same_pixels(tmp_path, monkeypatch):
    files = images(tmp_path / "train", count=6)
    log = tmp_path / "builds.log"
    build_once = cache._build

    def counted(*args, **kwargs):  # slow enough that the second process arrives mid-build
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        original = cache._write_array

        def slow(f, array):
            original(f, array)
            __import__("time").sleep(0.05)

        cache._write_array = slow
        try:
            return build_once(*args, **kwargs)
        finally:
            cache._write_array = original

    monkeypatch.setattr(cache, "_build", counted)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path / "train"), str(tmp_path / "c"), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    digests = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(log.read_text().split()) == 1  # exactly one build
    expected = hashlib.sha256(b"".join((read_image(f) * 255).round().to(torch.uint8).numpy().tobytes()
                                       for f in files)).hexdigest()
    assert digests == [expected, expected]
    assert len(folders(tmp_path / "c")) == 1


def test_a_changed_or_added_file_rebuilds_the_cache_in_place(tmp_path, monkeypatch):
    files = images(tmp_path / "train")
    root = tmp_path / "c"
    first = build(files, root)
    assert first.built and not build(files, root).built  # unchanged: reused
    # the same size and a new mtime: the key sees it
    Image.fromarray(np.full((40, 48), 7, np.uint8)).save(files[0])
    os.utime(files[0], ns=(files[0].stat().st_atime_ns, files[0].stat().st_mtime_ns + 10**9))
    second = build(files, root)
    assert second.built and (second[0] == 7).all()
    files += write_images(tmp_path / "train", {"new.png": (50, 41)}, seed=3)
    third = build(files, root)
    assert third.built and len(third) == 5 and third.shapes[-1] == (1, 41, 50)
    assert len(folders(root)) == 1  # replaced, not piled up
    # other decode settings are another key, and so is another decoder (a Pillow upgrade, a change of decode_image)
    assert build(files, root, channels=3).built and not build(files, root, channels=3).built
    decoder = cache.decoder()
    monkeypatch.setattr(cache, "decoder", lambda: decoder + " changed")
    assert build(files, root, channels=3).built


def test_a_truncated_or_damaged_cache_is_rebuilt_never_used(tmp_path):
    files = images(tmp_path / "train")
    root = tmp_path / "c"
    folder = build(files, root).folder
    expected = digest(build(files, root))
    pixels = folder / cache.PIXELS
    with open(pixels, "r+b") as f:
        f.truncate(pixels.stat().st_size - 100)
    again = build(files, root)
    assert again.built and digest(again) == expected
    (folder / cache.MANIFEST).write_text('{"format": 1, "key": "')  # a manifest cut short
    assert build(files, root).built
    (folder / cache.MANIFEST).unlink()  # a folder without its manifest is half-built
    assert build(files, root).built
    killed = root / f".{folder.name}.abcdefgh.tmp"  # what a killed build leaves
    killed.mkdir()
    shutil.rmtree(folder)
    assert build(files, root).built and not killed.exists()


def test_a_full_disk_leaves_no_cache_and_says_so_in_one_line(tmp_path, monkeypatch):
    files = images(tmp_path / "train")
    root = tmp_path / "c"
    writes = []

    def full(f, array):
        writes.append(array.nbytes)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write(array.tobytes())

    monkeypatch.setattr(cache, "_write_array", full)
    data = ImageFolderDataModule(train_dir=str(tmp_path / "train"), cache_dir=str(root), num_workers=0)
    with pytest.raises(M3LError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "\n" not in message and "no space left" in message and "data.cache_dir" in message
    assert [p.name for p in root.iterdir()] == [p.name for p in root.glob(".*.lock")]  # nothing but the lock
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10, used=10, free=10))
    with pytest.raises(M3LError, match="no space left"):  # known too small before decoding anything
        data.prepare_data()
    assert len(writes) == 2
    monkeypatch.undo()
    assert build(files, root).built  # room again: built, and used


def test_a_bad_file_stops_the_build_in_one_line_naming_it_and_leaves_no_cache(tmp_path):
    images(tmp_path / "train")
    (tmp_path / "train" / "empty.png").write_bytes(b"")
    data = ImageFolderDataModule(train_dir=str(tmp_path / "train"), cache_dir=str(tmp_path / "c"), num_workers=0)
    with pytest.raises(M3LError, match=r"empty.png: cannot read it as an image") as error:
        data.prepare_data()
    assert "\n" not in str(error.value) and not folders(tmp_path / "c")
    paired_set(tmp_path / "pairs")
    write_images(tmp_path / "pairs", {"S1/sharp/0.png": (30, 30)}, mode="RGB")  # no longer its input's size
    pairs = PairedFolderDataModule(train_dir=str(tmp_path / "pairs"), cache_dir=str(tmp_path / "c"), num_workers=0,
                                   input="/blur/", target="/sharp/")
    with pytest.raises(M3LError, match=r"blur/0.png and .*sharp/0.png differ in size"):
        pairs.prepare_data()
    assert not folders(tmp_path / "c")


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3), ("RGB", 1), ("L", 3), ("I;16", 1), ("I;16", 3)])
def test_crops_from_the_cache_equal_crops_of_the_decoded_image(tmp_path, mode, channels):
    if mode == "I;16":
        rng = np.random.default_rng(0)
        files = []
        for i in range(2):
            files.append(tmp_path / f"d{i}.png")
            Image.fromarray(rng.integers(0, 65536, (37, 45), dtype=np.uint16)).save(files[-1])
    else:
        files = images(tmp_path, count=2, mode=mode)
    pixels = build(files, tmp_path / "c", channels)
    assert pixels[0].dtype == (np.uint16 if mode == "I;16" else np.uint8)
    rng = np.random.default_rng(1)
    for index, path in enumerate(files):
        whole = read_image(path, channels)
        for _ in range(5):
            p = int(rng.integers(1, 30))
            top, left = int(rng.integers(0, whole.shape[1] - p + 1)), int(rng.integers(0, whole.shape[2] - p + 1))
            crop = to_float(pixels[index][:, top:top + p, left:left + p])
            assert crop.dtype == whole.dtype and torch.equal(crop, whole[:, top:top + p, left:left + p])


def paired_set(root: Path) -> dict:
    for seq, seed in (("S1", 0), ("S2", 1)):
        sizes = {f"{seq}/blur/{i}.png": (44 + 4 * i, 38) for i in range(2)}
        write_images(root, sizes, mode="RGB", seed=seed)
        write_images(root, {k.replace("/blur/", "/sharp/"): v for k, v in sizes.items()}, mode="RGB", seed=seed + 5)
    return dict(input="/blur/", target="/sharp/", val_dir=str(root))


def clip_set(root: Path) -> dict:
    for clip in range(2):
        write_images(root / f"clip{clip}", {f"{t:03d}.png": (40, 36) for t in range(7)}, seed=clip)
    return dict(frames=3, crops_per_epoch=12)


def video_set(root: Path) -> dict:
    pytest.importorskip("av")
    from m3l.io.clips import write_clip

    generator = torch.Generator().manual_seed(0)
    for clip in range(2):
        write_clip(torch.rand(6, 1, 36, 40, generator=generator), root / f"clip{clip}.mkv", codec="ffv1")
    return dict(frames=3, crops_per_epoch=12)


@pytest.mark.parametrize("module,make,workers", [(ImageFolderDataModule, lambda root: {}, 0),
                                                 (ImageFolderDataModule, lambda root: {}, 1),
                                                 (PairedFolderDataModule, paired_set, 0),
                                                 (VideoFolderDataModule, clip_set, 0),
                                                 (VideoFolderDataModule, video_set, 0)])
def test_the_same_batches_with_and_without_the_cache_for_the_same_seed(tmp_path, module, make, workers):
    if module is ImageFolderDataModule:
        images(tmp_path / "train", count=3)
    options = make(tmp_path / "train")
    runs = {}
    for cached in (True, False):
        data = module(train_dir=str(tmp_path / "train"), cache=cached, cache_dir=str(tmp_path / "c"), patch_size=16,
                      train_batch_size=4, num_workers=workers, **options)
        data.prepare_data()
        data.setup("fit")
        torch.manual_seed(0)
        runs[cached] = [batch for _, batch in zip(range(3), data.train_dataloader())]
    assert (tmp_path / "c").is_dir() and len(runs[True]) == 3
    for with_cache, without in zip(runs[True], runs[False]):
        assert torch.equal(with_cache["input"], without["input"]) and torch.equal(with_cache["target"], without["target"])


def test_only_fitting_with_a_folder_builds_a_cache(tmp_path):
    images(tmp_path / "train")
    testing = ImageFolderDataModule(train_dir=str(tmp_path / "train"), cache_dir=str(tmp_path / "c"), num_workers=0)
    testing.trainer = SimpleNamespace(state=SimpleNamespace(fn="test"))
    testing.prepare_data()  # m3l.run.test: the training set is not decoded
    assert not (tmp_path / "c").exists()
    ImageFolderDataModule(train_dir=str(tmp_path / "train"), cache=False, cache_dir=str(tmp_path / "c")).prepare_data()
    ImageFolderDataModule(cache_dir=str(tmp_path / "c")).prepare_data()  # the embedded default set
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_two_ddp_ranks_on_cpu_train_from_one_cache(run_m3l, tmp_path):
    images(tmp_path / "train", count=4)
    result = run_m3l("train", "model=dncnn", *TINY, f"data.train_dir={tmp_path / 'train'}", "data.patch_size=24",
                     f"data.cache_dir={tmp_path / 'c'}", "+trainer.strategy=ddp", "trainer.devices=2",
                     "trainer.accelerator=cpu", "hydra.run.dir=run")
    output = result.stdout + result.stderr
    assert "MEMBER: 2/2" in output  # two ranks really ran
    assert output.count("decoded in") == 1, output[-3000:]  # built once, by the node's first rank
    (folder,) = folders(tmp_path / "c")
    assert (folder / cache.MANIFEST).is_file()
    assert "decoded-pixel cache" in output and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
