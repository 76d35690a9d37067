"""The Snakemake workflow (workflow/): the real ``snakemake`` on the tiny preset, in temporary folders."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, write_images

WORKFLOW = REPO / "workflow"
SNAKEFILE = WORKFLOW / "Snakefile"
CONFIG = yaml.safe_load((WORKFLOW / "config" / "config.yaml").read_text())


def workflow_config(folder: Path, models: dict, preset: str = "tiny", **settings) -> Path:
    """Write a full workflow config to ``folder/config.yaml``: the repository's, with these models
    and, unless given, a test set of two small images (quicker than the embedded photos)."""
    config = copy.deepcopy(CONFIG)
    if "test_sets" not in settings:
        write_images(folder / "small", {"a.png": (48, 40), "b.png": (40, 56)})
        settings["test_sets"] = {"small": str(folder / "small")}
    config.update(preset=preset, models=models, **settings)
    config["presets"].get(preset, {}).pop("models", None)  # these models, not the preset's own table
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(folder: Path, env: dict, *args: str, check: bool = True, timeout: float = 300,
              profile: Path | None = None) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's workflow in ``folder`` with ``folder/config.yaml``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(folder),
               "--configfile", str(folder / "config.yaml"), "--replace-workflow-config", *args]
    if profile is not None:
        command += ["--profile", str(profile)]
    result = subprocess.run(["timeout", "-s", "KILL", str(timeout), *command], cwd=folder, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_jobs(output: str) -> list[tuple[str, str | None]]:
    """(rule, model) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        model = re.search(r"wildcards: .*?model=([\w.-]+)", block)
        jobs.append((rule, model and model.group(1)))
    return sorted(jobs, key=str)


def all_targets(folder: Path, models, test_sets=("small",)) -> list[Path]:
    paths = [folder / "results" / f"benchmark.{ext}" for ext in ("csv", "md", "html", "png")]
    for model in models:
        paths += [folder / "results" / model / name for name in ("model.ckpt", "metrics.csv", "per_image.csv",
                                                                   "examples.png")]
        paths += [folder / "results" / model / "corrected" / name for name in test_sets]
    return paths


def check_results(folder: Path, models) -> pd.DataFrame:
    """Every target exists, the tables and images are what they should be; returns the benchmark."""
    results = folder / "results"
    missing = [str(p) for p in all_targets(folder, models) if not p.exists()]
    assert not missing, missing
    for model in models:
        assert torch.load(results / model / "model.ckpt", weights_only=True)["state_dict"]
        metrics = pd.read_csv(results / model / "metrics.csv")
        assert metrics[["dataset", "degradation", "n_images"]].values.tolist() == [["small", "sigma25", 2]]
        corrected = sorted(p.relative_to(results / model / "corrected") for p in
                           (results / model / "corrected").rglob("*.png"))
        assert corrected == [Path("small/sigma25/a.png"), Path("small/sigma25/b.png")]
        for task in ("train", "test", "correct/small"):  # every result folder records how it was made
            info = yaml.safe_load((results / model / task / "run.yaml").read_text())
            assert info["command"].startswith(f"python -m m3l.run.{task.split('/')[0]} model=dncnn")
            assert f"hydra.run.dir=results/{model}/{task}" in info["command"]
            assert info["config"]["net"]["width"] and "torch" in info["versions"]
            assert len(info["git"]["m3l"]["commit"]) == 40
    table = pd.read_csv(results / "benchmark.csv")
    assert table.model.tolist() == ["degraded input", *models]  # what correcting nothing scores, first
    assert list(table.columns) == ["model", "small/sigma25/psnr", "small/sigma25/ssim"]
    for model in models:
        assert table.set_index("model").loc[model, "small/sigma25/psnr"] == pytest.approx(
            pd.read_csv(results / model / "metrics.csv").psnr[0], abs=1e-5)
    per_image = pd.read_csv(results / list(models)[0] / "per_image.csv")
    assert table.set_index("model").loc["degraded input", "small/sigma25/psnr"] == pytest.approx(
        per_image.psnr_input.mean(), abs=1e-5)
    assert (results / "benchmark.md").read_text().startswith("| model | small/sigma25 |")
    assert "workflow preset tiny" in (results / "benchmark.md").read_text()
    plot = np.asarray(Image.open(results / "benchmark.png").convert("RGB"))
    assert (plot == (211, 211, 211)).all(-1).sum() > 500  # the degraded input's light grey bar
    for model in models:
        check_examples(results, model, per_image=pd.read_csv(results / model / "per_image.csv"))
    return table


