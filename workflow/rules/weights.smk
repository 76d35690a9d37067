rule weights:
    """The published preset: a model's released weights (an entry of m3l/hub.py's table, downloaded and
    checked, or a file) converted to m3l's layout, in place of training."""
    output:
        "results/{model}/model.ckpt",
    log:
        "results/{model}/weights.log",
    params:
        weights=lambda wildcards: config["models"][wildcards.model]["weights"],
    shell:
        "python -m m3l.hub convert {params.weights:q} {output:q} > {log:q} 2>&1"
