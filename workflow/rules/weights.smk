rule weights:
    """The published preset: a model's released weights converted to m3l's layout, in place of training: the
    file found under weights_dir (by its released name and sha256; converted with its table entry's class and
    layout), else an entry of m3l/hub.py's table (from torch.hub's cache, or downloaded and checked), or a file.
    """
    input:
        lambda wildcards: WEIGHTS_FILES.get(wildcards.model, []),
    output:
        "results/{model}/model.ckpt",
    log:
        "results/{model}/weights.log",
    params:
        command=lambda wildcards, input, output: shlex.join(
            weights_command(wildcards.model, input, output[0])
        ),
    shell:
        "{params.command} > {log:q} 2>&1"
