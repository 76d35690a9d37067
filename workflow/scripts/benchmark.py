"""The benchmark over every model: CSV and Markdown tables (rows models, columns test set x
degradation) and a plot of the PSNRs."""

import sys

import pandas as pd

from m3l.atomic import atomic_write, remove_temporaries
from m3l.extras import require
from m3l.hub import WEIGHTS
from m3l.tables import benchmark, benchmark_markdown, published_markdown, write_csv

matplotlib = require("matplotlib", "workflow", "the workflow's benchmark plot")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
models, inputs, output = snakemake.params.models, snakemake.input, snakemake.output  # noqa: F821
table = benchmark({model: pd.read_csv(path) for model, path in zip(models, inputs)})
write_csv(table, output.csv)

remove_temporaries([output.md, output.png])  # what a killed earlier run left
with atomic_write(output.md, "w") as f:  # complete or absent, even if the job is killed
    # where a model's `weights` are an entry of the weights table: its published numbers and the delta
    published = {m: WEIGHTS[w].metrics for m, w in snakemake.params.weights.items() if w in WEIGHTS}  # noqa: F821
    f.write(benchmark_markdown(table) + published_markdown(table, published))

psnr = table.set_index("model")[[c for c in table.columns if c.endswith("/psnr")]]
psnr.columns = [c.removesuffix("/psnr") for c in psnr.columns]
axes = psnr.T.plot.bar(figsize=(max(4, 1.2 * psnr.shape[1] * max(1, len(models)) ** 0.5 + 2), 4), rot=0)
axes.set_ylabel("PSNR (dB)")
axes.set_ylim(max(0, psnr.min().min() - 3), psnr.max().max() + 1)
axes.set_title("m3l benchmark")
axes.legend(title="model", fontsize="small")
plt.tight_layout()
with atomic_write(output.png) as f:
    plt.savefig(f, format="png", dpi=120)
print(table.to_string())
