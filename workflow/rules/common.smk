# Settings shared by the rules: the chosen preset, and the Hydra overrides of each m3l command.
import json
import re
import shlex
import sys


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
WEIGHTS_DIR = config.get("weights_dir")
if WEIGHTS_DIR is not None and not Path(WEIGHTS_DIR).is_dir():
    fail(
        f"weights_dir: {WEIGHTS_DIR} is not a folder (it holds the authors' files under their released names)"
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
            # One Slurm task: Lightning starts a process per device itself (see docs/cluster.md).
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


# The published preset runs what is on this machine: a model whose weights file or test set is missing is left
# out now, with one line on stderr saying what is missing and how to supply it, instead of failing mid-run.
# WEIGHTS_FILES: {model: its released file to convert}; a model not in it converts its entry (from torch.hub's
# cache, or downloaded) or its file.
WEIGHTS_FILES = {}
WEIGHTS_SCRIPT = Path(workflow.basedir) / "scripts" / "weights.py"


def protocol_folders(model):
    """{test set: folder} that the model's test settings give a set: its preset's protocol file
    (protocol/<preset>/<model>.yaml, the user's config folders first), then the data.test_sets of the
    preset's, the model's and its weights entry's overrides; a set none of them names is left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.m3l_searchpath.m3l_searchpath import user_config_dirs

    import m3l.configs

    settings = config["models"][model]
    args = [
        a.replace("{data_root}", str(DATA_ROOT))
        for a in [
            *own(model, "overrides"),
            *settings.get("overrides", []),
            *weights_protocol(model),
        ]
    ]
    folders = {}
    preset = next((a.split("=", 1)[1] for a in args if a.startswith("preset=")), None)
    roots = [*user_config_dirs(), Path(m3l.configs.__file__).parent]
    files = [r / "protocol" / str(preset) / f"{settings['model']}.yaml" for r in roots]
    for file in [f for f in files if preset and f.is_file()][:1]:
        data = (yaml.safe_load(file.read_text()) or {}).get("data") or {}
        for name, folder in (data.get("test_sets") or {}).items():
            folders[name] = str(folder).replace("${data_root}", str(DATA_ROOT))
    for arg in args:
        if arg.lstrip("+").startswith("data.test_sets="):
            value = OverridesParser.create().parse_overrides([arg])[0].value()
            folders.update(value if isinstance(value, dict) else {})
    return {k: str(v) for k, v in folders.items() if v and "${" not in str(v)}


def missing(model):
    """What of the published model is not on this machine (its weights file, its test sets) and how to supply
    it, in one line; None when everything is there. Records the file to convert in WEIGHTS_FILES.
    """
    from m3l.hub import WEIGHTS, local_weights

    problems = []
    weights = str(config["models"][model]["weights"])
    entry = WEIGHTS.get(weights)
    if entry is not None:
        found = local_weights(entry, WEIGHTS_DIR, cache=False) if WEIGHTS_DIR else None
        if found is not None:
            WEIGHTS_FILES[model] = found
        elif WEIGHTS_DIR is not None and local_weights(entry) is None:
            problems.append(
                f"no {entry.released_name} in weights_dir {WEIGHTS_DIR} nor in torch.hub's cache "
                f"(download it from {entry.url} into {WEIGHTS_DIR})"
            )
    else:
        candidates = [
            Path(weights),
            *([Path(WEIGHTS_DIR, weights)] if WEIGHTS_DIR else []),
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            problems.append(
                f"weights: {weights} is neither an entry of m3l/hub.py's table (python -m m3l.run.list) nor a "
                f"file{f' in weights_dir {WEIGHTS_DIR}' if WEIGHTS_DIR else ''}"
            )
        else:
            WEIGHTS_FILES[model] = found
    known = protocol_folders(model)
    absent = []
    for name, folder in model_test_sets(model).items():
        folder = (folder or known.get(name) or "").replace(
            "{data_root}", str(DATA_ROOT)
        )
        if folder and not Path(folder).is_dir():
            absent.append(f"{name} ({folder})")
    if absent:
        problems.append(
            f"no test set {', '.join(absent)}: put it there (python -m m3l.data.standard_sets says where "
            "each comes from) or give test_sets: {NAME: DIR}"
        )
    return "; ".join(problems) or None


def weights_command(model, files, out):
    """The command that writes the published model's converted weights to ``out``."""
    from m3l.hub import WEIGHTS

    weights = str(config["models"][model]["weights"])
    # an entry's released file, found under weights_dir: converted with the entry's class and layout
    if files and weights in WEIGHTS:
        return ["python", str(WEIGHTS_SCRIPT), weights, str(files[0]), out]
    source = str(files[0]) if files else weights
    return ["python", "-m", "m3l.hub", "convert", source, out]


if PUBLISHED:
    _kept = []
    for _model in MODELS:
        _problem = missing(_model)
        if _problem:
            print(f"published: {_model} left out: {_problem}", file=sys.stderr)
        else:
            _kept.append(_model)
    if not _kept:
        sys.exit(
            f"published: none of the models {', '.join(MODELS)} has its weights and test sets here "
            "(the lines above say what is missing)"
        )
    MODELS = _kept


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    dataset="|".join(
        map(re.escape, sorted({d for m in MODELS for d in model_test_sets(m)}))
    ),
