rule degrade:
    """The degraded test images a model is corrected on: <degradation>/<image>.png, as 8-bit PNGs, and
    their clean targets at the same paths (the example figures score against them)."""
    output:
        degraded=directory("results/{model}/degraded/{dataset}"),
        clean=directory("results/{model}/clean/{dataset}"),
    log:
        "results/{model}/degraded/{dataset}.log",
    params:
        overrides=lambda wildcards: overrides(wildcards.model, "test"),
    script:
        "../scripts/degrade.py"


rule correct:
    """Correct the degraded test images of one test set with a trained model."""
    input:
        checkpoint="results/{model}/model.ckpt",
        images="results/{model}/degraded/{dataset}",
    output:
        directory("results/{model}/corrected/{dataset}"),
    log:
        "results/{model}/correct/{dataset}/console.log",
    threads: 2
    params:
        args=m3l_args(
            "correct",
            "checkpoint=results/{model}/model.ckpt",
            "data.correct_dir=results/{model}/degraded/{dataset}",
            "serializer.root_dir=results/{model}/corrected/{dataset}",
            "hydra.run.dir=results/{model}/correct/{dataset}",
        ),
    shell:
        "python -m m3l.run.correct {params.args} threads={threads} > {log:q} 2>&1"
