"""Metrics under the published protocols: SSIM with valid windows, PSNR-B, BT.601 luma, border crop."""

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from m3l.engine import metrics


def test_y_channel_is_matlab_rgb2ycbcr():
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 200, 30]], dtype=torch.float64) / 255
    y = metrics.rgb_to_y(rgb.T.reshape(1, 3, 4, 1)).reshape(-1) * 255
    # MATLAB: rgb2ycbcr(uint8([0 0 0; 255 255 255; 255 0 0; 10 200 30])) -> Y = 16, 235, 81, 122
    assert y.tolist() == [16, 235, 81, 122]


def test_psnr_on_y_and_with_a_crop_border():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 20, 20)
    output = target.clone()
    output[..., :2, :] = 0  # damage only the border rows
    assert torch.isinf(metrics.psnr(output, target, crop_border=2)).all()
    assert (metrics.psnr(output, target) < 30).all()
    gray = metrics.psnr(output, target, y_channel=True)
    expected = metrics.psnr(metrics.rgb_to_y(metrics.quantize(output.double())),
                            metrics.rgb_to_y(metrics.quantize(target.double())))
    assert torch.allclose(gray, expected)


def test_ssim_is_wangs_reference_with_valid_windows():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (30, 37)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).round()
    x = np.arange(11) - 5
    g = np.exp(-x**2 / 4.5)
    window = np.outer(g, g) / np.outer(g, g).sum()
    f = lambda im: convolve2d(im, window, mode="valid")  # noqa: E731  (the reference ssim_index.m)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = f(a), f(b)
    saa, sbb, sab = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    reference = (((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma**2 + mb**2 + c1) * (saa + sbb + c2))).mean()
    t = lambda im: torch.from_numpy(im / 255)[None, None]  # noqa: E731
    assert metrics.ssim(t(b), t(a)).item() == pytest.approx(reference, abs=1e-6)
    assert metrics.ssim(t(a), t(a)).item() == pytest.approx(1.0)


def test_ssim_works_on_images_smaller_than_the_window():
    x = torch.rand(1, 1, 8, 9)
    assert metrics.ssim(x, x).item() == pytest.approx(1.0)


def test_blocking_effect_factor_sees_8x8_block_edges():
    smooth = torch.linspace(0, 1, 32).repeat(32, 1)[None, None].double()
    blocky = smooth.clone()
    blocky[..., :, 8:16] += 0.1  # steps exactly at block boundaries (between columns 7|8 and 15|16)
    assert metrics.blocking_effect_factor(smooth).item() == 0
    bef = metrics.blocking_effect_factor(blocky).item()
    # 2 boundary columns of 32 rows with step 0.1^2; boundary pixel count H * (W / 8 - 1) + W * (H / 8 - 1) = 192
    assert bef == pytest.approx(np.log2(8) / np.log2(32) * (2 * 32 * 0.01 / 192 - 0), rel=0.05)
    shifted = smooth.clone()
    shifted[..., :, 9:17] += 0.1  # the same steps off the block grid: no blocking effect
    assert metrics.blocking_effect_factor(shifted).item() == 0


def test_psnrb_is_psnr_with_the_output_bef_added_to_the_mse():
    torch.manual_seed(0)
    target = torch.rand(1, 1, 32, 32)
    output = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    x, y = metrics.prepare(output), metrics.prepare(target)
    mse = ((x - y) ** 2).mean()
    expected = 10 * torch.log10(1 / (mse + metrics.blocking_effect_factor(x)[0, 0]))
    assert metrics.psnrb(output, target).item() == pytest.approx(expected.item(), abs=1e-5)
    assert metrics.psnrb(output, target).item() <= metrics.psnr(output, target).item() + 1e-4


def test_evaluate_returns_the_requested_metrics():
    x = torch.rand(2, 3, 16, 16)
    values = metrics.evaluate(x, x.flip(0), ("psnr", "ssim", "psnrb"), y_channel=True, crop_border=1)
    assert list(values) == ["psnr", "ssim", "psnrb"] and all(v.shape == (2,) for v in values.values())


def test_metric_columns_come_from_the_metrics_table():
    """One table of metric columns (m3l.engine.metrics.METRICS): tables' order and labels, summaries and the
    metrics config key read it."""
    from m3l.engine.metrics import DEFAULT_METRICS, METRICS, protocol
    from m3l.io import tables

    assert tables.METRIC_LABELS == {name: metric.label for name, metric in METRICS.items()}
    assert tables.METRIC_ORDER == tuple(METRICS) and tables.SUMMARY_COLUMNS[3:] == list(DEFAULT_METRICS)
    rows = [{"dataset": "s", "degradation": "d", "image": i, **{n: float(i) for n in METRICS}} for i in range(2)]
    assert list(tables.summarize(rows).columns)[3:] == list(METRICS)
    assert protocol({"psnrb": True})[0] == tuple(METRICS) and protocol({})[0] == DEFAULT_METRICS
