"""One model, many processes, through Slurm: N Slurm tasks (on K nodes) train one model as one DDP world.

The real-Slurm tests run on the two-node test cluster of tests/slurm/cluster.sh (two slurmd on this host) through
``cluster=local_slurm_ddp`` (tests/slurm/m3l_config/cluster/), on CPUs with gloo; ``.ci/run`` starts the cluster,
elsewhere they skip with the reason. Each rank logs to its own ``.submitit/<job>/<job>_<rank>_log.{out,err}``.
The quick tests (configs, gathering test rows, rank-zero writes, the workflow's plan) need no cluster.
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
import yaml

from conftest import REPO, write_images
from test_workflow import SNAKEFILE, workflow_config
from test_workflow_slurm import slurm  # noqa: F401  (the fixture: skip without the test cluster)

SLURM = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster: its tests run one at a time
CLUSTER = REPO / "tests/slurm/m3l_config/cluster/local_slurm_ddp.yaml"
# one training batch a rank (16 patches over 2 or 4 ranks); threads=1: single-process tests measure the same floats
SMALL = ["net.depth=3", "net.width=8", "trainer.max_epochs=1", "data.patches_per_epoch=16", "data.train_batch_size=16",
         "data.deadleaves.count=4", "data.deadleaves.size=64", "data.num_workers=0", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "threads=1"]


# ---- quick: no cluster ----

def compose(name, overrides, user_config=None, tmp_path=None, monkeypatch=None):
    from hydra import compose as hydra_compose, initialize_config_module

    from m3l.run.common import register_search_path

    if user_config is not None:
        folder = tmp_path / "xdg" / "m3l" / "cluster"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(user_config, folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return hydra_compose(name, overrides=overrides, return_hydra_config=True)


def test_the_cluster_configs_set_tasks_once(tmp_path, monkeypatch):
    """Slurm's tasks and nodes and Lightning's devices and num_nodes come from the same numbers."""
    cfg = compose("train", ["model=dncnn", "cluster=local_slurm_ddp", "cluster.nodes=2"], CLUSTER, tmp_path,
                  monkeypatch)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.mem_gb) == (2, 2, 2)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy) == (2, 2, "ddp")
    assert launcher.additional_parameters.signal == "USR1@60"  # the time-limit warning: m3l's requeue
    cfg = compose("train", ["model=dncnn", "cluster=vulcan", "trainer.gpus=4", "trainer.num_nodes=2"],
                  tmp_path=tmp_path, monkeypatch=monkeypatch)
    assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.nodes, cfg.hydra.launcher.mem_gb) == (4, 2, 128)
    cfg = compose("train", ["model=dncnn", "cluster=vulcan", "trainer.devices=2"], tmp_path=tmp_path,
                  monkeypatch=monkeypatch)
    assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.additional_parameters.gres) == (2, "gpu:p6000:2")


def sampled(rows: list, world: int) -> list[list]:
    """What each of ``world`` ranks measures of ``rows`` under Lightning's DistributedSampler (shuffle off): items
    r, r+N, ..., the first ones repeated so that every rank has as many."""
    padded = rows + rows[:(-len(rows)) % world]
    return [padded[rank::world] for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3, 4])
def test_gathered_rows_are_the_single_process_rows(world, monkeypatch):
    import m3l.engine.distributed as distributed

    loaders = [[{"dataset": "three", "degradation": "sigma25", "image": f"{n}.png", "psnr": float(i)}
                for i, n in enumerate("abc")],
               [{"dataset": "five", "degradation": "sigma25", "image": f"{n}.png", "psnr": 10.0 + i}
                for i, n in enumerate("abcde")]]
    shares = [sum((sampled(rows, world)[rank] for rows in loaders), []) for rank in range(world)]
    frames = [[{**row, "frame": t} for row in share for t in range(2)] for share in shares]
    for rank in range(world):  # each rank gathers what all ranks measured
        def all_gather_object(parts, rows):
            parts[:] = frames if "frame" in rows[0] else shares
        monkeypatch.setattr(distributed, "_world", lambda: world)
        monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
        rows = distributed.gather_rows(shares[rank])
        assert rows == loaders[0] + loaders[1]
        assert distributed.gather_rows(frames[rank], order_of=rows) == [{**row, "frame": t} for row in rows
                                                                         for t in range(2)]


def test_only_rank_zero_writes_run_yaml(tmp_path, monkeypatch):
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from m3l.run.runinfo import write_run_info

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert write_run_info({"command": "x"}, tmp_path / "run") == tmp_path / "run" / "run.yaml"
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    write_run_info({"command": "x"}, tmp_path / "run")
    assert yaml.safe_load((tmp_path / "run" / "run.yaml").read_text()) == {"command": "x"}


def test_the_workflow_keeps_one_slurm_task_per_training(m3l_env, tmp_path):
    """The executor plugin runs a job's command as ``srun -n1`` (one task, whatever ``tasks`` says; several tasks
    only with its ``mpi`` resource, where the rule would call srun itself): the workflow asks for the model's
    ``devices`` as GPUs of one node and Lightning starts a process per device itself (LightningEnvironment). A
    model that needs several nodes trains through ``cluster=NAME`` (docs/cluster.md)."""
    workflow_config(tmp_path, {"two": {"model": "dncnn", "devices": 2}})
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--replace-workflow-config", "--dry-run", "--printshellcmds",
         "--workflow-profile", str(REPO / "workflow/profiles/vulcan"), "results/two/model.ckpt"],
        cwd=tmp_path, env=m3l_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    train = result.stdout.split("rule train:")[1]
    resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", train).group(1).split(", "))
    assert resources["gpu"] == "2" and not {"tasks", "tasks_per_node", "nodes", "mpi"} & set(resources)
    assert "trainer.devices=2" in train and "LightningEnvironment" in train and "srun" not in train


# ---- on the test cluster ----

def use_cluster_config(env: dict) -> None:
    user = Path(env["XDG_CONFIG_HOME"]) / "m3l" / "cluster"
    user.mkdir(parents=True, exist_ok=True)
    shutil.copy(CLUSTER, user)


def command(task: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"m3l.run.{task}", "model=dncnn", *SMALL, *overrides]


def submit(task: str, folder: Path, env: dict, *overrides: str, nodes: int = 1, timeout: int = 240):
    """Run ``m3l.run.<task>`` through submitit on ``nodes`` nodes x 2 tasks; returns (run folder, job id, each
    rank's log)."""
    sweep = folder / f"{task}-{nodes}x2"  # a fresh folder: job ids restart at 1 when the cluster's state is wiped
    result = subprocess.run(["timeout", "-s", "KILL", str(timeout),
                             *command(task, *overrides, "cluster=local_slurm_ddp", f"cluster.nodes={nodes}",
                                      f"hydra.sweep.dir={sweep}")],
                            cwd=folder, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job = next((sweep / ".submitit").glob("[0-9]*")).name
    return sweep / "0", job, rank_logs(sweep, job, 2 * nodes)


def rank_logs(sweep: Path, job: str, world: int) -> list[str]:
    folder = sweep / ".submitit" / job
    return [(folder / f"{job}_{rank}_log.out").read_text() + (folder / f"{job}_{rank}_log.err").read_text()
            for rank in range(world)]


def members(logs: list[str]) -> list[str]:
    """Lightning's ``MEMBER: i/N`` line of each rank's log."""
    return [re.search(r"MEMBER: \d+/\d+", log).group(0) for log in logs]


def probe(folder: Path) -> list[str]:
    return [f"+callbacks.probe={{_target_: probe.BatchProbe, folder: '{folder}'}}"]


def probe_lines(folder: Path, rank: int) -> list[list[str]]:
    """world, epoch, step, restarts, batch sum, seed: one line per training batch of ``rank``."""
    return [line.split() for line in (folder / f"rank{rank}.txt").read_text().splitlines()]


def two_test_sets(folder: Path) -> str:
    """Two test sets, of 3 and 5 images: neither splits evenly over 2 or 4 ranks."""
    write_images(folder / "three", {"a.png": (40, 48), "b.png": (56, 40), "c.png": (48, 48)}, seed=1)
    write_images(folder / "five", {f"{n}.png": (40 + 8 * i, 40) for i, n in enumerate("abcde")}, seed=2)
    return f"data.test_sets={{three: '{folder / 'three'}', five: '{folder / 'five'}'}}"


def single_process_test(folder: Path, env: dict, checkpoint: Path, sets: str) -> subprocess.Popen:
    return subprocess.Popen(command("test", f"checkpoint={checkpoint}", sets, f"hydra.run.dir={folder / 'one'}"),
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_one_world(folder: Path, env: dict, nodes: int) -> None:
    """Train on ``nodes`` x 2 tasks, then test on as many ranks: one world, one writer, one set of outputs, and the
    single-process test tables."""
    world = 2 * nodes
    env = {**env, "PYTHONPATH": str(REPO / "tests/slurm")}  # probe.BatchProbe
    use_cluster_config(env)
    out = folder / "out" / "model.ckpt"
    run, job, logs = submit("train", folder, env, f"checkpoint_out={out}", *probe(folder / "probe"), nodes=nodes)
    assert members(logs) == [f"MEMBER: {rank + 1}/{world}" for rank in range(world)], logs[0][-3000:]
    sacct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "NNodes,NodeList,AllocCPUS"],
                           capture_output=True, text=True, timeout=30, check=True)
    assert sacct.stdout.split() == [f"{nodes}|{'m3l-node1' if nodes == 1 else 'm3l-node[1-2]'}|{world}"]
    # rank 0 alone copies checkpoint_out and says so; one run.yaml, one CSV log, one time split, the checkpoints
    assert [log.count("final checkpoint:") for log in logs] == [1] + [0] * (world - 1)
    assert torch.load(out, weights_only=True)["m3l_config"]["trainer"]["num_nodes"] == nodes
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "csv", "run.yaml", "timing.json",
                                                       "train.log"]
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    # every rank trained on patches of its own (its own shard), in a world of `world`
    batches = [probe_lines(folder / "probe", rank) for rank in range(world)]
    assert {line[0] for lines in batches for line in lines} == {str(world)}
    assert len({lines[0][4] for lines in batches}) == world

    sets = two_test_sets(folder / "sets")
    reference = single_process_test(folder, env, out, sets)
    try:
        run, job, logs = submit("test", folder, env, f"checkpoint={out}", sets, nodes=nodes)
        one = reference.communicate(timeout=240)[0]
    finally:
        reference.kill()
    assert reference.returncode == 0, one[-3000:]
    assert members(logs) == [f"MEMBER: {rank + 1}/{world}" for rank in range(world)]
    assert [log.count("metrics: ") for log in logs] == [1] + [0] * (world - 1)
    for table in ("metrics.csv", "per_image.csv"):  # byte for byte: no image counted twice, none missing
        assert (run / table).read_text() == (folder / "one" / table).read_text(), table
    summary = (run / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in summary[1:]] == [["three", "sigma25", "3"], ["five", "sigma25", "5"]]


