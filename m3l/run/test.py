"""Test a model: ``python -m m3l.run.test model=NAME checkpoint=PATH [overrides]``.

Builds ``net`` from the config (so ``net.*`` overrides apply), loads the checkpoint's weights, runs
every test set x degradation of the data module, prints the table and writes two CSVs:
``metrics_csv`` (one row per test set and degradation: dataset, degradation, n_images, psnr, ssim)
and ``per_image_csv`` (one row per image). Both default to the run directory.

On several ranks (``trainer.devices=N``, or N Slurm tasks) each rank tests a share of the images; their rows are
gathered (:func:`m3l.engine.distributed.gather_rows`, the images the sampler repeated counted once), so the tables are
exactly the single-process ones, and global rank 0 alone prints and writes them.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from m3l.run.common import build_datamodule, build_module, build_trainer, entry, load_checkpoint


def print_table(summary, title: str) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in summary.columns:
        table.add_column(column, justify="right" if pd.api.types.is_numeric_dtype(summary[column]) else "left")
    for row in summary.itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


def test(cfg: DictConfig) -> None:
    import pandas as pd

    from m3l.engine.restoration import RestorationModule
    from m3l.io.tables import summarize, write_csv

    module, datamodule = build_module(cfg), build_datamodule(cfg)
    weights = load_checkpoint(module, cfg)  # checkpoint=PATH, or the net's pretrained weights
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:  # several ranks: rank 0 holds every rank's rows and writes the tables
        return

    if isinstance(module, RestorationModule):
        per_image = pd.DataFrame(module.test_rows)
        summary = summarize(per_image)
        write_csv(per_image, cfg.per_image_csv)
        print(f"per-image results: {cfg.per_image_csv}")
        if getattr(module, "frame_rows", None) and cfg.get("per_frame_csv"):  # video: per_image has a row per clip
            write_csv(pd.DataFrame(module.frame_rows), cfg.per_frame_csv)
            print(f"per-frame results: {cfg.per_frame_csv}")
    else:  # a user's own LightningModule: what it logged, one row per test dataloader
        summary = pd.DataFrame(results)
    write_csv(summary, cfg.metrics_csv)
    print_table(summary, f"{cfg.name}: {weights}")
    print(f"metrics: {cfg.metrics_csv}")


main = entry(test, "test")

if __name__ == "__main__":
    main()