def find(figure: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
    """Where ``image`` lies pixel for pixel in ``figure`` (top-left corners)."""
    h, w = image.shape
    return [(y, x) for y, x in zip(*np.nonzero(figure[: len(figure) - h + 1, : figure.shape[1] - w + 1] == image[0, 0]))
            if (figure[y : y + h, x : x + w] == image).all()]


def check_examples(results: Path, model: str, per_image: pd.DataFrame) -> None:
    """``results/<model>/examples.png``: a row per example image, its degraded, corrected and clean versions side by
    side at native resolution; its log gives each panel's PSNR, as the test measured it up to 8-bit rounding."""
    figure = np.asarray(Image.open(results / model / "examples.png").convert("L"))
    log = (results / model / "examples.log").read_text()
    for name in ("a.png", "b.png"):
        corners = [find(figure, np.asarray(Image.open(results / model / folder / "small/sigma25" / name)))
                   for folder in ("degraded", "corrected", "clean")]
        assert all(len(c) == 1 for c in corners), corners  # each panel once, unscaled
        (y0, x0), (y1, x1), (y2, x2) = (c[0] for c in corners)
        assert y0 == y1 == y2 and x0 < x1 < x2  # one row: degraded | corrected | clean
        row = per_image[per_image.image.str.endswith(name)].iloc[0]
        shown = re.search(rf"small/sigma25/{name}.*: degraded ([\d.]+) dB, {model} ([\d.]+) dB", log)
        assert float(shown.group(1)) == pytest.approx(row.psnr_input, abs=0.2), log
        assert float(shown.group(2)) == pytest.approx(row.psnr, abs=0.2), log


# -- fast checks -------------------------------------------------------------------------------------------

def test_lint_is_clean_but_for_the_justified_conda_lint(m3l_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, env=m3l_env,
                            capture_output=True, text=True, timeout=120)
    lints = set(re.findall(r"^\s+\* (.+?):?$", result.stdout + result.stderr, re.M))
    assert lints <= {"Specify a conda environment or container for each rule."}, lints
    assert "conda environment or container per rule: deliberately none" in SNAKEFILE.read_text()


def test_snakefmt_check_is_clean():
    result = subprocess.run(["snakefmt", "--check", str(WORKFLOW)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_of_the_full_benchmark_plans_every_job(m3l_env, tmp_path):
    """Twelve models plan their five jobs each (how long the plan takes: benchmarks/workflow_dryrun.py)."""
    models = {f"net{i}": {"model": "dncnn", "overrides": [f"net.width={8 + i}"]} for i in range(12)}
    workflow_config(tmp_path, models, preset="default", test_sets=None)
    result = snakemake(tmp_path, m3l_env, "--dry-run")
    jobs = planned_jobs(result.stdout)
    assert len(jobs) == 12 * 5 + 2  # train, test, degrade, correct, examples per model; benchmark, all
    assert ("correct", "net11") in jobs and ("benchmark", None) in jobs


def test_default_target_of_the_repository_config(m3l_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--snakefile", str(SNAKEFILE),
                             "--directory", str(tmp_path), "results/dncnn/metrics.csv"],
                            cwd=tmp_path, env=m3l_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result.stdout) == [("test", "dncnn"), ("train", "dncnn")]
    assert "python -m m3l.run.train model=dncnn trainer.enable_progress_bar=false resume=auto" in result.stdout


@pytest.mark.parametrize("change, message", [
    ({"modles": {}}, "Additional properties are not allowed ('modles' was unexpected)"),
    ({"preset": "huge"}, "preset: unknown preset 'huge'; choose one of tiny, default, paper"),
    ({"preset": "paper"}, "data_root: the paper preset needs the folder of its data sets: --config data_root=DIR"),
    ({"models": {"x": {"model": "dncnn", "devices": 0}}}, "0 is less than the minimum of 1"),
    ({"models": {"x": {"model": "dncnn", "overrides": ["net.width"]}}}, "'net.width' does not match"),
])
def test_a_bad_config_fails_before_any_job(m3l_env, tmp_path, change, message):
    workflow_config(tmp_path, {"dncnn": {"model": "dncnn"}}, test_sets=None)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, **change}, sort_keys=False))
    result = snakemake(tmp_path, m3l_env, "--cores", "1", check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "results").exists()


