"""The benchmark over every model: CSV, Markdown and HTML tables (rows: the degraded input, then the models;
columns test set x degradation) and a plot of the PSNRs, the degraded input's bar beside the models'. Each
names the workflow preset the results were made with."""

import sys

import pandas as pd

from m3l.io.atomic import atomic_write, remove_temporaries
from m3l.run.extras import require
from m3l.hub import WEIGHTS
from m3l.io.tables import (INPUT_ROW, benchmark, benchmark_html, benchmark_markdown, input_summary, published_html,
                        published_markdown, write_csv)

matplotlib = require("matplotlib", "workflow", "the workflow's benchmark plot")
matplotlib.use("Agg")
plt = require("matplotlib.pyplot", "workflow", "the workflow's benchmark plot")

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
models, inputs, output = snakemake.params.models, snakemake.input, snakemake.output  # noqa: F821
preset = snakemake.params.preset  # noqa: F821
inputs_row = input_summary([pd.read_csv(path) for path in inputs.per_image])  # what correcting nothing scores
table = benchmark({**({INPUT_ROW: inputs_row} if len(inputs_row) else {}),
                   **{model: pd.read_csv(path) for model, path in zip(models, inputs.metrics)}})
write_csv(table, output.csv)
released, data_root = snakemake.params.published, snakemake.params.data_root  # noqa: F821
weights = "the authors' released weights, not trained here" if released else "models trained by this workflow"
data = f"test sets from {data_root}" if data_root else "m3l's embedded test images"
about = (f"m3l benchmark, workflow preset {preset}: {weights}, {data}; mean PSNR (dB) and SSIM over each test "
         f"set, the best of each column in bold; '{INPUT_ROW}' scores the test images as the models get them, "
         "before correction.")

remove_temporaries([output.md, output.html, output.png])  # what a killed earlier run left
with atomic_write(output.md, "w") as f:  # complete or absent, even if the job is killed
    # where a model's `weights` are an entry of the weights table: its published numbers and the delta
    published = {m: WEIGHTS[w].metrics for m, w in snakemake.params.weights.items() if w in WEIGHTS}  # noqa: F821
    f.write(benchmark_markdown(table) + f"\n{about}\n" + published_markdown(table, published))
with atomic_write(output.html, "w") as f:
    f.write(benchmark_html(table, about, published_html(table, published)))

psnr = table.set_index("model")[[c for c in table.columns if c.endswith("/psnr")]]
psnr.columns = [c.removesuffix("/psnr") for c in psnr.columns]
axes = psnr.T.plot.bar(figsize=(max(4, 1.2 * psnr.shape[1] * max(1, len(psnr)) ** 0.5 + 2), 4), rot=0)
if INPUT_ROW in psnr.index:  # the degraded input: a hatched grey bar, the level a model must beat
    for bar in axes.containers[list(psnr.index).index(INPUT_ROW)]:
        bar.set(facecolor="lightgrey", edgecolor="dimgrey", hatch="//")
for bars in axes.containers:  # the values themselves: differences of 0.01-1 dB are what a reader compares
    axes.bar_label(bars, fmt="%.2f", fontsize="x-small", rotation=90, padding=2)
axes.set_ylabel("PSNR (dB)")
# the axis starts just below the lowest bar (the degraded input's where there is one), not at 0: the models'
# differences stay visible
low, high = psnr.min().min(), psnr.max().max()
axes.set_ylim(max(0, low - 0.1 * (high - low) - 0.5), high + 0.25 * (high - low) + 0.5)
axes.set_title(f"m3l benchmark (workflow preset {preset})")
axes.legend(title="model", fontsize="small")  # after the recolouring: the legend shows the hatched bar
plt.tight_layout()
with atomic_write(output.png) as f:
    plt.savefig(f, format="png", dpi=120)
print(table.to_string())
