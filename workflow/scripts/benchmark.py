"""The benchmark over every model: CSV and Markdown tables (rows models, columns test set x
degradation) and a plot of the PSNRs."""

import os
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from m3l.tables import benchmark, benchmark_markdown, write_csv

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
models, inputs, output = snakemake.params.models, snakemake.input, snakemake.output  # noqa: F821
table = benchmark({model: pd.read_csv(path) for model, path in zip(models, inputs)})
write_csv(table, output.csv)

md = Path(output.md)
md.with_name(f".{md.name}.tmp").write_text(benchmark_markdown(table))
os.replace(md.with_name(f".{md.name}.tmp"), md)

psnr = table.set_index("model")[[c for c in table.columns if c.endswith("/psnr")]]
psnr.columns = [c.removesuffix("/psnr") for c in psnr.columns]
axes = psnr.T.plot.bar(figsize=(max(4, 1.2 * psnr.shape[1] * max(1, len(models)) ** 0.5 + 2), 4), rot=0)
axes.set_ylabel("PSNR (dB)")
axes.set_ylim(max(0, psnr.min().min() - 3), psnr.max().max() + 1)
axes.set_title("m3l benchmark")
axes.legend(title="model", fontsize="small")
plt.tight_layout()
png = Path(output.png)
plt.savefig(png.with_name(f".{png.name}.tmp"), format="png", dpi=120)
os.replace(png.with_name(f".{png.name}.tmp"), png)
print(table.to_string())