@pytest.mark.parametrize("nodes", [1, 2], ids=["2 tasks", "2 nodes x 2 tasks"])
@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_slurm_tasks_train_one_model_and_test_it(slurm, m3l_env, tmp_path, nodes):  # noqa: F811
    start = time.perf_counter()
    check_one_world(tmp_path, m3l_env, nodes)
    print(f"{nodes} node(s) x 2 tasks, train and test: {time.perf_counter() - start:.0f} s")


@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_a_requeued_job_continues_in_its_run_folder(slurm, m3l_env, tmp_path):  # noqa: F811
    """``scancel --signal=USR1`` (what ``--signal=USR1@90`` sends before the time limit): every rank saves
    ``last.ckpt``, rank 0 requeues the job, Slurm starts it again in the same run folder and training continues
    from that checkpoint (resume=auto) to the end."""
    env = {**m3l_env, "PYTHONPATH": str(REPO / "tests/slurm")}
    use_cluster_config(env)
    sweep, batches, epochs = tmp_path / "sweep", tmp_path / "probe", 20
    slow = [f"+callbacks.probe={{_target_: probe.BatchProbe, folder: '{batches}', sleep: 0.3}}"]
    process = subprocess.Popen(["timeout", "-s", "KILL", "300",
                                *command("train", f"trainer.max_epochs={epochs}", *slow,
                                         "cluster=local_slurm_ddp", f"hydra.sweep.dir={sweep}",
                                         f"checkpoint_out={tmp_path / 'out/model.ckpt'}")],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while not (sweep / "0/checkpoints/last.ckpt").exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert (sweep / "0/checkpoints/last.ckpt").exists(), "the job never wrote a checkpoint"
        job = next((sweep / ".submitit").glob("[0-9]*")).name
        subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)
        output = process.communicate(timeout=280)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output[-3000:]
    logs = rank_logs(sweep, job, 2)
    assert "requeued: the job starts again" in logs[0]
    assert f"resume=auto: continuing from {sweep / '0/checkpoints/last.ckpt'}" in logs[0]
    assert logs[0].count("MEMBER: 1/2") == 2 and logs[1].count("MEMBER: 2/2") == 2  # two runs of one world
    for rank in range(2):
        lines = probe_lines(batches, rank)
        before = [int(line[2]) for line in lines if line[3] == "0"]
        after = [int(line[2]) for line in lines if line[3] == "1"]  # SLURM_RESTART_COUNT=1
        assert before and after, lines
        assert before + after == list(range(epochs)), lines  # one step an epoch: none twice, none skipped
    assert torch.load(tmp_path / "out/model.ckpt", weights_only=True)["state_dict"]
