"""Degradations: JPEG through Pillow, blur kernels, composition, names, seeding, side information."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.degradations import (JPEG, Clean, Compose, GaussianBlur, GaussianNoise, MotionBlur, OneOf,
                                   convolve, gaussian_kernel, motion_kernel, side_from_config)


def image(channels=1, h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (channels, h, w)).astype(np.float32) / 255)


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_jpeg_is_pillow_at_that_quality_with_the_quality_as_side(channels, mode):
    clean = image(channels)
    degraded, side = JPEG(20)(clean, np.random.RandomState(0))
    pixels = (clean * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(buffer, "JPEG", quality=20)
    expected = np.asarray(Image.open(buffer)).reshape(clean.shape[1], clean.shape[2], channels)
    assert torch.equal(degraded, torch.from_numpy(expected.transpose(2, 0, 1).astype(np.float32) / 255))
    assert side["quality"].item() == pytest.approx(0.20)
    assert JPEG(20).name == "jpeg20"


def test_jpeg_range_draws_the_quality_per_image_reproducibly():
    jpeg = JPEG([10, 40])
    qualities = {round(jpeg(image(), np.random.RandomState(s))[1]["quality"].item() * 100) for s in range(30)}
    assert qualities <= set(range(10, 41)) and len(qualities) > 10
    a, b = jpeg(image(), np.random.RandomState(3)), jpeg(image(), np.random.RandomState(3))
    assert torch.equal(a[0], b[0]) and jpeg.name == "jpeg10-40"


def test_gaussian_kernels_sum_to_one_and_anisotropic_ones_are_rotated():
    iso = gaussian_kernel(15, 2.0)
    assert iso.sum() == pytest.approx(1.0) and np.allclose(iso, iso.T)
    aniso = gaussian_kernel(15, 3.0, 1.0, angle=np.pi / 4)
    assert aniso.sum() == pytest.approx(1.0)
    assert aniso[2, 2] > aniso[2, 12]  # elongated along the diagonal
    assert np.allclose(gaussian_kernel(15, 3.0, 1.0, angle=np.pi / 2), gaussian_kernel(15, 1.0, 3.0), atol=1e-6)


def test_motion_kernels_are_random_normalized_and_seeded():
    a, b = motion_kernel(19, np.random.RandomState(0)), motion_kernel(19, np.random.RandomState(1))
    assert a.shape == (19, 19) and a.sum() == pytest.approx(1.0) and (a >= 0).all()
    assert not np.allclose(a, b) and np.array_equal(a, motion_kernel(19, np.random.RandomState(0)))
    assert (a > 0).sum() > 19  # a path, not a point


def test_convolution_keeps_the_size_and_a_delta_kernel_is_identity():
    x = image(3, 17, 23)
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    assert torch.allclose(convolve(x, delta), x)
    shift = np.zeros((3, 3), np.float32)
    shift[1, 0] = 1  # convolution: output(x) = input(x + 1)
    assert torch.allclose(convolve(x, shift)[..., :-1], x[..., 1:])


@pytest.mark.parametrize("blur", [GaussianBlur(1.6, 9), GaussianBlur([0.5, 3], 11, anisotropic=True), MotionBlur(9)])
def test_blurs_keep_the_size_blur_and_give_the_kernel(blur):
    x = image(1, 30, 31)
    y, side = blur(x, np.random.RandomState(0))
    assert y.shape == x.shape and side["kernel"].shape == (blur.size, blur.size)
    assert (y[:, 1:] - y[:, :-1]).abs().mean() < (x[:, 1:] - x[:, :-1]).abs().mean() / 2


def test_compose_applies_in_order_merges_sides_and_names():
    blur_noise = Compose([GaussianBlur(2.0, 9), GaussianNoise(5)])
    x = image()
    y, side = blur_noise(x, np.random.RandomState(0))
    assert set(side) == {"kernel", "sigma"} and blur_noise.name == "gblur2+sigma5"
    blurred, _ = GaussianBlur(2.0, 9)(x, np.random.RandomState(0))
    assert 3 / 255 < (y - blurred).std() < 7 / 255


def test_one_of_picks_each_step_and_drops_side():
    pick = OneOf([GaussianNoise(25), JPEG(10)])
    results = [pick(image(), np.random.RandomState(s)) for s in range(10)]
    assert all(side == {} for _, side in results)
    on_grid = [torch.equal((y * 255).round(), y * 255) for y, _ in results]  # JPEG output is 8-bit
    assert any(on_grid) and not all(on_grid)


def test_clean_is_the_identity_and_names_are_distinct():
    x = image()
    assert torch.equal(Clean()(x, np.random.RandomState(0))[0], x)
    names = [d.name for d in (GaussianNoise(25), GaussianNoise([0, 55]), JPEG(10), GaussianBlur(1.6),
                              GaussianBlur([1, 3], anisotropic=True), MotionBlur(19), Clean())]
    assert len(set(names)) == len(names)


def test_side_from_config_uses_the_degradations_units():
    side = side_from_config({"sigma": 25, "quality": 10, "other": 2})
    assert side["sigma"].item() == pytest.approx(25 / 255) and side["quality"].item() == pytest.approx(0.1)
    assert side["other"].item() == 2


def test_bad_parameters_fail_clearly():
    with pytest.raises(ValueError, match="quality"):
        JPEG([10, 20, 30])
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(1.0, size=10)
    with pytest.raises(ValueError, match="anisotropic"):
        GaussianBlur(1.0, anisotropic=True)
