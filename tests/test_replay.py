"""Rebuild from the record: a result folder's run.yaml rebuilds the same result in a fresh clone (issue 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, write_images


def test_replay_dry_run_names_what_differs(m3l_env, tmp_path):
    record = {"command": "python -m m3l.run.test model=identity", "git": {"m3l": {"commit": "0" * 40, "dirty": True}},
              "versions": {"torch": "0.0.1"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(record))
    result = subprocess.run([sys.executable, "-m", "m3l.run.replay", str(tmp_path), "--dry-run"], cwd=tmp_path,
                            env=m3l_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"m3l commit: recorded {'0' * 40}, here " in result.stderr
    assert "uncommitted changes" in result.stderr and "torch: recorded 0.0.1, here 2." in result.stderr
    assert "m3l replay: python -m m3l.run.test model=identity" in result.stderr
    assert not (tmp_path / "outputs").exists()  # nothing ran


@pytest.mark.slow
def test_a_result_rebuilds_byte_for_byte_in_a_fresh_clone_at_its_commit(run_m3l, m3l_env, tmp_path, tiny_checkpoint):
    from m3l.run.runinfo import git_state

    state = git_state(REPO)
    if state is None:
        pytest.skip(f"{REPO} is not a git checkout: nothing to clone")
    if state["dirty"]:  # the clone would lack them; replay says so too
        pytest.skip(f"{REPO} has uncommitted changes: a clone at its commit cannot rebuild their results")
    write_images(tmp_path / "set", {f"{i}.png": (40, 32) for i in range(3)})
    (tmp_path / "original").mkdir()
    run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
            f"data.test_sets={{s:'{tmp_path / 'set'}'}}", "data.num_workers=0", "hydra.run.dir=result",
            cwd=tmp_path / "original")
    result = tmp_path / "original" / "result"
    commit = yaml.safe_load((result / "run.yaml").read_text())["git"]["m3l"]["commit"]

    # a fresh clone at the recorded commit, installed in its own environment (the other packages shared)
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)  # the shared pip and setuptools install the clone into it
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-e", str(clone)], check=True, capture_output=True, timeout=300)

    replay = subprocess.run([python, "-m", "m3l.run.replay", str(result / "run.yaml"), "--yes"], cwd=clone, env=m3l_env,
                            capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "m3l commit: recorded" not in replay.stderr  # the clone is at the recorded commit
    rebuilt = clone / "result"
    info = yaml.safe_load((rebuilt / "run.yaml").read_text())
    assert Path(info["git"]["m3l"]["root"]) == clone and info["git"]["m3l"]["commit"] == commit
    for table in ("metrics.csv", "per_image.csv"):
        assert (rebuilt / table).read_bytes() == (result / table).read_bytes(), table
