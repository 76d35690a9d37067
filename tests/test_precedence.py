"""What the user typed wins over a preset (m3l/run/precedence.py): a group choice, a value and a mapping given on
the command line replace the preset's, and testing never falls back to a random training degradation."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import write_images

TINY_FFDNET = ["model=ffdnet", "net.depth=3", "net.width=8", "data.num_workers=0",
               "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


@pytest.fixture
def paper_data(tmp_path):
    """A data_root holding tiny set12 / bsd68 folders, and a tiny FFDNet's bare weights."""
    from m3l.models.ffdnet import FFDNet

    root = tmp_path / "sets"
    write_images(root / "set12", {f"{i:02d}.png": (24, 20) for i in range(2)})
    write_images(root / "bsd68", {f"{i:02d}.png": (20, 24) for i in range(3)}, seed=1)
    weights = tmp_path / "ffdnet.pth"
    torch.save(FFDNet(channels=1, depth=3, width=8).state_dict(), weights)
    return root, weights


def test_the_command_lines_test_set_degradation_and_levels_win_over_the_paper_preset(run_m3l, tmp_path, paper_data):
    root, weights = paper_data
    result = run_m3l("test", *TINY_FFDNET, f"checkpoint={weights}", "preset=paper", f"data_root={root}",
                     f"data.test_sets={{set12:{root}/set12}}", "data.test_degradations=null",
                     "degradation@data.degradation=sigma25", "hydra.run.dir=run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    # the protocol's [0, 75] training noise, its bsd68 set and its sigma 15 / 50 levels are all gone
    assert table[["dataset", "degradation"]].values.tolist() == [["set12", "sigma25"]]
    assert table["n_images"].tolist() == [2]
    lines = [line for line in result.stderr.splitlines() if line.startswith("m3l test: data.")]
    assert any(line.startswith("m3l test: data.degradation.sigma: using the command line's 25 ")
               and "preset=paper's [0, 75]" in line for line in lines), result.stderr
    assert any(line.startswith("m3l test: data.test_sets.bsd68: left out") for line in lines), result.stderr
    records = {r["key"]: r for r in yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["preset_keys"]}
    assert records["data.degradation.sigma"]["by"] == "command line" and records["data.degradation.sigma"]["used"] == 25
    assert records["data.test_sets.bsd68"]["dropped"] is True
    assert records["data.patch_size"] == {"key": "data.patch_size", "preset": 64, "used": 64, "by": "preset"}


def test_a_test_set_the_protocol_does_not_name_replaces_its_sets(run_m3l, tmp_path, paper_data):
    """The published workflow's shape: preset=paper with the weights' own test sets (SwinIR color on CBSD68 where
    the protocol names Set12 and BSD68); Hydra alone stops with "Key 'cbsd68' is not in struct"."""
    root, weights = paper_data
    write_images(root / "mine", {"a.png": (20, 20)}, seed=2)
    run_m3l("test", *TINY_FFDNET, f"checkpoint={weights}", "preset=paper", f"data_root={root}",
            f"data.test_sets={{mine: {root}/mine}}", "hydra.run.dir=run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")  # the protocol's sigma 15 / 25 / 50 on the user's set
    assert table[["dataset", "degradation"]].values.tolist() == [["mine", f"sigma{s}"] for s in (15, 25, 50)]
    assert set(table["n_images"]) == {1}


def test_testing_never_falls_back_to_a_random_training_degradation(run_m3l, tmp_path, paper_data):
    root, weights = paper_data
    result = run_m3l("test", *TINY_FFDNET, f"checkpoint={weights}", "preset=paper", f"data_root={root}",
                     "data.test_degradations=null", "hydra.run.dir=run", check=False)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "data.test_degradations is null" in errors[0] and "sigma0-75 draws its level per image" in errors[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_without_a_preset_nothing_changes_and_a_fixed_training_level_is_tested(run_m3l, tmp_path, paper_data):
    root, weights = paper_data
    result = run_m3l("test", *TINY_FFDNET, f"checkpoint={weights}", f"data.test_sets={{set12:{root}/set12}}",
                     "data.test_degradations=null", "degradation@data.degradation=sigma15", "hydra.run.dir=run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert table[["dataset", "degradation"]].values.tolist() == [["set12", "sigma15"]]
    assert "using the command line" not in result.stderr
    assert "preset_keys" not in yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())


@pytest.fixture
def composed():
    """``composed(config, *overrides)``: the config m3l's commands run, after :func:`user_wins`."""
    from m3l.run.common import register_search_path
    from m3l.run.precedence import compose_as_run, keep_nulls, user_wins

    register_search_path()
    GlobalHydra.instance().clear()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        def compose_and_fix(config: str, *overrides: str):
            cfg = compose(config_name=config, overrides=list(overrides), return_hydra_config=True)
            records = user_wins(cfg, cfg.hydra.runtime.choices, list(overrides), config)
            keep_nulls(cfg, list(overrides), config)
            as_run = OmegaConf.to_container(compose_as_run(config, list(overrides)), resolve=False)
            assert as_run == {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
            return cfg, records

        yield compose_and_fix
    GlobalHydra.instance().clear()


def test_training_keeps_the_protocol_except_where_the_command_line_chose(composed):
    cfg, records = composed("train", "model=ffdnet", "preset=paper", "data_root=/sets",
                            "degradation@data.degradation=sigma0-55", "trainer.max_steps=10")
    assert cfg.data.degradation.sigma == [0, 55]              # the group choice, not the protocol's [0, 75]
    assert cfg.trainer.max_steps == 10                        # a value
    assert cfg.data.patch_size == 64 and cfg.optimizer.lr == 1e-4  # the protocol where the command line is silent
    assert cfg.trainer.max_epochs == -1
    by = {r["key"]: r["by"] for r in records}
    assert by["data.degradation.sigma"] == by["trainer.max_steps"] == "command line"
    assert by["data.patch_size"] == by["data.test_degradations"] == "preset"


def test_a_preset_key_the_command_line_does_not_touch_is_unchanged(composed):
    cfg, records = composed("test", "model=ffdnet", "preset=paper", "data_root=/sets")
    assert set(cfg.data.test_sets) == {"set12", "bsd68"}
    assert [d.sigma for d in cfg.data.test_degradations] == [15, 25, 50]
    assert records and all(r["by"] == "preset" for r in records)


def test_a_null_folder_picks_the_set_the_configuration_gives(composed):
    cfg, records = composed("test", "model=ffdnet", "preset=paper", "data_root=/sets", "data.test_sets={set12: null}")
    assert OmegaConf.to_container(cfg.data.test_sets) == {"set12": "${data_root}/set12"}  # bsd68 left out
    assert {r["key"]: r["by"] for r in records}["data.test_sets.set12"] == "preset"
    # the workflow's published preset: a weights entry's sets, then the model's names with null folders
    cfg, _ = composed("test", "model=dncnn", "data.test_sets={live1: /d/live1_gray, classic5: /d/classic5}",
                      "data.test_sets={live1: null, classic5: null}")
    assert OmegaConf.to_container(cfg.data.test_sets) == {"live1": "/d/live1_gray", "classic5": "/d/classic5"}


def test_a_null_test_folder_is_the_embedded_photos_or_one_line(tmp_path):
    from m3l.data.image_folders import ImageFolderDataModule
    from m3l.errors import M3LError

    data = ImageFolderDataModule(test_sets={"photos": None}, num_workers=0)
    data.setup("test")
    assert [s.dataset for s in data.test_sets_] == ["photos"] and len(data.test_sets_[0]) > 0
    with pytest.raises(M3LError, match=r"data.test_sets.set12 is null and nothing gives its folder"):
        ImageFolderDataModule(test_sets={"set12": None}, num_workers=0).setup("test")
