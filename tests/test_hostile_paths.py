"""Hostile paths and files around the weights (issue 18, part B): each bad input through the real command, in a
temporary folder, is one line on stderr naming the file or key (exit status 2, no traceback), writes nothing
outside the output folder and leaves the inputs byte-identical.

Covered: correct_dir and root_dir that overlap, inputs that would share an output, a symbolic link that would send
outputs out of root_dir, empty paths, non-UTF-8 file names, an image too large for memory, atomic checkpoints and
resume=auto past a cut last.ckpt, replay of a shared run.yaml, score's decompression bomb and crop_border, 16-bit
PGM, unreadable images in test and validation sets, logger=null, and the workflow's names, quoting and budgets.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, TINY, write_images

QUIET = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def one_line(result, *needles: str) -> str:
    """The one ``m3l ...`` line of a refused run (exit status 2, no traceback), holding every needle."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("m3l ")]
    assert len(lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path, *skip: str) -> dict[str, bytes]:
    """Every file under ``folder`` (but the folders named in ``skip``) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and not p.relative_to(folder).parts[0] in skip}


# -- correct: where inputs and outputs are (items 6-8) ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("source, root, problem", [
    ("in", "in", "are the same folder"),
    ("in", "in/out", "the output folder is inside the input folder"),
    ("work/in", "work", "the input folder is inside the output folder"),
    ("in/a.png", "in", "would write the corrected image over the original"),
])
def test_correct_dir_and_root_dir_must_be_apart(run_m3l, tmp_path, source, root, problem):
    write_images(tmp_path / "in", {"a.png": (16, 16), "sub/b.png": (16, 16)})
    write_images(tmp_path / "work" / "in", {"a.png": (16, 16)})
    before = snapshot(tmp_path)
    result = run_m3l("correct", "model=identity", f"data.correct_dir={source}", f"serializer.root_dir={root}",
                     "serializer.overwrite=true", "hydra.run.dir=run", *QUIET, check=False)
    one_line(result, f"data.correct_dir={source}", f"serializer.root_dir={root}", problem)
    assert snapshot(tmp_path, "run") == before  # nothing replaced, nothing added


@pytest.mark.slow
def test_inputs_that_differ_only_by_extension_are_refused_up_front(run_m3l, tmp_path):
    write_images(tmp_path / "in", {"a.png": (16, 16), "a.jpg": (16, 16), "sub/b.png": (16, 16),
                                   "sub/b.PNG": (16, 16), "c.png": (16, 16)})
    before = snapshot(tmp_path)
    result = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out",
                     "hydra.run.dir=run", *QUIET, check=False)
    one_line(result, "data.correct_dir: ", "a.jpg and a.png", "sub/b.PNG and sub/b.png", "written to the same a.png")
    assert not (tmp_path / "out").exists()  # refused before anything was corrected
    assert snapshot(tmp_path, "run") == before


def test_clips_that_differ_only_by_extension_are_refused(tmp_path):
    from m3l.errors import M3LError
    from m3l.io.video_serializer import VideoSerializer

    serializer = VideoSerializer(str(tmp_path / "out"))
    with pytest.raises(M3LError, match=r"a\.mp4 and a\.avi would be written to the same a\.mkv"):
        serializer.pending(["a.mp4", "a.avi", "frames"])
    assert serializer.pending(["a.mp4", "frames", "frames.mp4"]) == ["a.mp4", "frames", "frames.mp4"]


@pytest.mark.slow
def test_a_symbolic_link_inside_root_dir_cannot_send_outputs_outside(run_m3l, tmp_path):
    write_images(tmp_path / "in", {"sub/x.png": (16, 16), "y.png": (16, 16)})
    (tmp_path / "outside").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "outside")
    before = snapshot(tmp_path)
    result = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out",
                     "hydra.run.dir=run", *QUIET, check=False)
    one_line(result, "serializer.root_dir: out/sub leads outside out", "x.png")
    assert list((tmp_path / "outside").iterdir()) == []
    assert snapshot(tmp_path, "run") == before


def test_outputs_are_checked_again_just_before_each_write(tmp_path):
    """A link made after the up-front check (while correcting) is caught when the image is written."""
    from m3l.errors import M3LError
    from m3l.io.serializer import ImageSerializer

    serializer = ImageSerializer(str(tmp_path / "out"))
    assert serializer.pending(["sub/x.png"]) == ["sub/x.png"]
    (tmp_path / "out").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(M3LError, match="leads outside"):
        serializer.write_on_batch_end(None, None, torch.zeros(1, 1, 4, 4), None, {"path": ["sub/x.png"]}, 0)
    assert list((tmp_path / "outside").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("key", ["serializer.root_dir", "data.correct_dir"])
def test_an_empty_path_is_an_error_not_the_current_folder(run_m3l, tmp_path, key):
    write_images(tmp_path / "in", {"a.png": (16, 16)})
    paths = {"data.correct_dir": "in", "serializer.root_dir": "out", key: ""}
    before = snapshot(tmp_path)
    result = run_m3l("correct", "model=identity", *[f"{k}={v}" for k, v in paths.items()], "hydra.run.dir=run",
                     *QUIET, check=False)
    one_line(result, f"{key} is empty")
    assert snapshot(tmp_path, "run") == before


@pytest.mark.slow
def test_file_names_that_are_not_utf8_are_shown_escaped_without_a_logging_traceback(run_m3l, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    try:
        good = os.path.join(os.fsencode(folder), b"bad\xff.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.fsdecode(good))
        with open(os.path.join(os.fsencode(folder), b"junk\xfe.png"), "wb") as f:
            f.write(b"not an image")
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    result = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out",
                     "hydra.run.dir=run", *QUIET)
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "skipped 1 unreadable: junk\\xfe.png" in result.stdout
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b".m3l_correct.yaml", b"bad\xff.png"]


@pytest.mark.slow
def test_an_image_too_large_for_memory_says_to_use_tile(m3l_env, tmp_path):
    """Under a 3 GiB address-space limit a 9000x9000 image does not fit through the net: one line naming it and
    tile=, instead of torch's allocator traceback."""
    from m3l.models.dncnn import DnCNN

    torch.save(DnCNN(channels=1, depth=3, width=8).state_dict(), tmp_path / "weights.pth")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((9000, 9000), 128, np.uint8)).save(tmp_path / "in" / "huge.png")
    limit = 3 << 30

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "m3l.run.correct", "model=dncnn", "net.depth=3", "net.width=8",
                             "checkpoint=weights.pth", "data.correct_dir=in", "serializer.root_dir=out",
                             "hydra.run.dir=run", *QUIET], cwd=tmp_path, env=m3l_env, preexec_fn=limited,
                            capture_output=True, text=True, timeout=600)
    one_line(result, "huge.png does not fit in memory", "pass tile=")
    assert list((tmp_path / "out").glob("*")) == []


