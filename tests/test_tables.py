import re

import pandas as pd

from m3l.io.tables import benchmark, benchmark_html, benchmark_markdown, input_summary, published_html, summarize


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
    assert list(table.columns) == ["model", "set12/sigma25/psnr", "set12/sigma25/ssim", "live1/jpeg10/psnr",
                                   "live1/jpeg10/ssim", "live1/jpeg10/psnrb"]  # paper order: Set12 first
    markdown = benchmark_markdown(table)
    assert "| identity | – | 27.77 / 0.7730 / 25.33 |" in markdown
    assert "| dncnn | 30.40 / 0.8600 | – |" in markdown
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


def test_benchmark_columns_come_in_paper_order_and_the_best_is_marked():
    rows = lambda *cells: pd.DataFrame([{"dataset": d, "degradation": g, "n_images": 1, "psnr": p, "ssim": s}
                                        for d, g, p, s in cells])
    table = benchmark({"degraded input": rows(("bsd68", "sigma50", 14.2, 0.2), ("set12", "sigma25", 20.2, 0.4)),
                       "a": rows(("bsd68", "sigma50", 26.2, 0.7), ("set12", "sigma25", 30.4, 0.86),
                                 ("set12", "sigma15", 32.8, 0.9), ("bsd68", "sigma15", 31.7, 0.89)),
                       "b": rows(("set12", "sigma25", 30.43, 0.85), ("bsd68", "sigma50", 26.2, 0.71))})
    # Set12 before BSD68 (the standard sets' order), sigma 15 before 25 before 50, whatever order the rows came in
    assert [c.removesuffix("/psnr") for c in table.columns if c.endswith("/psnr")] == [
        "set12/sigma15", "set12/sigma25", "bsd68/sigma15", "bsd68/sigma50"]
    markdown = benchmark_markdown(table)
    assert "| b | – | **30.43** / 0.8500 | – | **26.20** / 0.7100 |" in markdown  # a tie marks both
    assert "| a | 32.80 / 0.9000 | 30.40 / 0.8600 | 31.70 / 0.8900 | **26.20** / 0.7000 |" in markdown
    assert "| degraded input | – | 20.20 / 0.4000 | – | 14.20 / 0.2000 |" in markdown  # never marked
    page = benchmark_html(table, "caption", published_html(table, {"b": {"set12/sigma25/psnr": 30.45}}))
    head = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    assert head.count("<tr>") == 2 and "<th></th>" not in head  # two header rows, none empty
    assert "<tr><th>b</th><td>–</td><td>–</td><td><b>30.43</b></td><td>0.8500</td>" in page
    assert "<td>set12/sigma25/psnr</td><td>30.43</td><td>30.45</td><td>-0.02</td>" in page
    assert "NaN" not in page and "nan" not in markdown
