# Tables, plot and report pages: quick, so they run where snakemake runs, not as Slurm jobs.
localrules:
    degrade,
    benchmark,
    examples,


rule benchmark:
    """One table over every model: rows models, columns test set x degradation (PSNR / SSIM)."""
    input:
        expand("results/{model}/metrics.csv", model=MODELS),
    output:
        csv=report(
            "results/benchmark.csv",
            category="Benchmark",
            caption="../report/benchmark.rst",
        ),
        md="results/benchmark.md",
        png=report(
            "results/benchmark.png", category="Benchmark", caption="../report/plot.rst"
        ),
    log:
        "results/benchmark.log",
    params:
        models=MODELS,
        weights={m: config["models"][m].get("weights") for m in MODELS},
    script:
        "../scripts/benchmark.py"


rule examples:
    """A few corrected images next to their degraded inputs, for the report."""
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
