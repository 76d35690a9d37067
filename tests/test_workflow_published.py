"""The workflow's published preset: released weights converted and tested, no training."""

from __future__ import annotations

import shlex

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from test_layouts import dncnn_layers, write_mat
from test_workflow import CONFIG, planned_jobs, snakemake, workflow_config

from m3l.io.tables import published_markdown


def test_published_preset_converts_the_weights_instead_of_training(m3l_env, tmp_path):
    models = {"dncnn": {"model": "dncnn", "weights": "dncnn_sigma25"}, "mine": {"model": "dncnn"}}
    workflow_config(tmp_path, models, preset="published", test_sets=None, data_root="/data/sets")
    result = snakemake(tmp_path, m3l_env, "--dry-run", "--printshellcmds")
    jobs = planned_jobs(result.stdout)
    assert ("weights", "dncnn") in jobs and ("test", "dncnn") in jobs and ("correct", "dncnn") in jobs
    assert not [job for job in jobs if job[0] == "train" or job[1] == "mine"]  # no weights: left out
    assert "python -m m3l.hub convert dncnn_sigma25 results/dncnn/model.ckpt" in result.stdout
    assert "preset=paper data_root=/data/sets" in result.stdout
    assert "net.pretrained=results/dncnn/model.ckpt" in result.stdout

    workflow_config(tmp_path, {"mine": {"model": "dncnn"}}, preset="published", data_root="/data/sets")
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
    assert {"dncnn_b", "dncnn3", "ffdnet", "drunet", "fbcnn", "nafnet", "nafnet_sidd", "restormer", "fastdvdnet"} <= set(models)
    tests = commands(output, "test")
    for name, settings in models.items():
        assert f"python -m m3l.hub convert {settings['weights']} results/{name}/model.ckpt" in output
        command = tests[name]
        assert f"model={settings['model']} preset=paper data_root={tmp_path}/sets" in command
        for override in WEIGHTS[settings["weights"]].protocol:  # e.g. sigma 15 only for sigma=15.mat
            assert shlex.quote(override.replace("{data_root}", f"{tmp_path}/sets")) in command
    assert "degradation@data.degradation=sigma15" in tests["dncnn_sigma15"]
    assert "metrics.psnrb=true" in tests["dncnn3"] and "data=paired" in tests["nafnet"]