def test_each_job_computes_on_the_threads_snakemake_gives_it(m3l_env, tmp_path):
    """snakemake's {threads} reaches each m3l job as threads=N (torch's compute threads), so -c1 runs one thread and
    --set-threads decides; a rerun on other cores is the same training run (fresh_run.py ignores threads=)."""
    workflow_config(tmp_path, {"m": {"model": "dncnn"}})

    def threads(*args: str) -> dict[str, str]:
        plan = snakemake(tmp_path, m3l_env, "--dry-run", "--printshellcmds", *args).stdout
        return dict(re.findall(r"python -m m3l\.run\.(\w+) .*? threads=(\d+) >", plan))

    assert threads("--cores", "1") == {"train": "1", "test": "1", "correct": "1"}
    assert threads("--cores", "8", "--set-threads", "train=3") == {"train": "3", "test": "2", "correct": "2"}

    import importlib.util

    spec = importlib.util.spec_from_file_location("fresh_run", REPO / "workflow" / "scripts" / "fresh_run.py")
    fresh_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh_run)
    record = {"command": "python -m m3l.run.train model=dncnn resume=auto threads=2", "config": {}}
    assert fresh_run.same_run(record, ["model=dncnn", "resume=auto"])
    assert not fresh_run.same_run(record, ["model=dncnn", "resume=auto", "net.width=8"])


def test_paper_preset_uses_the_published_protocol_on_the_named_folder(m3l_env, tmp_path):
    workflow_config(tmp_path, {"dncnn": {"model": "dncnn"}}, preset="paper", test_sets=None, data_root="/data/sets")
    result = snakemake(tmp_path, m3l_env, "--dry-run", "results/benchmark.csv", "results/dncnn/examples.png")
    assert ("correct", "dncnn") in planned_jobs(result.stdout)
    assert "model=dncnn preset=paper data_root=/data/sets" in result.stdout
    assert "results/dncnn/corrected/set12" in result.stdout and "results/dncnn/corrected/bsd68" in result.stdout


def test_both_spellings_of_the_vulcan_profile(m3l_env, tmp_path):
    """``--workflow-profile workflow/profiles/vulcan`` from the repository root, and ``--profile vulcan``
    after the README's one-time step (a link in Snakemake's user profile folder)."""
    (tmp_path / "workflow").symlink_to(WORKFLOW)  # tmp_path stands in for the repository root
    user_profiles = Path(m3l_env["XDG_CONFIG_HOME"]) / "snakemake"
    user_profiles.mkdir(parents=True, exist_ok=True)
    (user_profiles / "vulcan").unlink(missing_ok=True)
    subprocess.run(f'ln -sfn "$PWD/workflow/profiles/vulcan" "{user_profiles}/vulcan"', shell=True, cwd=tmp_path,
                   check=True)
    for spelling in (["--workflow-profile", "workflow/profiles/vulcan"], ["--profile", "vulcan"]):
        result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", *spelling], cwd=tmp_path,
                                env=m3l_env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        train = re.search(r"\nrule train:.*?\n\n", result.stdout, re.S).group(0)
        assert "gpu=1" in train and "gpu_model=p6000" in train and "qos=high" in train, train
        assert "slurm_partition=dpart" in train and "runtime=2160" in train


