"""Faults: SIGKILL mid-run then a rerun, a full disk, resumable correction (issue 7).

Runs are real subprocesses killed with SIGKILL at a point the test waits for (never after a guessed
delay): a net that sleeps on each image (``slow_net.SlowIdentity``) keeps a correction busy, and a
``sitecustomize`` hook (``M3L_TEST_SLOW_REPLACE=NAME:SECONDS``) holds the rename that publishes the
file ``NAME``, so the kill lands while its temporary file is complete but not yet renamed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import TINY, write_images

SLOW_NET = '''
import time
from torch import nn


class SlowIdentity(nn.Module):
    """The input, after ``seconds`` of sleep per batch: a correction slow enough to kill half-way."""

    def __init__(self, channels=1, seconds=0.02):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x
'''

SLOW_REPLACE = '''
import os
import time

_setting = os.environ.get("M3L_TEST_SLOW_REPLACE")
if _setting:  # NAME:SECONDS: wait before os.replace publishes a file called NAME
    _name, _seconds = _setting.rsplit(":", 1)
    _replace = os.replace

    def _slow_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _name:
            time.sleep(float(_seconds))
        return _replace(src, dst, *args, **kwargs)

    os.replace = _slow_replace
'''

QUIET = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.fixture
def hooks(tmp_path) -> dict:
    """Environment that makes ``slow_net`` importable and installs the slow-rename hook."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "slow_net.py").write_text(SLOW_NET)
    (lib / "sitecustomize.py").write_text(SLOW_REPLACE)
    return {"PYTHONPATH": str(lib)}


