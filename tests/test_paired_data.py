"""Paired folders (GoPro / SIDD style): pairing by path, aligned crops, whole-pair evaluation, errors."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_images
from m3l.data.paired_folders import PairedFolderDataModule, find_pairs
from m3l.errors import M3LError


def gopro(root):
    for seq, seed in (("GOPR01", 0), ("GOPR02", 1)):
        sizes = {f"{seq}/blur/{i:06d}.png": (40, 36) for i in range(2)}
        write_images(root, sizes, mode="RGB", seed=seed)
        write_images(root, {k.replace("/blur/", "/sharp/"): v for k, v in sizes.items()}, mode="RGB", seed=seed + 10)
        write_images(root, {k.replace("/blur/", "/blur_gamma/"): v for k, v in sizes.items()}, mode="RGB")


def test_pairs_are_found_by_path_and_blur_gamma_is_not_an_input(tmp_path):
    gopro(tmp_path)
    pairs = find_pairs(tmp_path, "/blur/", "/sharp/", "data.train_dir")
    assert [name for _, _, name in pairs] == ["GOPR01/blur/000000.png", "GOPR01/blur/000001.png",
                                             "GOPR02/blur/000000.png", "GOPR02/blur/000001.png"]
    assert all(t.parent.name == "sharp" and t.name == i.name for i, t, _ in pairs)


def test_sidd_style_names_and_a_missing_target(tmp_path):
    write_images(tmp_path, {"0001/0001_NOISY_SRGB_010.PNG": (8, 8), "0001/0001_GT_SRGB_010.PNG": (8, 8),
                            "0002/0002_NOISY_SRGB_010.PNG": (8, 8)})
    with pytest.raises(M3LError, match="0002_NOISY_SRGB_010.PNG has no target .*0002_GT_SRGB_010.PNG"):
        find_pairs(tmp_path, "NOISY", "GT", "data.test_sets.sidd")


def test_training_crops_are_aligned_and_tests_use_whole_pairs(tmp_path):
    gopro(tmp_path)
    # make each target a known function of its input: the crops must keep that relation
    for blur in tmp_path.rglob("blur/*.png"):
        (blur.parent.parent / "sharp" / blur.name).write_bytes(blur.read_bytes())
    data = PairedFolderDataModule(train_dir=str(tmp_path), val_dir=str(tmp_path), test_sets={"g": str(tmp_path)},
                                  input="/blur/", target="/sharp/", patch_size=16, patches_per_epoch=6,
                                  train_batch_size=3, num_workers=0)
    data.setup("fit")
    data.setup("test")
    for batch in data.train_dataloader():
        assert batch["input"].shape == (3, 3, 16, 16) and torch.equal(batch["input"], batch["target"])
    (test,) = data.test_dataloader()
    items = list(test)
    assert len(items) == 4 and items[0]["input"].shape == (1, 3, 36, 40)
    assert items[0]["degradation"] == ["real"] and items[0]["dataset"] == ["g"]


def test_unset_or_empty_folders_fail_clearly(tmp_path):
    with pytest.raises(M3LError, match="data.train_dir is not set"):
        PairedFolderDataModule(num_workers=0).setup("fit")
    write_images(tmp_path, {"a.png": (8, 8)})
    with pytest.raises(M3LError, match="no image under .* has '/input/' in its path"):
        PairedFolderDataModule(train_dir=str(tmp_path), num_workers=0).setup("fit")


@pytest.mark.slow
def test_paired_test_sets_through_the_test_command(run_m3l, tmp_path):
    gopro(tmp_path / "GOPRO")
    run_m3l("test", "model=identity", "data=paired", "data.test_sets={gopro: GOPRO}", "data.num_workers=0",
            "data.degradation=gopro_blur", "trainer.enable_progress_bar=false", "hydra.run.dir=run")
    summary = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary[["dataset", "degradation", "n_images"]].values.tolist() == [["gopro", "gopro_blur", 4]]
    assert np.isfinite(summary.psnr).all()  # identity: the blurry input against the sharp target
