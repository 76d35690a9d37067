import re

import pandas as pd

from m3l.tables import benchmark, benchmark_html, benchmark_markdown, input_summary, summarize


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


def test_input_summary_scores_the_degraded_images_once_each():
    rows = [{"dataset": "set12", "degradation": "sigma25", "image": f"{i}.png", "psnr": 30.0, "ssim": 0.9,
             "psnr_input": 20.0 + i, "ssim_input": 0.4} for i in range(2)]
    inputs = input_summary([pd.DataFrame(rows), pd.DataFrame(rows)])  # two models, the same test images
    assert inputs.to_dict("records") == [{"dataset": "set12", "degradation": "sigma25", "n_images": 2,
                                          "psnr": 20.5, "ssim": 0.4}]
    assert input_summary(pd.DataFrame(rows).drop(columns=["psnr_input", "ssim_input"])).empty  # another method's


def test_benchmark_html_is_a_table_with_the_rounded_cells():
    table = benchmark({"degraded input": pd.DataFrame([{"dataset": "set12", "degradation": "sigma25", "n_images": 12,
                                                         "psnr": 20.17, "ssim": 0.41}]),
                       "dncnn": pd.DataFrame([{"dataset": "set12", "degradation": "sigma25", "n_images": 12,
                                               "psnr": 30.4351, "ssim": 0.86123}])})
    page = benchmark_html(table, "preset <tiny>")
    assert page.startswith("<p>preset &lt;tiny&gt;</p>\n<table")
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    assert {"set12/sigma25", "PSNR (dB)", "SSIM"} <= set(sum(cells[:2], []))
    assert ["degraded input", "20.17", "0.4100"] in cells and ["dncnn", "30.44", "0.8612"] in cells