# -- checkpoints (item 9) -----------------------------------------------------------------------------

def test_a_checkpoint_save_that_fails_keeps_the_earlier_checkpoint_and_names_it(tmp_path, monkeypatch):
    import m3l.engine.callbacks
    from m3l.engine.callbacks import AtomicCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(3)}}, target)
    earlier = target.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(m3l.engine.callbacks.os, "fsync", full_disk)
    with pytest.raises(OSError) as failure:
        writer.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(1000)}}, target)
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(target)
    assert target.read_bytes() == earlier
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary file left
    assert torch.load(target, weights_only=True)["epoch"] == 1


def test_train_saves_through_the_atomic_writer():
    from pytorch_lightning import Trainer

    from m3l.engine.callbacks import AtomicCheckpointIO, use_atomic_checkpoints

    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    use_atomic_checkpoints(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.slow
def test_resume_auto_skips_a_cut_last_checkpoint_and_a_bad_resume_file_is_one_line(run_m3l, tmp_path):
    tiny = [o for o in TINY if not o.startswith("data.patches_per_epoch")] + ["data.patches_per_epoch=16"]
    run_m3l("train", "model=dncnn", *tiny, "hydra.run.dir=run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:3000])  # what a full disk left before checkpoints were atomic

    resumed = run_m3l("train", "model=dncnn", *tiny, "trainer.max_epochs=2", "resume=auto", "hydra.run.dir=run")
    assert f"resume=auto: skipping {last}: it does not load" in resumed.stdout
    assert f"resume=auto: continuing from {tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}" in resumed.stdout
    assert "Traceback" not in resumed.stderr
    assert torch.load(last, weights_only=True)["epoch"] == 1  # the continued run's last epoch, whole again

    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 64)
    torch.save({"state_dict": {"net.layers.0.weight": torch.zeros(1)}}, tmp_path / "weights.pth")
    before = snapshot(tmp_path)
    for bad, problem in (("junk.ckpt", "is not a PyTorch checkpoint"), ("weights.pth", "holds weights only")):
        result = run_m3l("train", "model=dncnn", *tiny, f"resume={bad}", f"hydra.run.dir=bad_{bad}", check=False)
        one_line(result, f"resume: {bad}: ", problem)
    assert snapshot(tmp_path, "bad_junk.ckpt", "bad_weights.pth") == before


# -- replay (item 11) ---------------------------------------------------------------------------------

def replay(m3l_env, folder: Path, command, *args: str, answer: str = "") -> subprocess.CompletedProcess:
    (folder / "run.yaml").write_text(yaml.safe_dump({"command": command}))
    return subprocess.run([sys.executable, "-m", "m3l.run.replay", str(folder / "run.yaml"), *args], cwd=folder,
                          env=m3l_env, input=answer, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [
    "sh -c 'touch marker'",
    "python -c 'open(\"marker\", \"w\")'",
    "python -m m3l.run.replay run.yaml",
    "python -m os.marker",
    ["python", "-m", "m3l.run.test"],
])
def test_replay_runs_nothing_but_m3l_commands(m3l_env, tmp_path, command):
    result = replay(m3l_env, tmp_path, command, "--yes")
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("m3l replay")]
    assert line.startswith(f"m3l replay: error: {tmp_path / 'run.yaml'}: not replayed: ")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]  # no marker, nothing run


