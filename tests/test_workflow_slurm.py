"""The workflow and the Hydra cluster route on a real one-node Slurm cluster (tests/slurm/cluster.sh).

``.ci/run`` installs and starts the cluster; elsewhere these tests are skipped with the reason.
Every Slurm run is wrapped in ``timeout -s KILL`` so a lost job cannot hang the suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY
from test_workflow import SNAKEFILE, check_results, snakemake, workflow_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster: its tests run one at a time

PROFILE = REPO / "workflow" / "profiles" / "slurm-test"


def slurm_problem() -> str | None:
    """Why the local Slurm cluster cannot be used, or None."""
    if not shutil.which("sbatch"):
        return "Slurm is not installed (run tests/slurm/cluster.sh install && tests/slurm/cluster.sh start as root)"
    if not Path("/etc/slurm/slurm.conf").exists():
        return "no /etc/slurm/slurm.conf (start the test cluster: tests/slurm/cluster.sh start)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
        if states.returncode != 0 or not {"idle", "mix", "alloc"} & set(states.stdout.split()):
            return f"no Slurm node is up (sinfo: {(states.stdout + states.stderr).strip()!r}): tests/slurm/cluster.sh start"
        accounting = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"Slurm does not answer: {error}"
    if accounting.returncode != 0:
        return f"Slurm accounting does not answer (sacct: {accounting.stderr.strip()!r}): start slurmdbd"
    return None


@pytest.fixture(scope="module")
def slurm():
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)


def slurm_jobs(output: str) -> list[tuple[str, str]]:
    """(comment, state) of the Slurm jobs of the snakemake run that printed ``output``."""
    run_id = re.search(r"SLURM run ID: ([\w-]+)", output).group(1)
    sacct = subprocess.run(["sacct", "-X", "-n", "-P", "--name", run_id, "-o", "Comment,State"],
                           capture_output=True, text=True, timeout=30, check=True)
    return sorted(tuple(line.split("|")) for line in sacct.stdout.splitlines() if line)  # states may hold spaces


def test_tiny_preset_through_the_slurm_executor(slurm, m3l_env, tmp_path):
    models = {"one": {"model": "dncnn"}}
    workflow_config(tmp_path, models)
    start = time.perf_counter()
    result = snakemake(tmp_path, m3l_env, profile=PROFILE, timeout=300)
    print(f"tiny preset through Slurm: {time.perf_counter() - start:.0f} s")
    check_results(tmp_path, models)
    # train, test and correct were Slurm jobs; degraded inputs, tables and figures ran locally
    assert slurm_jobs(result.stdout + result.stderr) == [
        ("rule_correct_wildcards_one_small", "COMPLETED"), ("rule_test_wildcards_one", "COMPLETED"),
        ("rule_train_wildcards_one", "COMPLETED")]


def test_a_failing_job_fails_the_run_instead_of_hanging(slurm, m3l_env, tmp_path):
    workflow_config(tmp_path, {"bad": {"model": "dncnn", "train": ["+trainer.no_such_argument=1"]}})
    start = time.perf_counter()
    result = snakemake(tmp_path, m3l_env, "results/bad/model.ckpt", profile=PROFILE, check=False, timeout=180)
    assert result.returncode not in (0, -9, 137), result.stderr[-3000:]
    assert time.perf_counter() - start < 120
    assert "Error in rule train" in result.stdout + result.stderr
    assert slurm_jobs(result.stdout + result.stderr) == [("rule_train_wildcards_bad", "FAILED")]
    assert "m3l train: error:" in (tmp_path / "results/bad/train/console.log").read_text()
    assert not (tmp_path / "results/bad/model.ckpt").exists()


def test_a_cancelled_job_fails_the_run_instead_of_hanging(slurm, m3l_env, tmp_path):
    """``scancel`` of a running training job (as an admin or a preemption would): snakemake reports the
    job as failed, exits non-zero and leaves no model behind."""
    workflow_config(tmp_path, {"long": {"model": "dncnn", "train": ["trainer.max_epochs=1000"]}})
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "config.yaml"), "--replace-workflow-config", "--profile", str(PROFILE),
               "results/long/model.ckpt"]
    process = subprocess.Popen(["timeout", "-s", "KILL", "180", *command], cwd=tmp_path, env=m3l_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job, deadline = None, time.time() + 90
        while job is None and process.poll() is None and time.time() < deadline:
            queue = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, timeout=30)
            job = next((line.split("|")[0] for line in queue.stdout.split()
                        if line.endswith("|rule_train_wildcards_long|RUNNING")), None)
            time.sleep(0.5)
        assert job, "the training job never ran"
        cancelled = time.perf_counter()
        subprocess.run(["scancel", job], check=True, timeout=30)
        output = process.communicate(timeout=170)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode not in (0, -9, 137), output[-3000:]
    assert time.perf_counter() - cancelled < 90
    assert "Error in rule train" in output
    ((comment, state),) = slurm_jobs(output)
    assert comment == "rule_train_wildcards_long" and state.startswith("CANCELLED"), state
    assert not (tmp_path / "results/long/model.ckpt").exists()


def test_multi_device_training_in_one_slurm_task(slurm, m3l_env, tmp_path):
    """The plugin runs a job as ``srun -n1``: Lightning's SLURM detection sees one task and trains a
    world of one process whatever ``trainer.devices`` says. ``devices: N`` in the workflow config makes
    Lightning start the N processes itself (LightningEnvironment) inside the one task."""
    models = {"two": {"model": "dncnn", "devices": 2},
              "plain": {"model": "dncnn", "train": ["trainer.devices=2"]}}  # what happens without it
    workflow_config(tmp_path, models)
    snakemake(tmp_path, m3l_env, "results/two/model.ckpt", "results/plain/model.ckpt", profile=PROFILE, timeout=240)
    two = (tmp_path / "results/two/train/console.log").read_text()
    assert "MEMBER: 1/2" in two and "MEMBER: 2/2" in two
    plain = (tmp_path / "results/plain/train/console.log").read_text()
    assert "MEMBER: 1/1" in plain and "SLURM auto-requeueing enabled" in plain
    assert torch.load(tmp_path / "results/two/model.ckpt", weights_only=True)["state_dict"]


def test_hydra_cluster_route_through_submitit(slurm, m3l_env, tmp_path):
    """``python -m m3l.run.train model=dncnn cluster=NAME`` submits through submitit_slurm and returns
    when the job is done; the cluster config is a user config (~/.config/m3l/cluster/)."""
    user = Path(m3l_env["XDG_CONFIG_HOME"]) / "m3l" / "cluster"
    user.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tests/slurm/m3l_config/cluster/local_slurm.yaml", user)
    sweep = tmp_path / "sweep"  # a fresh folder: job ids restart at 1 when the cluster's state is wiped
    result = subprocess.run(
        ["timeout", "-s", "KILL", "180", sys.executable, "-m", "m3l.run.train", "model=dncnn", *TINY,
         "cluster=local_slurm", f"hydra.sweep.dir={sweep}", f"checkpoint_out={tmp_path / 'out/model.ckpt'}"],
        cwd=tmp_path, env=m3l_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Submitit 'slurm' sweep output dir" in result.stdout + result.stderr
    job = next((sweep / ".submitit").glob("[0-9]*")).name
    for _ in range(60):  # submitit returns on the job's result; Slurm marks it done a moment later
        sacct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "JobName,State"], capture_output=True,
                               text=True, timeout=30)
        if "RUNNING" not in sacct.stdout and "COMPLETING" not in sacct.stdout:
            break
        time.sleep(0.5)
    assert sacct.stdout.split() == ["dncnn|COMPLETED"]
    assert (sweep / "0" / "run.yaml").is_file() and (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(tmp_path / "out/model.ckpt", weights_only=True)["m3l_config"]["net"]["depth"] == 3
