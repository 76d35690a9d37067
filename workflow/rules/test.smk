rule test:
    """Test a model on every test set x degradation: one row per pair, and one per image."""
    input:
        "results/{model}/model.ckpt",
    output:
        metrics="results/{model}/metrics.csv",
        per_image="results/{model}/per_image.csv",
    log:
        "results/{model}/test/console.log",
    threads: 2
    params:
        args=m3l_args(
            "test",
            "checkpoint=results/{model}/model.ckpt",
            "metrics_csv=results/{model}/metrics.csv",
            "per_image_csv=results/{model}/per_image.csv",
            "hydra.run.dir=results/{model}/test",
        ),
    shell:
        "python -m m3l.run.test {params.args} threads={threads} > {log:q} 2>&1"