def test_replay_shows_the_command_and_its_code_choices_and_asks(m3l_env, tmp_path):
    command = "python -m m3l.run.test model=identity ++hydra.callbacks.x._target_=os.getcwd"
    result = replay(m3l_env, tmp_path, command, answer="n\n")
    assert result.returncode == 1, result.stderr
    assert f"m3l replay: {command}" in result.stderr
    assert "these overrides choose code to run: ++hydra.callbacks.x._target_=os.getcwd" in result.stderr
    assert "? [y/N]" in result.stderr and "not run" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]
    unanswered = replay(m3l_env, tmp_path, command)  # no terminal, no answer: not run
    assert unanswered.returncode == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


# -- score (low) and 16-bit PGM (item 12) --------------------------------------------------------------

def png_declaring(path: Path, width: int, height: int) -> None:
    """A small PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
                     + chunk(b"IEND", b""))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bomb", "crop_border", "negative crop_border"])
def test_score_refuses_a_bomb_and_a_crop_border_that_leaves_nothing(run_m3l, tmp_path, case):
    write_images(tmp_path / "clean", {"a.png": (12, 10)})
    write_images(tmp_path / "restored", {"a.png": (12, 10)}, seed=1)
    overrides, needles = [], []
    if case == "bomb":
        png_declaring(tmp_path / "restored" / "a.png", 60000, 60000)
        needles = [str(Path("restored") / "a.png"), "refused", "decompression bomb"]
    elif case == "crop_border":
        overrides, needles = ["metrics.crop_border=5"], ["metrics.crop_border=5 leaves nothing", "at most 4"]
    else:
        overrides, needles = ["metrics.crop_border=-1"], ["metrics.crop_border: -1"]
    before = snapshot(tmp_path)
    result = run_m3l("score", "clean_dir=clean", "restored_dir=restored", *overrides, "hydra.run.dir=run",
                     check=False)
    one_line(result, *needles)
    assert snapshot(tmp_path, "run") == before
    assert not list((tmp_path / "run").glob("*.csv"))


def sixteen_bit_pgm(path: Path, values: np.ndarray) -> None:
    path.write_bytes(f"P5\n{values.shape[1]} {values.shape[0]}\n65535\n".encode() + values.astype(">u2").tobytes())


def test_a_16_bit_pgm_reads_as_16_bit():
    from m3l.io.images import read_image

    ramp = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"m3l_ramp_{os.getpid()}.pgm"
    try:
        sixteen_bit_pgm(path, ramp)
        assert Image.open(path).mode == "I"  # what Pillow makes of it: its 32-bit mode, values 0-65535
        image = read_image(path)
    finally:
        path.unlink(missing_ok=True)
    np.testing.assert_allclose(image[0].numpy(), ramp / 65535.0, atol=1e-6)


@pytest.mark.slow
def test_score_of_a_16_bit_pgm_against_its_8_bit_png(run_m3l, tmp_path):
    ramp = np.random.default_rng(0).integers(0, 65536, (24, 32)).astype(np.uint16)
    (tmp_path / "clean").mkdir()
    (tmp_path / "restored").mkdir()
    sixteen_bit_pgm(tmp_path / "clean" / "a.pgm", ramp)
    Image.fromarray(np.round(ramp / 257.0).astype(np.uint8)).save(tmp_path / "restored" / "a.png")
    run_m3l("score", "clean_dir=clean", "restored_dir=restored", "hydra.run.dir=run")
    psnr = float(np.loadtxt(tmp_path / "run" / "metrics.csv", delimiter=",", skiprows=1, usecols=3, dtype=str))
    assert psnr > 50, psnr  # 8-bit rounding only (was about 5 dB: the PGM read as black)


# -- unreadable images in data sets, logger=null (low) --------------------------------------------------

@pytest.mark.slow
def test_an_unreadable_test_image_is_one_line_naming_it(run_m3l, tmp_path):
    write_images(tmp_path / "set", {"ok.png": (16, 16)})
    (tmp_path / "set" / "junk.png").write_bytes(b"not an image")
    before = snapshot(tmp_path)
    result = run_m3l("test", "model=identity", "data.test_sets={s:set}", "data.num_workers=1",
                     "trainer.enable_progress_bar=false", "hydra.run.dir=run", check=False)
    one_line(result, "junk.png: cannot read it as an image")  # read in a DataLoader worker process
    assert snapshot(tmp_path, "run") == before


@pytest.mark.slow
@pytest.mark.parametrize("key", ["data.val_dir", "data.train_dir"])
def test_an_unreadable_training_or_validation_image_is_one_line_naming_it(run_m3l, tmp_path, key):
    write_images(tmp_path / "set", {"ok.png": (48, 48)})
    (tmp_path / "set" / "empty.png").write_bytes(b"")
    result = run_m3l("train", "model=dncnn", *TINY, f"{key}=set", "data.cache=false", "hydra.run.dir=run",
                     check=False)
    one_line(result, "empty.png: cannot read it as an image")


@pytest.mark.slow
def test_logger_null_as_the_readme_says(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "logger=null", "hydra.run.dir=run")
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "csv").exists()


# -- the workflow (item 10) ---------------------------------------------------------------------------

@pytest.mark.parametrize("where, name", [("models", ".."), ("models", ".hidden"), ("test_sets", ".."),
                                         ("test_sets", ".")])
def test_workflow_names_that_are_no_plain_folder_name_are_refused(m3l_env, tmp_path, where, name):
    from test_workflow import snakemake, workflow_config

    models = {name: {"model": "dncnn"}} if where == "models" else {"m": {"model": "dncnn"}}
    settings = {"test_sets": {name: str(tmp_path)}} if where == "test_sets" else {}
    workflow_config(tmp_path, models, **settings)
    result = snakemake(tmp_path, m3l_env, "--cores", "1", check=False)
    assert result.returncode != 0
    assert f"'{name}' does not match" in result.stderr or "is not valid under any of the given schemas" in \
        result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_workflow_in_a_folder_with_a_space_and_a_raised_budget_continues_training(m3l_env, tmp_path):
    """A checkout at a path with a space trains (every path in the shell commands quoted); raising the budget
    keeps the checkpoints and resume=auto continues from them instead of starting over."""
    from test_workflow import workflow_config

    checkout = tmp_path / "my checkout"
    shutil.copytree(REPO / "workflow", checkout / "workflow",
                    ignore=shutil.ignore_patterns(".snakemake", "__pycache__", "results"))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "workflow" / "Snakefile"),
               "--directory", str(checkout), "--configfile", str(checkout / "config.yaml"),
               "--replace-workflow-config", "--cores", "2", "results/m/model.ckpt"]
    short = ["trainer.max_epochs=1", "data.patches_per_epoch=16"]
    workflow_config(checkout, {"m": {"model": "dncnn", "train": short}})
    first = subprocess.run(command, cwd=checkout, env=m3l_env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    last = checkout / "results/m/train/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    workflow_config(checkout, {"m": {"model": "dncnn", "train": [*short, "trainer.max_epochs=2"]}})
    second = subprocess.run(command, cwd=checkout, env=m3l_env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "settings changed since the last run" not in second.stdout + second.stderr
    log = (checkout / "results/m/train/console.log").read_text()
    assert "resume=auto: continuing from" in log and "last.ckpt" in log
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert (checkout / "results/m/model.ckpt").is_file()


def test_a_file_where_the_run_folder_goes_is_one_line(run_m3l, tmp_path):
    """Hydra makes the run folder and writes .hydra/ in it before m3l runs: m3l checks the folder first."""
    (tmp_path / "taken").write_text("a file, not a folder")
    result = run_m3l("train", "model=dncnn", *TINY, "hydra.run.dir=taken/run", check=False)
    one_line(result, "hydra.run.dir:", "taken is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
