import numpy as np
import torch
from PIL import Image

from m3l.io.images import list_images, write_png
from m3l.engine import metrics


def test_write_png_rounds_and_leaves_no_temporary_file(tmp_path):
    image = torch.tensor([[[0.0, 0.4 / 255, 0.6 / 255, 254.6 / 255, 1.2]]])
    path = write_png(image, tmp_path / "sub" / "x.png")
    assert np.array(Image.open(path)).tolist() == [[0, 0, 1, 255, 255]]
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]


def test_write_png_color(tmp_path):
    image = torch.rand(3, 5, 7)
    array = np.array(Image.open(write_png(image, tmp_path / "c.png")))
    assert array.shape == (5, 7, 3)
    assert np.abs(array / 255 - image.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_list_images_recursive_and_single(tmp_path):
    for name in ["b.png", "a/c.JPG", "notes.txt", ".hidden.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a/c.JPG", "b.png"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]


def test_psnr_on_8bit_levels():
    target = torch.zeros(1, 1, 10, 10)
    output = target.clone()
    output[..., 0, :] = 10 / 255  # MSE = 10 rows of 100 pixels... one row of 10 pixels at 10 levels
    expected = 10 * np.log10(255**2 / (10 * 10**2 / 100))
    assert metrics.psnr(output, target).item() == pytest_approx(expected)
    # 0.4 of a level rounds away: the output is compared after rounding to 8 bits
    assert torch.isinf(metrics.psnr(target + 0.4 / 255, target)).all()


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=1e-4)


def test_ssim_identical_is_one():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(metrics.ssim(x, x).double(), torch.ones(2, dtype=torch.float64))