def start(m3l_env, cwd: Path, *command: str, env: dict | None = None) -> subprocess.Popen:
    """A command in its own process group (so that SIGKILL takes its children too)."""
    return subprocess.Popen(command, cwd=cwd, env={**m3l_env, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL ``process`` and its group as soon as ``ready()`` is true; fail if it ends first."""
    deadline = time.time() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the run ended ({process.returncode}) before the kill point:\n"
                            f"{process.stderr.read()[-3000:]}")
            if time.time() > deadline:
                pytest.fail("the kill point never came")
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def stamps(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("m3l ")]
    return line


# -- resumable correction ------------------------------------------------------------------------------

@pytest.mark.slow
def test_correction_killed_half_way_resumes_without_reading_or_rewriting_finished_outputs(
        run_m3l, m3l_env, tmp_path, hooks):
    names = [f"{i:03d}.png" for i in range(150)] + [f"sub/{i:03d}.png" for i in range(50)]
    inputs = write_images(tmp_path / "in", {name: (24, 24) for name in names})
    out = tmp_path / "out"
    slow = ["model=identity", "net._target_=slow_net.SlowIdentity", "+net.seconds=0.02", "data.correct_dir=in",
            "serializer.root_dir=out", *QUIET]
    process = start(m3l_env, tmp_path, sys.executable, "-m", "m3l.run.correct", *slow, "hydra.run.dir=run1",
                    env=hooks)
    kill_when(process, lambda: len(list(out.rglob("*.png"))) >= 100)

    before = stamps(out)
    done = len(before)
    assert 100 <= done < 200, done
    for path in before:  # every output of the killed run is complete
        assert Image.open(path).size == (24, 24)
    # a finished input turned unreadable proves it is not read again; a killed write's leftover goes
    finished_input = next(p for p in inputs if (out / p.relative_to(tmp_path / "in")).exists())
    finished_input.write_bytes(b"not an image any more")
    pending = next(p for p in inputs if not (out / p.relative_to(tmp_path / "in")).exists())
    stale = out / pending.relative_to(tmp_path / "in").parent / f".{pending.name}.killed_1.tmp"
    stale.write_bytes(b"\x89PNG half")

    result = run_m3l("correct", *slow, "net.seconds=0", "hydra.run.dir=run2", env=hooks)
    assert f"wrote {200 - done} images" in result.stdout
    assert f"skipped {done} already done" in result.stdout
    assert "skipping" not in result.stderr  # the unreadable finished input was not read
    assert stamps(out).keys() == {out / name for name in names}
    assert {path: stamps(out)[path] for path in before} == before  # not rewritten
    for path in stamps(out):
        assert Image.open(path).size == (24, 24)
    assert temporaries(out) == []

    again = run_m3l("correct", *slow, "net.seconds=0", "serializer.overwrite=true", "hydra.run.dir=run3", env=hooks)
    assert "wrote 199 images" in again.stdout and "already done" not in again.stdout
    assert "skipped 1 unreadable" in again.stdout
    unreadable = out / finished_input.relative_to(tmp_path / "in")
    assert all(stamps(out)[path] != stamp for path, stamp in before.items() if path != unreadable)


def test_nothing_left_to_correct_is_a_success(run_m3l, tmp_path):
    write_images(tmp_path / "in", {"a.png": (16, 16), "b.png": (16, 16)})
    common = ["model=identity", "data.correct_dir=in", "serializer.root_dir=out", *QUIET]
    run_m3l("correct", *common, "hydra.run.dir=run1")
    result = run_m3l("correct", *common, "hydra.run.dir=run2")
    assert "wrote 0 images" in result.stdout and "skipped 2 already done" in result.stdout


# -- SIGKILL while writing tables ----------------------------------------------------------------------

@pytest.mark.slow
def test_test_run_killed_while_publishing_its_tables_leaves_none_truncated(run_m3l, m3l_env, tmp_path, hooks):
    write_images(tmp_path / "set", {f"{i}.png": (24, 24) for i in range(3)})
    common = ["model=identity", "data.test_sets={s:set}", *QUIET, "hydra.run.dir=run"]
    process = start(m3l_env, tmp_path, sys.executable, "-m", "m3l.run.test", *common,
                    env={**hooks, "M3L_TEST_SLOW_REPLACE": "metrics.csv:60"})
    run = tmp_path / "run"
    kill_when(process, lambda: any(run.glob(".metrics.csv.*.tmp")))
    assert not (run / "metrics.csv").exists()  # absent, not truncated
    assert len(pd.read_csv(run / "per_image.csv")) == 3  # published before: complete

    run_m3l("test", *common)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics[["dataset", "degradation", "n_images"]].values.tolist() == [["s", "sigma25", 3]]
    assert len(pd.read_csv(run / "per_image.csv")) == 3
    assert temporaries(run) == []


@pytest.mark.slow
def test_benchmark_table_rule_killed_mid_write_then_rerun(m3l_env, tmp_path, hooks):
    """The workflow's benchmark rule, with its inputs in place: SIGKILL snakemake while the table's
    temporary file waits for its rename, then Snakemake's recovery (``--unlock``, rerun)."""
    from test_workflow import snakemake, workflow_config

    workflow_config(tmp_path, {"a": {"model": "dncnn"}, "b": {"model": "dncnn"}})
    for model, psnr in (("a", 20.5), ("b", 21.5)):  # a trained and tested model, as far as Snakemake can tell
        (tmp_path / "results" / model).mkdir(parents=True)
        (tmp_path / "results" / model / "model.ckpt").write_bytes(b"weights")
    for model, psnr in (("a", 20.5), ("b", 21.5)):
        pd.DataFrame([{"dataset": "small", "degradation": "sigma25", "n_images": 2, "psnr": psnr, "ssim": 0.5}]).to_csv(
            tmp_path / "results" / model / "metrics.csv", index=False)
        pd.DataFrame([{"dataset": "small", "degradation": "sigma25", "image": "a.png", "psnr": psnr, "ssim": 0.5,
                       "psnr_input": 18.0, "ssim_input": 0.25}]).to_csv(tmp_path / "results" / model / "per_image.csv",
                                                                       index=False)
    from test_workflow import SNAKEFILE

    process = start(m3l_env, tmp_path, sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                    "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                    "--replace-workflow-config", "--cores", "1", "results/benchmark.csv",
                    env={**hooks, "M3L_TEST_SLOW_REPLACE": "benchmark.csv:60"})
    results = tmp_path / "results"
    kill_when(process, lambda: any(results.glob(".benchmark.csv.*.tmp")))
    assert not (results / "benchmark.csv").exists()
    (results / ".benchmark.png.killed_2.tmp").write_bytes(b"\x89PNG half")  # as a kill a moment later leaves

    snakemake(tmp_path, m3l_env, "--unlock")  # SIGKILL leaves Snakemake's lock: its documented recovery
    snakemake(tmp_path, m3l_env, "--cores", "1", "results/benchmark.csv")
    table = pd.read_csv(results / "benchmark.csv")
    assert table.values.tolist() == [["degraded input", 18.0, 0.25], ["a", 20.5, 0.5], ["b", 21.5, 0.5]]
    assert (results / "benchmark.md").read_text().startswith("| model | small/sigma25 |")
    assert temporaries(results) == []


def test_atomic_write_keeps_the_earlier_file_on_error_and_clears_leftovers(tmp_path):
    from m3l.io.atomic import atomic_write, remove_temporaries, temporaries as leftovers

    path = tmp_path / "table.csv"
    path.write_text("complete,earlier\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "complete,earlier\n" and temporaries(tmp_path) == []
    (tmp_path / ".table.csv.abcd_123.tmp").write_text("half")  # what SIGKILL leaves
    (tmp_path / ".other.csv.abcd_123.tmp").write_text("another output's")
    assert leftovers([path]) == [tmp_path / ".table.csv.abcd_123.tmp"]
    assert remove_temporaries([path]) == 1 and temporaries(tmp_path) == [".other.csv.abcd_123.tmp"]
    with atomic_write(path, "w") as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# -- a full disk -----------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted at the end; skipped where mounting is not permitted (needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True,
                       capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a small tmpfs to fill (root and CAP_SYS_ADMIN needed): "
                    f"{getattr(error, 'stderr', '') or error}".strip())
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


def fill(disk: Path) -> None:
    """Fill ``disk`` to the last block."""
    with open(disk / "filler", "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


@pytest.mark.slow
def test_full_disk_while_correcting_names_the_file_and_keeps_earlier_outputs(run_m3l, tmp_path, small_disk):
    write_images(tmp_path / "in", {"a.png": (32, 32), "b.png": (32, 32)})
    common = ["model=identity", "data.correct_dir=in", f"serializer.root_dir={small_disk / 'out'}", *QUIET]
    run_m3l("correct", *common, "hydra.run.dir=run1")
    earlier = {p.name: p.read_bytes() for p in (small_disk / "out").glob("*.png")}
    write_images(tmp_path / "in", {"c.png": (96, 96)}, seed=1)
    fill(small_disk)
    line = one_error_line(run_m3l("correct", *common, "hydra.run.dir=run2", check=False))
    assert line == f"m3l correct: error: cannot write {small_disk / 'out' / 'c.png'}: No space left on device"
    assert {p.name: p.read_bytes() for p in (small_disk / "out").glob("*.png")} == earlier
    assert temporaries(small_disk) == []


@pytest.mark.slow
def test_full_disk_while_writing_test_tables_names_the_file_and_keeps_earlier_tables(run_m3l, tmp_path, small_disk):
    write_images(tmp_path / "set", {f"{i}.png": (24, 24) for i in range(3)})
    common = ["model=identity", "data.test_sets={s:set}", f"metrics_csv={small_disk / 'metrics.csv'}",
              f"per_image_csv={small_disk / 'per_image.csv'}", *QUIET]
    run_m3l("test", *common, "hydra.run.dir=run1")
    earlier = {name: (small_disk / name).read_bytes() for name in ("metrics.csv", "per_image.csv")}
    write_images(tmp_path / "set", {f"more{i}.png": (24, 24) for i in range(30)})  # a longer table
    fill(small_disk)
    line = one_error_line(run_m3l("test", *common, "hydra.run.dir=run2", check=False))
    assert line == f"m3l test: error: cannot write {small_disk / 'per_image.csv'}: No space left on device"
    assert {name: (small_disk / name).read_bytes() for name in earlier} == earlier
    assert temporaries(small_disk) == []


@pytest.mark.slow
def test_full_disk_while_training_is_one_line_and_the_last_checkpoint_loads(m3l_env, tmp_path, small_disk):
    tiny = [o for o in TINY if not o.startswith(("trainer.max_epochs", "data.patches_per_epoch"))]
    process = subprocess.Popen(
        [sys.executable, "-m", "m3l.run.train", "model=dncnn", *tiny, "trainer.max_epochs=50",
         "data.patches_per_epoch=256", f"hydra.run.dir={small_disk / 'run'}"],
        cwd=tmp_path, env=m3l_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = small_disk / "run" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 120
        while not last.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert last.exists(), "training never wrote last.ckpt"
        fill(small_disk)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    line = one_error_line(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    assert line.startswith("m3l train: error: cannot write ") and ": No space left on device;" in line
    assert str(small_disk / "run") in line
    checkpoint = torch.load(last, weights_only=True)  # the last complete checkpoint, intact
    assert checkpoint["epoch"] < 49 and checkpoint["state_dict"]
