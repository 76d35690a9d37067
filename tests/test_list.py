"""python -m m3l.run.list: the model configs and the pretrained weights table."""

import re
import subprocess
import sys

import pytest

from conftest import REPO
from m3l.hub import WEIGHTS
from m3l.models.dncnn import DnCNN


def rows(text: str) -> dict[str, str]:
    """``{first cell: whole row}`` of rich's tables."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0]:
            found[cells[0]] = " | ".join(cells)
    return found


@pytest.mark.slow
def test_lists_every_model_config_and_weights_entry_with_what_is_downloaded(m3l_env, tmp_path):
    (tmp_path / "xdg" / "m3l" / "model").mkdir(parents=True)  # a user's own model config, beside the built-in ones
    (tmp_path / "xdg" / "m3l" / "model" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - dncnn\n  - _self_\nnet:\n  width: 4\n  depth: 3\n")
    cached = WEIGHTS["dncnn_sigma25"]
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / cached.filename).write_bytes(b"weights")
    env = {**m3l_env, "COLUMNS": "300", "TORCH_HOME": str(tmp_path / "torch"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    result = subprocess.run([sys.executable, "-m", "m3l.run.list"], env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    listed = rows(result.stdout)
    configs = sorted(p.stem for p in (REPO / "m3l" / "configs" / "model").glob("*.yaml"))
    assert len(configs) > 10 and all(f"configs/model/{name}.yaml" in listed.get(name, "") for name in configs)
    assert "| DnCNN | 556,097 | 6 |" in listed["dncnn"]  # DnCNN-17 with 64 channels, 6 weights entries
    mine = sum(p.numel() for p in DnCNN(depth=3, width=4).parameters())
    assert listed["mine"].endswith(f"| DnCNN | {mine:,} | - | {tmp_path}/xdg/m3l/model/mine.yaml")
    assert "DnCNN" in listed["dncnn"] and "FastDVDnet" in listed["fastdvdnet"] and "jpeg" in listed["fbcnn"]
    assert set(WEIGHTS) <= set(listed)
    assert listed["dncnn_sigma25"].endswith("| yes") and "set12/sigma25 30.44 dB" in listed["dncnn_sigma25"]
    assert f"| {cached.released_name} |" in listed["dncnn_sigma25"] and cached.released_name == "sigma=25.mat"
    assert all(listed[name].endswith("| no") for name in WEIGHTS if name != "dncnn_sigma25")


def test_weights_alone(capsys, monkeypatch):
    from m3l.run.list import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["weights"]) == 0
    listed = rows(capsys.readouterr().out)
    assert set(WEIGHTS) <= set(listed) and "dncnn" not in listed  # no models table


def test_families_alone(capsys, monkeypatch):
    """Every family of the registry, with its layouts and its weights entries."""
    from m3l.models._registry import families
    from m3l.run.list import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["families"]) == 0
    listed = rows(capsys.readouterr().out)
    assert set(families()) <= set(listed) and "dncnn_sigma25" not in listed  # no weights table
    assert "matconvnet_dncnn, kair_dncnn | 13 | m3l/models/dncnn.py" in listed["dncnn"]
    assert listed["fastdvdnet"].startswith("fastdvdnet | m3l.models.video.FastDVDnet | fastdvdnet | 1 |")
