import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.datasets import CorrectDataset, EvalDataset, PatchDataset, collate
from m3l.data.deadleaves import dead_leaves_set
from m3l.data.degradations import GaussianNoise
from m3l.data.image_folders import ImageFolderDataModule
from m3l.errors import M3LError
from m3l.io.images import read_image

from conftest import write_images


def test_gaussian_noise_reproduces_the_published_test_protocol():
    # DnCNN's test script: np.random.seed(0); y = x + np.random.normal(0, sigma/255, x.shape), no clipping.
    clean = np.random.default_rng(1).random((13, 17)).astype(np.float32)
    np.random.seed(seed=0)
    expected = clean + np.random.normal(0, 25 / 255.0, clean.shape)
    noisy, side = GaussianNoise(25)(torch.from_numpy(clean)[None], np.random.RandomState(0))
    assert noisy.shape == (1, 13, 17)
    np.testing.assert_allclose(noisy[0].numpy(), expected, atol=1e-6)
    assert noisy.min() < 0 or noisy.max() > 1  # not clipped
    assert side["sigma"].item() == pytest.approx(25 / 255)


def test_gaussian_noise_color_uses_hwc_order():
    clean = np.random.default_rng(1).random((5, 6, 3)).astype(np.float32)
    expected = clean + np.random.RandomState(0).normal(0, 50 / 255.0, clean.shape)
    noisy, _ = GaussianNoise(50)(torch.from_numpy(clean).permute(2, 0, 1), np.random.RandomState(0))
    np.testing.assert_allclose(noisy.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_blind_noise_draws_sigma_in_range():
    noise = GaussianNoise([0, 55])
    sigmas = {GaussianNoise.__call__(noise, torch.zeros(1, 4, 4), np.random.RandomState(s))[1]["sigma"].item() * 255
              for s in range(20)}
    assert len(sigmas) == 20 and all(0 <= s <= 55 for s in sigmas)
    assert noise.name == "sigma0-55"


def test_dead_leaves_are_reproducible_and_cover_the_image():
    a, b = dead_leaves_set(2, 32, seed=3), dead_leaves_set(2, 32, seed=3)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], a[1])
    assert a[0].shape == (1, 32, 32) and 0 <= a[0].min() and a[0].max() <= 1
    assert len(np.unique(a[0])) > 10


def test_patch_dataset_gives_degraded_patches():
    torch.manual_seed(0)
    data = PatchDataset([torch.rand(1, 50, 60)], GaussianNoise(25), patch_size=16, length=5)
    item = data[0]
    assert len(data) == 5 and item["input"].shape == item["target"].shape == (1, 16, 16)
    assert 0.05 < (item["input"] - item["target"]).std() < 0.15


def test_eval_dataset_noise_is_the_same_every_time(tmp_path):
    files = write_images(tmp_path, {"a.png": (20, 10), "sub/b.png": (8, 8)})
    data = EvalDataset(files, tmp_path, GaussianNoise(15), channels=1, dataset="mine")
    assert torch.equal(data[0]["input"], data[0]["input"])
    assert data[1]["path"] == "sub/b.png" and data[0]["dataset"] == "mine" and data[0]["degradation"] == "sigma15"


def test_correct_dataset_reports_unreadable_files(tmp_path):
    good = write_images(tmp_path, {"good.png": (8, 8)})[0]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    data = CorrectDataset([good, bad], tmp_path)
    assert data[0]["input"].shape == (1, 8, 8)
    assert "error" in data[1]
    with pytest.warns(UserWarning, match="bad.png"):
        batch = collate([data[1]])
    assert batch["skipped"] == ["bad.png"]


def test_a_side_file_gives_its_folder_side_information(tmp_path):
    files = write_images(tmp_path, {"sigma15/a.png": (8, 8), "sigma50/b.png": (8, 8), "c.png": (8, 8)})
    (tmp_path / "sigma15" / "side.yaml").write_text("sigma: 15\n")
    (tmp_path / "sigma50" / "side.yaml").write_text("sigma: 50\nquality: 30\n")
    data = CorrectDataset(files, tmp_path, side={"sigma": torch.tensor(25 / 255)})
    assert data[0]["side"]["sigma"].item() == pytest.approx(15 / 255)
    assert data[1]["side"]["sigma"].item() == pytest.approx(50 / 255)
    assert data[1]["side"]["quality"].item() == pytest.approx(0.3)
    assert data[2]["side"]["sigma"].item() == pytest.approx(25 / 255)  # no side file: data.correct_side
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "side.yaml").write_text("- 15\n")
    bad = write_images(tmp_path, {"bad/d.png": (8, 8)})
    with pytest.raises(M3LError, match="bad/side.yaml"):
        CorrectDataset(bad, tmp_path)[0]


def test_read_image_converts_modes(tmp_path):
    Image.new("RGBA", (4, 3), (255, 0, 0, 10)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png", 3).shape == (3, 3, 4)
    assert read_image(tmp_path / "rgba.png", 3)[0].eq(1).all()
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png", 1).eq(1).all()


def test_datamodule_errors_name_the_key(tmp_path):
    with pytest.raises(M3LError, match="data.correct_dir: .*missing"):
        dm = ImageFolderDataModule(correct_dir=str(tmp_path / "missing"))
        dm.setup("predict")
    (tmp_path / "empty").mkdir()
    with pytest.raises(M3LError, match="no images"):
        ImageFolderDataModule(correct_dir=str(tmp_path / "empty")).setup("predict")
    write_images(tmp_path / "small", {"a.png": (8, 8)})
    with pytest.raises(M3LError, match="smaller than data.patch_size=40"):
        ImageFolderDataModule(train_dir=str(tmp_path / "small")).setup("fit")


def test_datamodule_tests_every_set_and_degradation(tmp_path):
    write_images(tmp_path / "a", {"1.png": (16, 16), "2.png": (16, 16)})
    write_images(tmp_path / "b", {"1.png": (16, 16)})
    dm = ImageFolderDataModule(test_sets={"a": str(tmp_path / "a"), "b": str(tmp_path / "b")},
                               test_degradations=[GaussianNoise(15), GaussianNoise(50)], num_workers=0)
    dm.setup("test")
    loaders = dm.test_dataloader()
    assert [(l.dataset.dataset, l.dataset.degradation.name, len(l.dataset)) for l in loaders] == [
        ("a", "sigma15", 2), ("a", "sigma50", 2), ("b", "sigma15", 1), ("b", "sigma50", 1)]
