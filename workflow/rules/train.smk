rule train:
    """Train a model. Its run folder keeps checkpoints/last.ckpt: rerunning a killed job resumes from
    it (resume=auto); with other settings than the last run's, training starts over."""
    output:
        "results/{model}/model.ckpt",
    log:
        "results/{model}/train/console.log",
    threads: 2
    resources:
        gpu=model_devices,
    params:
        run_dir="results/{model}/train",
        fresh_run=Path(workflow.basedir) / "scripts" / "fresh_run.py",
        args=m3l_args(
            "train",
            "resume=auto",
            "checkpoint_out=results/{model}/model.ckpt",
            "hydra.run.dir=results/{model}/train",
        ),
    shell:
        "python {params.fresh_run:q} {params.run_dir:q} {params.args} && "
        "python -m m3l.run.train {params.args} threads={threads} > {log:q} 2>&1"
