"""Write the degraded images of one test set, as the model's data module makes them for testing
(same degradations, same seeds), as 8-bit PNGs: ``<out>/<degradation>/<image>.png``; the clips of a video model as folders of PNG
frames, ``<out>/<degradation>/<clip>/``. Their clean targets go to the same paths under the ``clean`` output (what the
example figures score each panel against)."""

import sys
from pathlib import Path

from hydra import initialize_config_module
from hydra.utils import instantiate

import m3l  # noqa: F401  (registers the m3l.* config resolvers)
from m3l.io.atomic import atomic_write
from m3l.data.datasets import SIDE_FILE
from m3l.data.degradations import SIDE_SCALE
from m3l.io.clips import is_video, write_clip
from m3l.io.images import write_png
from m3l.run.common import register_search_path
from m3l.run.precedence import compose_as_run

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
register_search_path()
with initialize_config_module("m3l.configs", version_base="1.3"):
    cfg = compose_as_run("test", snakemake.params.overrides)  # noqa: F821  (as m3l.run.test composes it)
datamodule = instantiate(cfg.data, _convert_="all")
datamodule.setup("test")
out, clean = Path(snakemake.output.degraded), Path(snakemake.output.clean)  # noqa: F821
dataset = snakemake.wildcards.dataset  # noqa: F821
sets = [s for s in datamodule.test_sets_ if s.dataset == dataset]
if not sets:
    names = sorted({s.dataset for s in datamodule.test_sets_})
    raise SystemExit(f"test_sets: {dataset!r} is not a test set of this model (it has: {', '.join(names)})")
for test_set in sets:
    for index in range(len(test_set)):
        item = test_set[index]
        if item["input"].ndim == 4:  # a clip (video models): a folder of PNG frames
            relative = Path(item["degradation"]) / item["path"]
            relative = relative.with_suffix("") if is_video(relative) else relative
            for folder, key in ((out, "input"), (clean, "target")):
                write_clip(item[key].clamp(0, 1), folder / relative)
        else:
            relative = Path(item["degradation"]) / Path(item["path"]).with_suffix(".png")
            for folder, key in ((out, "input"), (clean, "target")):
                write_png(item[key].clamp(0, 1), folder / relative)
        path = out / relative
        print(path)
        side = {k: round(float(v) * SIDE_SCALE[k], 4) for k, v in item["side"].items()
                if k in SIDE_SCALE and v.numel() == 1}  # clips: per-frame values, given by data.correct_side
        if side and not (path.parent / SIDE_FILE).exists():
            with atomic_write(path.parent / SIDE_FILE, "w") as f:
                f.write("".join(f"{k}: {v:g}\n" for k, v in side.items()))
