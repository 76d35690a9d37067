# Settings shared by the rules: the chosen preset, and the Hydra overrides of each m3l command.
import json
import re
import shlex


def fail(message):
    raise WorkflowError(f"workflow config: {message}")


if config["preset"] not in config["presets"]:
    fail(
        f"preset: unknown preset {config['preset']!r}; choose one of {', '.join(config['presets'])}"
    )
PRESET = config["presets"][config["preset"]]
# a preset with its own models table (paper: every family, each with its protocol) runs those models
if PRESET.get("models"):
    config["models"] = PRESET["models"]
if config.get("only"):
    _unknown = [m for m in config["only"] if m not in config["models"]]
    if _unknown:
        fail(
            f"only: unknown model(s) {', '.join(_unknown)}; choose among {', '.join(config['models'])}"
        )
    config["models"] = {m: config["models"][m] for m in config["only"]}
# published: models start from their released `weights`, untrained (those without are left out)
PUBLISHED = PRESET.get("published", False)
MODELS = [
    m for m in config["models"] if not PUBLISHED or config["models"][m].get("weights")
]
if not MODELS:
    fail(
        f"models: the {config['preset']} preset tests released weights: give a model `weights: ENTRY|FILE`"
    )
TEST_SETS = config.get("test_sets") or PRESET["test_sets"]
DEGRADATIONS = config.get("degradations") or PRESET.get("degradations")
DATA_ROOT = config.get("data_root")
if any("{data_root}" in o for o in PRESET.get("overrides", [])) and not DATA_ROOT:
    fail(
        f"data_root: the {config['preset']} preset needs the folder of its data sets: --config data_root=DIR"
    )


def own(model, key):
    """The model's own setting of its preset (``presets: {tiny: {overrides: ...}}``), else the preset's."""
    settings = config["models"][model].get("presets", {}).get(config["preset"], {})
    return settings.get(key, PRESET.get(key, []))


def model_test_sets(model):
    """The test sets of ``model``: its own ``test_sets`` (video models: clips), else the config's or preset's."""
    return config["models"][model].get("test_sets") or TEST_SETS


# Names become folders in the results folder: `..` would reach out of a model's own folder (and delete what is there).
NAME = re.compile(r"^\w[\w.-]*$", re.ASCII)  # ASCII \w: A-Z a-z 0-9 _
for _name in [*MODELS, *{d for m in MODELS for d in model_test_sets(m)}]:
    if not NAME.match(str(_name)):
        fail(
            f"{_name!r} is not a usable model or test set name: letters, digits, _ . - only, not starting with . or -"
        )


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    dataset="|".join(
        map(re.escape, sorted({d for m in MODELS for d in model_test_sets(m)}))
    ),


def hydra_value(value):
    """``value`` in Hydra's override grammar (dicts, lists, quoted strings)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def model_devices(wildcards):
    return config["models"][wildcards.model].get("devices", 1)


def weights_protocol(model):
    """The test protocol of the model's `weights` when it names an entry of m3l/hub.py's table (the overrides
    with which benchmarks/published.py measures it), else none."""
    from m3l.hub import WEIGHTS

    entry = WEIGHTS.get(str(config["models"][model].get("weights")))
    return list(entry.protocol) if entry else []


def overrides(model, task):
    """The Hydra overrides of ``python -m m3l.run.<task>`` for ``model`` (without output paths)."""
    settings = config["models"][model]
    args = [
        f"model={settings['model']}",
        *own(model, "overrides"),
        *settings.get("overrides", []),
    ]
    if task == "train":
        args += [*own(model, "train"), *settings.get("train", [])]
        if settings.get("devices", 1) > 1:
            # One Slurm task: Lightning starts a process per device itself (see the README).
            args += [
                f"trainer.devices={settings['devices']}",
                "++trainer.plugins=[{_target_:lightning_fabric.plugins.environments.LightningEnvironment}]",
            ]
    else:
        # the converted weights carry the architecture: net.pretrained applies it
        if PUBLISHED:
            args.append(f"net.pretrained=results/{model}/model.ckpt")
            args += [o for o in weights_protocol(model) if o not in args]
        # exactly these sets; a null folder: the model's (preset's, weights entry's) folder of that name
        args.append(f"data.test_sets={hydra_value(model_test_sets(model))}")
        if DEGRADATIONS:
            args.append(f"data.test_degradations={hydra_value(DEGRADATIONS)}")
    return [a.replace("{data_root}", str(DATA_ROOT)) for a in args]


def m3l_args(task, *outputs):
    """A params function: the arguments of ``python -m m3l.run.<task>`` for the job's model, quoted
    for the shell; ``outputs`` are more overrides, formatted with the job's wildcards.
    """
    return lambda wildcards: shlex.join(
        overrides(wildcards.model, task) + [o.format(**wildcards) for o in outputs]
    )
