"""The workflow's published preset: released weights converted and tested, no training."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from test_layouts import dncnn_layers, write_mat
from conftest import REPO, write_images
from test_workflow import CONFIG, SNAKEFILE, planned_jobs, snakemake, workflow_config

from m3l.io.tables import published_markdown


def test_published_preset_converts_the_weights_instead_of_training(m3l_env, tmp_path):
    sets = tmp_path / "sets"
    for name in ("set12", "bsd68"):
        (sets / name).mkdir(parents=True)
    models = {"dncnn": {"model": "dncnn", "weights": "dncnn_sigma25"}, "mine": {"model": "dncnn"}}
    workflow_config(tmp_path, models, preset="published", test_sets=None, data_root=str(sets))
    result = snakemake(tmp_path, m3l_env, "--dry-run", "--printshellcmds")
    jobs = planned_jobs(result.stdout)
    assert ("weights", "dncnn") in jobs and ("test", "dncnn") in jobs and ("correct", "dncnn") in jobs
    assert not [job for job in jobs if job[0] == "train" or job[1] == "mine"]  # no weights: left out
    assert "python -m m3l.hub convert dncnn_sigma25 results/dncnn/model.ckpt" in result.stdout  # no weights_dir
    assert f"preset=paper data_root={sets}" in result.stdout
    assert "net.pretrained=results/dncnn/model.ckpt" in result.stdout

    workflow_config(tmp_path, {"mine": {"model": "dncnn"}}, preset="published", data_root=str(sets))
    failed = snakemake(tmp_path, m3l_env, "--dry-run", check=False)
    assert failed.returncode != 0 and "the published preset tests released weights" in failed.stdout + failed.stderr


@pytest.mark.slow
def test_published_preset_end_to_end_on_a_weights_file(m3l_env, tmp_path):
    write_mat(tmp_path / "tiny.mat", dncnn_layers(np.random.default_rng(0), 1, depth=3, width=4))
    models = {"authors": {"model": "dncnn", "weights": str(tmp_path / "tiny.mat")}}
    path = workflow_config(tmp_path, models, preset="published")
    config = yaml.safe_load(path.read_text())  # the published preset on the test's two images, not Set12 / BSD68
    config["presets"]["published"]["overrides"] = ["data.num_workers=0", "trainer.enable_progress_bar=false"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(tmp_path, m3l_env, "--cores", "2")
    results = tmp_path / "results"
    assert "layout: matconvnet_dncnn" in (results / "authors" / "weights.log").read_text()
    assert "using net.depth=3 net.width=4 net.batch_norm=false" in (results / "authors" / "test" / "console.log").read_text()
    metrics = pd.read_csv(results / "authors" / "metrics.csv")
    assert metrics[["dataset", "degradation", "n_images"]].values.tolist() == [["small", "sigma25", 2]]
    assert sorted(p.name for p in (results / "authors" / "corrected").rglob("*.png")) == ["a.png", "b.png"]
    assert not (results / "authors" / "train").exists()
    assert torch.load(results / "authors" / "model.ckpt", weights_only=True)["m3l_layout"] == 1


def test_benchmark_markdown_gains_the_published_numbers_and_the_delta():
    table = pd.DataFrame({"model": ["a", "b"], "set12/sigma25/psnr": [30.40, 28.0],
                          "set12/sigma25/ssim": [0.86, 0.8], "bsd68/sigma25/psnr": [29.30, float("nan")]})
    published = {"a": {"set12/sigma25/psnr": 30.44, "bsd68/sigma25/psnr": 29.23, "set12/sigma50/psnr": 27.18}}
    text = published_markdown(table, published)
    assert "| a | set12/sigma25/psnr | 30.40 | 30.44 | -0.04 |" in text
    assert "| a | bsd68/sigma25/psnr | 29.30 | 29.23 | +0.07 |" in text
    assert "sigma50" not in text and "| b |" not in text  # only what was measured, only where the table knows
    assert published_markdown(table, {}) == ""


def test_published_preset_tests_every_familys_released_weights_with_its_protocol(m3l_env, tmp_path):
    """``snakemake --config preset=published data_root=DIR`` with the repository's config: each family's released
    file converted (no training) and tested with the protocol benchmarks/published.py measures it with."""
    from test_workflow_paper import commands, dry_run

    from m3l.hub import WEIGHTS

    output = dry_run(tmp_path, m3l_env, "preset=published")
    jobs = planned_jobs(output)
    models = CONFIG["presets"]["published"]["models"]
    assert not [job for job in jobs if job[0] == "train"]
    assert sorted(m for rule, m in jobs if rule == "weights") == sorted(models)
    # every model config with published numbers in the registry has a row (a new family's entries ask for theirs)
    published = {w.model for w in WEIGHTS.values() if w.metrics}
    assert published <= {WEIGHTS[s["weights"]].model for s in models.values()}, "add a published row for each"
    tests = commands(output, "test")
    for name, settings in models.items():
        assert f"python -m m3l.hub convert {settings['weights']} results/{name}/model.ckpt" in output
        command = tests[name]
        assert f"model={settings['model']} preset=paper data_root={tmp_path}/sets" in command
        for override in WEIGHTS[settings["weights"]].protocol:  # e.g. sigma 15 only for sigma=15.mat
            assert shlex.quote(override.replace("{data_root}", f"{tmp_path}/sets")) in command
    assert "degradation@data.degradation=sigma15" in tests["dncnn_sigma15"]
    assert "metrics.psnrb=true" in tests["dncnn3"] and "data=paired" in tests["nafnet"]


def pinned_env(tmp_path: Path, m3l_env: dict, files: dict[str, Path]) -> dict:
    """m3l_env with a torch.hub cache of its own (TORCH_HOME) in which m3l/hub.py's table pins, for the entries of
    ``files``, the sha256 of the test's fake files (a sitecustomize.py patches the table in every Python process)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import dataclasses, json, os
        from m3l import hub
        for name, digest in json.loads(os.environ["M3L_TEST_SHA256"]).items():
            hub.WEIGHTS[name] = dataclasses.replace(hub.WEIGHTS[name], sha256=digest)
    """))
    digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    python_path = [str(site), *filter(None, [m3l_env.get("PYTHONPATH")])]
    return {**m3l_env, "TORCH_HOME": str(tmp_path / "torch"), "M3L_TEST_SHA256": json.dumps(digests),
            "PYTHONPATH": ":".join(python_path)}


def published_dry_run(folder: Path, env: dict, *config: str) -> subprocess.CompletedProcess:
    """``snakemake -n -p --config preset=published ...`` with the repository's workflow config."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                           str(folder), "-n", "-p", "--config", "preset=published", *config], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def left_out(stderr: str) -> dict[str, str]:
    """{model: its line} of the models the plan left out."""
    lines = [line for line in stderr.splitlines() if line.startswith("published: ") and " left out: " in line]
    found = {line.split()[1]: line for line in lines}
    assert len(found) == len(lines), lines  # one line per model
    return found


