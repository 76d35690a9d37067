"""The workflow's paper preset: every image family trained with its own published protocol."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_workflow import SNAKEFILE, planned_jobs

import m3l.configs

# Every model with a paper protocol (m3l/configs/protocol/paper/<model>.yaml) is a row of the paper preset: a new
# family's protocol file makes this test ask for its row.
PROTOCOLS = Path(m3l.configs.__file__).parent / "protocol" / "paper"
FAMILIES = sorted(p.stem for p in PROTOCOLS.glob("*.yaml"))


def protocol_folders() -> set[str]:
    """Every ``${data_root}/<folder>`` the paper protocols name (training, validation and test folders), and every
    ``{data_root}/<folder>`` of the weights entries' test protocols (the published preset's)."""
    from m3l.hub import WEIGHTS

    entries = " ".join(o for w in WEIGHTS.values() for o in w.protocol)
    return {m for p in PROTOCOLS.glob("*.yaml") for m in re.findall(r"\$\{data_root\}/([\w./-]+)", p.read_text())} | {
        m for m in re.findall(r"\{data_root\}/([\w./-]+)", entries)}


FOLDERS = sorted(protocol_folders() | {"sidd", "sidd_val"})


def dry_run(tmp_path, env, *config):
    """``snakemake -n -p --config preset=paper data_root=TMP/sets ...`` with the repository's workflow config."""
    for name in FOLDERS:  # named, empty: a dry run reads no data
        (tmp_path / "sets" / name).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                             str(tmp_path), "-n", "-p", "--config", "preset=paper", f"data_root={tmp_path}/sets",
                             *config], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def commands(output: str, rule: str) -> dict[str, str]:
    """{model: shell command} of the dry run's ``rule`` jobs."""
    found = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output)[1:]:
        if block.startswith(f"rule {rule}:"):
            model = re.search(r"wildcards: .*?model=([\w.-]+)", block).group(1)
            found[model] = block
    return found


def test_paper_preset_plans_every_family_with_its_protocol(m3l_env, tmp_path):
    output = dry_run(tmp_path, m3l_env)
    jobs = planned_jobs(output)
    assert sorted(m for rule, m in jobs if rule == "train") == sorted(FAMILIES)
    assert ("benchmark", None) in jobs
    train = commands(output, "train")
    for model, command in train.items():
        assert f"python -m m3l.run.train model={model} preset=paper data_root={tmp_path}/sets" in command
    for model in ("nafnet", "nafnet_sidd", "restormer"):  # the authors' 8 GPUs: one Slurm job, a process per device
        assert "data=paired" in train[model] and "trainer.devices=8" in train[model]
        assert "resources: " in train[model] and "gpu=8" in train[model]
    assert "trainer.devices" not in train["dncnn"] and "trainer.devices" not in train["fastdvdnet"]
    correct = set(re.findall(r"rule correct:.*?wildcards: model=([\w.-]+), dataset=([\w.-]+)", output, re.S))
    assert {("dncnn", "set12"), ("dncnn", "bsd68"), ("ffdnet", "bsd68"), ("drunet", "set12"),
            ("arcnn", "live1_gray"), ("fbcnn", "classic5"), ("nafnet", "gopro"), ("restormer", "gopro"),
            ("fastdvdnet", "set8"), ("fastdvdnet", "davis_test"), ("dncnn3", "classic5"), ("nafnet_sidd", "sidd")} <= correct
    assert ("nafnet", "set12") not in correct and ("fbcnn", "bsd68") not in correct


def test_only_runs_some_of_the_paper_models(m3l_env, tmp_path):
    output = dry_run(tmp_path, m3l_env, "only=[dncnn,nafnet]")
    assert sorted(m for rule, m in planned_jobs(output) if rule == "train") == ["dncnn", "nafnet"]
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                             str(tmp_path), "-n", "--config", "preset=paper", "data_root=/x", "only=[dncnn,nosuchnet]"],
                            cwd=tmp_path, env=m3l_env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "only: unknown model(s) nosuchnet" in result.stdout + result.stderr