# -- end to end --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(m3l_env, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny preset run once for this module's end-to-end tests, and its report made as the README says
    (``snakemake --report report.html`` with the shipped config, whose preset is ``default``)."""
    folder = tmp_path_factory.mktemp("tiny_run")
    models = {"a": {"model": "dncnn"}, "b": {"model": "dncnn", "overrides": ["net.width=4"]}}
    workflow_config(folder, models)
    snakemake(folder, m3l_env, "--cores", "2", "--set-threads", "train=1")  # both models at once
    snakemake(folder, m3l_env, "--config", "preset=default", "--report", "report.html")
    return folder, models


def chromium() -> str:
    """The headless browser's command, or a pytest skip saying how to get it."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        pytest.skip("chromium is not installed: apt-get install chromium (.ci/run installs it where it runs as root)")
    return found


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # one worker builds the shared run
def test_report_page_shows_the_table_the_preset_and_the_figures_in_headless_chromium(m3l_env, tiny_run, tmp_path):
    folder, models = tiny_run
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=5000", (folder / "report.html").as_uri()]
    shot = tmp_path / "report.png"
    subprocess.run(browser[:-1] + ["--window-size=1280,900", f"--screenshot={shot}", browser[-1]], env=m3l_env,
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1280) and pixels.std() > 10, "blank screenshot"
    dom = subprocess.run(browser[:-1] + ["--dump-dom", browser[-1]], env=m3l_env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    # the front page (the rendered DOM, not the data embedded for download) holds the benchmark table
    table = re.search(r"<table[^>]*dataframe.*?</table>", dom, re.S)
    assert table, "no benchmark table in the rendered page"
    rows = [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)]
    benchmark = pd.read_csv(folder / "results" / "benchmark.csv")
    for _, row in benchmark.iterrows():
        assert [row.model, f"{row['small/sigma25/psnr']:.2f}", f"{row['small/sigma25/ssim']:.4f}"] in rows, rows
    assert "workflow preset tiny" in dom  # what the results were made with, not the config's preset of today
    assert not re.search(r"preset (<[^>]+>)?default", dom)


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # one worker builds the shared run
def test_tiny_preset_end_to_end_then_nothing_then_only_the_changed_model(m3l_env, tiny_run):
    tmp_path, models = tiny_run
    models = copy.deepcopy(models)
    check_results(tmp_path, models)
    stamps = {p: p.stat().st_mtime_ns for p in all_targets(tmp_path, models)}

    report = (tmp_path / "report.html").read_text()
    for name in ("benchmark.csv", "benchmark.html", "benchmark.png", "a/examples.png", "b/examples.png",
                 "Corrected images"):
        assert name in report, name

    again = snakemake(tmp_path, m3l_env, "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    models["b"]["overrides"] = ["net.width=6"]
    workflow_config(tmp_path, models)
    plan = planned_jobs(snakemake(tmp_path, m3l_env, "--dry-run").stdout)
    assert plan == sorted([("all", None), ("benchmark", None), ("correct", "b"), ("degrade", "b"),
                           ("examples", "b"), ("test", "b"), ("train", "b")], key=str)
    rerun = snakemake(tmp_path, m3l_env, "--cores", "2", "results/b/model.ckpt")
    assert "results/b/train: settings changed since the last run, training starts over" in rerun.stdout
    assert "Restoring states" not in (tmp_path / "results/b/train/console.log").read_text()
    assert torch.load(tmp_path / "results/b/model.ckpt", weights_only=True)["m3l_config"]["net"]["width"] == 6
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items() if "/b/model.ckpt" not in str(path))


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(m3l_env, tmp_path):
    slow = ["trainer.max_epochs=6", "data.patches_per_epoch=256"]
    workflow_config(tmp_path, {"m": {"model": "dncnn", "train": slow}})
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "config.yaml"), "--replace-workflow-config", "--cores", "2",
               "results/m/model.ckpt"]
    process = subprocess.Popen(command, cwd=tmp_path, env=m3l_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    last = tmp_path / "results/m/train/checkpoints/last.ckpt"
    try:
        deadline = time.time() + 240
        while not last.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert last.exists(), "training never wrote last.ckpt"
        time.sleep(0.5)  # let the checkpoint be written completely
        os.killpg(process.pid, signal.SIGTERM)  # as Ctrl-C or scancel: snakemake and the training stop
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not (tmp_path / "results/m/model.ckpt").exists()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < 5, "training finished before it was killed: make it longer"

    snakemake(tmp_path, m3l_env, "--cores", "2", "results/m/model.ckpt")
    log = (tmp_path / "results/m/train/console.log").read_text()
    assert re.search(r"Restoring states from the checkpoint path at \S*results/m/train/checkpoints/last.ckpt", log)
    final = torch.load(tmp_path / "results/m/train/checkpoints/last.ckpt", weights_only=True)
    assert final["epoch"] == 5 and final["global_step"] == 6 * 256 // 8
    assert (tmp_path / "results/m/model.ckpt").is_file()


@pytest.mark.slow
def test_a_noise_level_net_corrects_the_degraded_sets_with_their_side_file(m3l_env, tmp_path):
    """FFDNet needs the noise level to correct: the degraded test set carries it in a side.yaml."""
    workflow_config(tmp_path, {"ffdnet": {"model": "ffdnet"}})
    snakemake(tmp_path, m3l_env, "--cores", "2", "results/ffdnet/corrected/small")
    degraded = tmp_path / "results/ffdnet/degraded/small"
    assert sorted(p.name for p in degraded.iterdir() if p.is_dir()) == ["sigma15", "sigma25", "sigma50"]
    assert (degraded / "sigma50" / "side.yaml").read_text() == "sigma: 50\n"
    corrected = tmp_path / "results/ffdnet/corrected/small"
    assert sorted(p.relative_to(corrected).as_posix() for p in corrected.rglob("*.png")) == [
        f"sigma{s}/{n}.png" for s in (15, 25, 50) for n in "ab"]


@pytest.mark.slow
def test_the_report_without_config_is_of_the_last_runs_config(m3l_env, tmp_path):
    """`snakemake --report report.html` as the README gives it, after a run with --config: the report reads the
    --config the run recorded (results/workflow_config.yaml) instead of failing on the results it did not make."""
    workflow_config(tmp_path, {"a": {"model": "dncnn"}, "b": {"model": "dncnn", "overrides": ["net.width=4"]}})
    snakemake(tmp_path, m3l_env, "--cores", "2", "--config", "only=[a]")
    assert yaml.safe_load((tmp_path / "results" / "workflow_config.yaml").read_text()) == {"only": ["a"]}
    assert not (tmp_path / "results" / "b").exists()
    result = snakemake(tmp_path, m3l_env, "--report", "report.html")
    assert (tmp_path / "report.html").stat().st_size > 0
    assert "--config of the last run" in result.stderr
