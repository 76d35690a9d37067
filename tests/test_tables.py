import pandas as pd

from m3l.tables import benchmark, benchmark_markdown, summarize


def test_summary_means_per_set_and_degradation_with_psnrb():
    rows = [{"dataset": "live1", "degradation": "jpeg10", "image": f"{i}.png", "psnr": 27.0 + i, "ssim": 0.5,
             "psnrb": 25.0 + i} for i in range(3)]
    summary = summarize(rows)
    assert summary.to_dict("records") == [{"dataset": "live1", "degradation": "jpeg10", "n_images": 3,
                                           "psnr": 28.0, "ssim": 0.5, "psnrb": 26.0}]


def test_benchmark_table_keeps_psnrb_where_measured():
    metrics = {
        "identity": pd.DataFrame([{"dataset": "live1", "degradation": "jpeg10", "n_images": 29, "psnr": 27.77,
                                   "ssim": 0.773, "psnrb": 25.33}]),
        "dncnn": pd.DataFrame([{"dataset": "set12", "degradation": "sigma25", "n_images": 12, "psnr": 30.4,
                                "ssim": 0.86}]),
    }
    table = benchmark(metrics)
    assert list(table.columns) == ["model", "live1/jpeg10/psnr", "live1/jpeg10/ssim", "live1/jpeg10/psnrb",
                                   "set12/sigma25/psnr", "set12/sigma25/ssim"]
    markdown = benchmark_markdown(table)
    assert "| identity | 27.77 / 0.7730 / 25.33 | – |" in markdown
    assert "| dncnn | – | 30.40 / 0.8600 |" in markdown
    assert "PSNR-B" in markdown
    assert "PSNR-B" not in benchmark_markdown(benchmark({"dncnn": metrics["dncnn"]}))
