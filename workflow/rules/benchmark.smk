# Tables, plot and report pages: quick, so they run where snakemake runs, not as Slurm jobs.
localrules:
    degrade,
    benchmark,
    examples,


rule benchmark:
    """One table over every model: rows the degraded input and the models, columns test set x degradation
    (PSNR / SSIM); the HTML table opens in the report, and its front page shows it."""
    input:
        metrics=expand("results/{model}/metrics.csv", model=MODELS),
        per_image=expand("results/{model}/per_image.csv", model=MODELS),
    output:
        csv=report(
            "results/benchmark.csv",
            category="Benchmark",
            caption="../report/benchmark.rst",
        ),
        md="results/benchmark.md",
        html=report(
            "results/benchmark.html",
            category="Benchmark",
            caption="../report/benchmark.rst",
        ),
        png=report(
            "results/benchmark.png", category="Benchmark", caption="../report/plot.rst"
        ),
    log:
        "results/benchmark.log",
    params:
        models=MODELS,
        preset=config["preset"],
        published=PUBLISHED,
        data_root=DATA_ROOT,
        weights={m: config["models"][m].get("weights") for m in MODELS},
    script:
        "../scripts/benchmark.py"


rule examples:
    """A few test images, degraded | corrected | clean at native resolution with their PSNRs, for the report."""
    input:
        degraded=lambda w: expand(
            "results/{model}/degraded/{dataset}",
            model=w.model,
            dataset=model_test_sets(w.model),
        ),
        corrected=lambda w: expand(
            "results/{model}/corrected/{dataset}",
            model=w.model,
            dataset=model_test_sets(w.model),
        ),
        clean=lambda w: expand(
            "results/{model}/clean/{dataset}",
            model=w.model,
            dataset=model_test_sets(w.model),
        ),
    output:
        report(
            "results/{model}/examples.png",
            category="Corrected images",
            subcategory="{model}",
            caption="../report/examples.rst",
        ),
    log:
        "results/{model}/examples.log",
    params:
        per_set=2,
    script:
        "../scripts/examples.py"