def test_published_preset_takes_weights_dir_and_leaves_out_what_is_missing(m3l_env, tmp_path):
    """``--config preset=published data_root=DIR weights_dir=W``: the released files found in W by name and sha256
    (or in torch.hub's cache) are converted, each tested with its entry's protocol; a model whose file or test
    sets are missing is left out at plan time with one line saying what and how to supply it; nothing downloads."""
    from m3l.hub import WEIGHTS

    sets, weights = tmp_path / "sets", tmp_path / "weights"
    for name in ("set12", "bsd68", "live1_gray", "classic5"):  # no gopro/, sidd/, set8/, davis_test/
        (sets / name).mkdir(parents=True)
    (weights / "dncnn").mkdir(parents=True)
    (weights / "dncnn" / "sigma=25.mat").write_bytes(b"the test's sigma=25.mat")  # its sha256 is pinned below
    (weights / "sigma=15.mat").write_bytes(b"not the authors' sigma=15.mat")  # the table's sha256 differs
    (weights / "drunet_gray.pth").write_bytes(b"drunet")  # an entry without a pinned sha256: by its name
    (weights / "model.pth").write_bytes(b"fastdvdnet")  # found, but Set8 / DAVIS are not in data_root
    env = pinned_env(tmp_path, m3l_env, {"dncnn_sigma25": weights / "dncnn" / "sigma=25.mat"})
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / WEIGHTS["fbcnn_gray"].filename).write_bytes(b"fbcnn, downloaded before")  # in torch.hub's cache

    result = published_dry_run(tmp_path, env, f"data_root={sets}", f"weights_dir={weights}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert sorted(m for rule, m in jobs if rule == "weights") == ["dncnn_sigma25", "drunet", "fbcnn"]
    assert sorted({m for _, m in jobs if m}) == ["dncnn_sigma25", "drunet", "fbcnn"]
    assert not [job for job in jobs if job[0] == "train"]
    script = REPO / "workflow" / "scripts" / "weights.py"
    assert (f"python {script} dncnn_sigma25 {weights}/dncnn/sigma=25.mat results/dncnn_sigma25/model.ckpt"
            in result.stdout)
    assert f"python {script} drunet_gray {weights}/drunet_gray.pth results/drunet/model.ckpt" in result.stdout
    assert "python -m m3l.hub convert fbcnn_gray results/fbcnn/model.ckpt" in result.stdout  # from the cache
    from test_workflow_paper import commands

    test = commands(result.stdout, "test")["dncnn_sigma25"]
    for override in WEIGHTS["dncnn_sigma25"].protocol:  # the entry's protocol is kept: sigma 25 only
        assert shlex.quote(override.replace("{data_root}", str(sets))) in test

    dropped = left_out(result.stderr)
    assert set(dropped) == set(CONFIG["presets"]["published"]["models"]) - {"dncnn_sigma25", "drunet", "fbcnn"}
    assert f"{weights}/sigma=15.mat is not the table's file (sha256 differs)" in result.stderr
    assert f"no sigma=15.mat in weights_dir {weights}" in dropped["dncnn_sigma15"]
    assert WEIGHTS["dncnn_sigma15"].url in dropped["dncnn_sigma15"]  # where to get it
    assert "NAFNet-GoPro-width32.pth" in dropped["nafnet"] and f"no test set gopro ({sets}/gopro/test)" in dropped["nafnet"]
    assert f"no test set set8 ({sets}/set8), davis_test ({sets}/davis_test)" in dropped["fastdvdnet"]
    assert "model.pth" not in dropped["fastdvdnet"]
    assert f"no test set sidd ({sets}/sidd)" in dropped["nafnet_sidd"]

    (cache / WEIGHTS["fbcnn_gray"].filename).unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = published_dry_run(tmp_path, env, f"data_root={sets}", f"weights_dir={empty}")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert set(left_out(failed.stderr)) == set(CONFIG["presets"]["published"]["models"])
    assert failed.stderr.strip().splitlines()[-1].startswith("published: none of the models")

    bad = published_dry_run(tmp_path, env, f"data_root={sets}", f"weights_dir={tmp_path / 'nowhere'}")
    assert bad.returncode != 0 and f"weights_dir: {tmp_path / 'nowhere'} is not a folder" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_published_preset_end_to_end_on_weights_dir(m3l_env, tmp_path):
    """The released file under weights_dir (a tiny sigma=25.mat whose sha256 the table pins here) converted with its
    entry, tested with the entry's protocol (sigma 25 on Set12 and BSD68 under data_root), corrected, reported."""
    sets, weights = tmp_path / "sets", tmp_path / "weights"
    for name in ("set12", "bsd68"):
        write_images(sets / name, {"a.png": (40, 32), "b.png": (32, 40)})
    weights.mkdir()
    write_mat(weights / "sigma=25.mat", dncnn_layers(np.random.default_rng(0), 1, depth=3, width=4))
    env = pinned_env(tmp_path, m3l_env, {"dncnn_sigma25": weights / "sigma=25.mat"})
    models = {"dncnn_sigma25": {"model": "dncnn", "weights": "dncnn_sigma25", "overrides": ["data.num_workers=0"]}}
    workflow_config(tmp_path, models, preset="published", test_sets=None, data_root=str(sets),
                    weights_dir=str(weights))
    snakemake(tmp_path, env, "--cores", "2")
    results = tmp_path / "results" / "dncnn_sigma25"
    log = (results / "weights.log").read_text()
    assert f"file: {weights}/sigma=25.mat" in log and "layout: matconvnet_dncnn" in log
    metrics = pd.read_csv(results / "metrics.csv")
    assert sorted(metrics[["dataset", "degradation", "n_images"]].values.tolist()) == [
        ["bsd68", "sigma25", 2], ["set12", "sigma25", 2]]  # the entry's protocol: sigma 25 alone
    assert sorted(p.name for p in (results / "corrected").rglob("*.png")) == ["a.png", "a.png", "b.png", "b.png"]
    assert not (tmp_path / "torch" / "hub" / "checkpoints").exists()  # nothing downloaded
