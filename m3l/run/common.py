"""What the run scripts share: the Hydra entry point, one-line errors, and building the net, data,
logger and trainer from the composed config.

Heavy imports (torch, Lightning) happen inside functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

import m3l  # noqa: F401  (registers the m3l.* resolvers)
from m3l.errors import M3LError

CONFIG_PATH = "pkg://m3l.configs"


def register_search_path() -> None:
    """Make ``~/.config/m3l`` and ``/etc/m3l`` shadow the built-in configs (see hydra_plugins/m3l_searchpath)."""
    from hydra_plugins.m3l_searchpath.m3l_searchpath import register

    register()


def entry(task: Callable[[DictConfig], Any], config_name: str, model: bool = True) -> Callable[[], Any]:
    """A Hydra main for ``task``, composed from ``configs/<config_name>.yaml`` (``model``: it needs model=NAME)."""
    register_search_path()

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
    @functools.wraps(task)
    def main(cfg: DictConfig) -> Any:
        return run(task, cfg, config_name, model)

    @functools.wraps(main)
    def main_with_hints() -> Any:
        sys.argv[1:] = quote_equals(null_groups(open_mappings(sys.argv[1:])))
        try:
            require_plugins(sys.argv[1:])
            if not any(a in ("--help", "-h", "--hydra-help", "--info", "-i") or a.startswith(("--cfg", "-c"))
                       for a in sys.argv[1:]):
                check_run_dir(sys.argv[1:])
        except M3LError as error:
            print(f"m3l {config_name}: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        try:
            return main()
        except SystemExit as exit:  # Hydra's own report (exit status 1): add what it leaves out on typos
            if exit.code == 1:
                from m3l.run.confighints import override_hints

                for hint in override_hints(config_name, sys.argv[1:]):
                    print(f"m3l {config_name}: {hint}", file=sys.stderr)
            raise

    return main_with_hints


# Mappings whose keys are the user's own names (test sets): a preset's mapping must not refuse a new one.
OPEN_MAPPINGS = ("data.test_sets",)


def open_mappings(overrides: list[str]) -> list[str]:
    """``data.test_sets={mine: DIR}`` as Hydra's ``++data.test_sets=...``: a preset's protocol fixes its own set
    names (``{set12: ..., bsd68: ...}``, struct), and Hydra refuses a new name there with ``Key 'mine' is not in
    struct``. With ``++`` it composes; :func:`m3l.run.precedence.user_wins` then makes the command line's mapping
    replace the preset's (the sets it names, no others)."""
    return [f"++{o}" if o.partition("=")[0] in OPEN_MAPPINGS and o.partition("=")[2].lstrip()[:1] == "{" else o
            for o in overrides]


def null_groups(overrides: list[str]) -> list[str]:
    """``GROUP=null`` for a config group of m3l (``logger=null``: no logger) as Hydra's ``~GROUP``, which Hydra
    needs: it refuses null as a group's option."""
    from pathlib import Path

    import m3l.configs

    groups = {entry.name for entry in Path(m3l.configs.__file__).parent.iterdir() if entry.is_dir()}
    return [f"~{o.partition('=')[0]}" if o.endswith("=null") and o.partition("=")[0] in groups else o
            for o in overrides]


def quote_equals(arguments: list[str]) -> list[str]:
    """``KEY=VALUE`` overrides whose value holds ``=`` (the authors' ``sigma=25.mat``, Lightning's
    ``epoch=3-step=100.ckpt``), which Hydra's grammar refuses unquoted, with the value quoted as Hydra wants it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, out = OverridesParser.create(), []
    for argument in arguments:
        key, _, value = argument.partition("=")
        if argument.startswith("-") or "=" not in value or value[:1] in "[{('\"":
            out.append(argument)
            continue
        try:
            parser.parse_overrides([argument])
        except OverrideParseException:
            quoted = key + "='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
            try:
                if parser.parse_overrides([quoted])[0].value() == value:
                    argument = quoted
            except OverrideParseException:
                pass
        out.append(argument)
    return out


# Overrides that switch on a Hydra plugin shipped as an extra: (group, option prefix, modules, extra). Without the
# plugin Hydra would only say "Could not find 'hydra/launcher/submitit_slurm'".
PLUGIN_OVERRIDES = (
    ("cluster", "", ("hydra_plugins.hydra_submitit_launcher", "submitit"), "slurm"),
    ("hydra/launcher", "submitit", ("hydra_plugins.hydra_submitit_launcher", "submitit"), "slurm"),
    ("hparams_search", "", ("hydra_plugins.hydra_optuna_sweeper", "optuna"), "optuna"),
    ("hydra/sweeper", "optuna", ("hydra_plugins.hydra_optuna_sweeper", "optuna"), "optuna"),
)


def require_plugins(overrides: list[str]) -> None:
    """The Hydra launcher or sweeper that an override switches on (``cluster=NAME``: submitit,
    ``hparams_search=NAME``: Optuna) must be installed, else one line names its extra."""
    from m3l.run.extras import require as require_extra

    for override in overrides:
        key, equals, value = override.partition("=")
        for group, prefix, modules, extra in PLUGIN_OVERRIDES:
            if equals and key.lstrip("+~") == group and value.startswith(prefix) and value not in ("", "null"):
                for module in modules:
                    require_extra(module, extra, override)
        if equals and key.lstrip("+") == "hydra.sweeper.storage" and value.strip("'\"") not in ("", "null"):
            require_study_storage(override)


def require_study_storage(override: str) -> None:
    """A study kept in a database (``hydra.sweeper.storage=sqlite:///FILE``) with optuna 2 (the one
    hydra-optuna-sweeper 1.3.0 takes) needs SQLAlchemy 1, which m3l's optuna extra does not pin (it would hold
    Snakemake at 9.16); with SQLAlchemy 2, optuna fails on an assertion deep in its storage: one line instead."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        optuna, sqlalchemy = version("optuna"), version("SQLAlchemy")
    except PackageNotFoundError:
        return
    if int(optuna.split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
        raise M3LError(f"{override}: optuna {optuna} keeps a study in a database only with SQLAlchemy 1 "
                       f"({sqlalchemy} is installed): pip install \"SQLAlchemy<2\" (Snakemake 9.17 and later need "
                       f"SQLAlchemy 2: with m3l[workflow], \"snakemake<9.17\" too), or leave the storage out (the "
                       f"study in memory; the sweep folder's optimization_results.yaml keeps its result)")


def _message(error: BaseException) -> str:
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key or "a key"
        return f"{key} is required (it is ??? in the config): pass {key}=... on the command line"
    cause = error.__cause__
    while isinstance(cause, hydra.errors.InstantiationException):
        cause = cause.__cause__
    if isinstance(error, hydra.errors.InstantiationException) and isinstance(cause, M3LError):
        return str(cause)  # m3l's own line, raised while building an object (a missing extra, bad input)
    if isinstance(error, hydra.errors.InstantiationException):
        lines = [line.strip() for line in str(error).splitlines() if line.strip() and "full_key" not in line]
        message = " ".join(lines).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
        if message.startswith("Error locating target"):
            return f"{message} (is PYTHONPATH set so that Python can import it?)"
        return f"{message} (M3L_DEBUG=1 shows the traceback)"
    return str(error)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EACCES, errno.EROFS, errno.EPERM)


def check_run_dir(arguments: list[str]) -> None:
    """The run folder (``hydra.run.dir=``, else ``runs/`` here) must be a folder m3l can write in: Hydra creates it
    and writes ``.hydra/`` before m3l runs, so a file in its place or a read-only parent would be its traceback."""
    from pathlib import Path

    key, given = next(((a.split("=", 1)[0], a.split("=", 1)[1]) for a in arguments
                       if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))), ("hydra.run.dir", "runs"))
    ancestor = Path(given.split("${", 1)[0] or ".").expanduser()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise M3LError(f"{key}: {ancestor} is a file, not a folder: pass {key}=FOLDER")
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise M3LError(f"{key}: cannot write in {ancestor} (read-only): pass {key}=FOLDER where you can write")


def _quiet_disk_full(args) -> None:
    """A thread's full-disk error is left to the main thread (which gets it too and says it in one line)."""
    if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL):
        threading.__excepthook__(args)


def run(task: Callable[[DictConfig], Any], cfg: DictConfig, name: str, model: bool = True) -> Any:
    """Seed, record the run, run ``task``; bad input ends with one line on stderr and exit status 2.

    Set ``M3L_DEBUG=1`` (or ``HYDRA_FULL_ERROR=1``) to get the full traceback instead.
    """
    from hydra.core.hydra_config import HydraConfig

    from m3l.run.precedence import conflicts, keep_nulls, user_wins
    from m3l.run.runinfo import run_info, write_run_info

    contradicted: list[str] = []  # command-line net keys the checkpoint contradicts (checkpoint_net_settings)
    try:
        if model and cfg.get("net") is None:
            raise M3LError(f"no model chosen: pass model=NAME, one of: {', '.join(available('model'))}")
        import pytorch_lightning as pl

        hydra_cfg = HydraConfig.get()
        choices = hydra_cfg.runtime.choices
        require_protocol(choices)
        preset = user_wins(cfg, choices, list(hydra_cfg.overrides.task), name)  # what the user typed wins
        keep_nulls(cfg, list(hydra_cfg.overrides.task), name)  # ... and {set12: null} picks the config's Set12
        for line in conflicts(preset, choices.get("preset")):
            print(f"m3l {name}: {line}", file=sys.stderr)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        if cfg.get("task") == "train" and cfg.get("data") is not None:
            with open_dict(cfg):  # the workers the run used, in run.yaml
                cfg.data.num_workers = data_workers(cfg)
        contradicted = checkpoint_net_settings(cfg, list(hydra_cfg.overrides.task), name)  # before run.yaml
        set_threads(cfg)
        threading.excepthook = _quiet_disk_full  # TensorBoard's writer thread: the main thread reports it
        write_run_info(run_info(cfg, name, sys.argv[1:], preset), hydra_cfg.runtime.output_dir)
        result = task(cfg)
        for line in contradicted:  # the command line's value worked: a note
            print(f"m3l {name}: {line}; the command line's value was used", file=sys.stderr)
        return result
    except (M3LError, MissingMandatoryValue, hydra.errors.InstantiationException) as error:
        if os.environ.get("M3L_DEBUG") or os.environ.get("HYDRA_FULL_ERROR"):
            raise
        message = _message(error)
        if contradicted and "does not fit" in message:  # the command line's net setting is why: say that
            message = "; ".join(contradicted) + ": the net does not fit it; drop the command line's value"
        print(f"m3l {name}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:  # a full disk (or a folder made read-only) while Lightning writes checkpoints or logs
        if error.errno not in (*DISK_FULL, *READ_ONLY) or os.environ.get("M3L_DEBUG"):
            raise
        where = error.filename or HydraConfig.get().runtime.output_dir
        fix = "free space and rerun" if error.errno in DISK_FULL else "make it writable or pass hydra.run.dir=FOLDER"
        print(f"m3l {name}: error: cannot write {where}: {error.strerror}; the files written before are kept "
              f"({fix})", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception:  # deep in a library: when an override has the wrong type, say that instead of a traceback
        from m3l.run.confighints import override_hints

        hints = [] if os.environ.get("M3L_DEBUG") else override_hints(name, sys.argv[1:])
        if not hints:
            raise
        for hint in hints:
            print(f"m3l {name}: error: {hint}", file=sys.stderr)
        raise SystemExit(2) from None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a Slurm job's or taskset's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def trains_on_cpu(cfg: DictConfig) -> bool:
    """Whether the Trainer will run on the CPU (``trainer.accelerator=cpu``, or ``auto`` with no GPU)."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto") or "auto")
    if accelerator != "auto":
        return accelerator == "cpu"
    if OmegaConf.select(cfg, "trainer.gpus", default=None) not in (None, 0, "???"):
        return False
    import torch

    return not torch.cuda.is_available()


def data_workers(cfg: DictConfig) -> int | None:
    """Training data workers when ``data.num_workers`` is null: none on the CPU, where the pixel cache makes a batch
    about 1 % of a step's time (benchmarks/main_job.py) and a worker would take a core from the net; else
    ``min(4, cores - 1)`` to keep a GPU fed. Testing and correcting keep the data module's default."""
    if cfg.get("data") is None or OmegaConf.select(cfg, "data.num_workers", default=None) is not None:
        return OmegaConf.select(cfg, "data.num_workers", default=None)
    if cfg.get("task") != "train":
        return None
    from m3l.data.image_folders import default_workers

    return 0 if trains_on_cpu(cfg) else default_workers()


def compute_threads(cfg: DictConfig) -> int:
    """torch's compute threads: ``threads`` when set, else the usable cores minus the data workers that run beside
    the net while training (more threads than free cores costs about a third of the speed); testing and correcting
    keep every core (their workers decode an image now and then and sleep otherwise)."""
    if cfg.get("threads"):
        return max(1, int(cfg.threads))
    cores = usable_cores()
    if cfg.get("task") != "train" or cfg.get("data") is None:
        return cores
    workers = data_workers(cfg)
    if workers is None:
        from m3l.data.image_folders import default_workers

        workers = default_workers()
    return max(1, cores - int(workers))


def set_threads(cfg: DictConfig) -> None:
    import torch

    torch.set_num_threads(compute_threads(cfg))


def available(group: str) -> list[str]:
    """The options of a config group on the current search path (user folders included)."""
    from hydra.core.global_hydra import GlobalHydra

    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def require_protocol(choices) -> None:
    """A preset with a protocol per model (``configs/protocol/<preset>/<model>.yaml``, e.g. preset=paper) must
    have one for the chosen model; without it the run would silently keep the model's CPU-sized defaults."""
    preset, model = choices.get("preset"), choices.get("model")
    protocols = available(f"protocol/{preset}") if preset else []
    if protocols and model not in protocols:
        raise M3LError(f"preset={preset} has no protocol for model={model} (m3l/configs/protocol/{preset}/ has "
                       f"{', '.join(protocols)}): write one as ~/.config/m3l/protocol/{preset}/{model}.yaml")


def require(cfg: DictConfig, *keys: str) -> None:
    """Fail with one line for each of ``keys`` that is unset (``???`` or null)."""
    for key in keys:
        if OmegaConf.select(cfg, key, throw_on_missing=False) in (None, "???"):
            raise M3LError(f"{key} is required: pass {key}=... on the command line")


def build_module(cfg: DictConfig):
    """The LightningModule of ``cfg.net``: used as is, or a plain ``nn.Module`` wrapped in RestorationModule
    (VideoRestorationModule for video nets, those with a ``frames`` attribute)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from torch import nn

    from m3l.hub import build_net
    from m3l.engine.lightning_package import as_pytorch_lightning
    from m3l.engine.restoration import RestorationModule
    from m3l.engine.video_restoration import VideoRestorationModule

    # net.pretrained=true|NAME|PATH (see m3l.hub): a file's architecture arguments reach the net as plain arguments
    net = build_net(OmegaConf.to_container(cfg.net, resolve=True), cfg.get("name"))
    net = as_pytorch_lightning(net)  # a lightning.pytorch.LightningModule runs as written too
    if isinstance(net, pl.LightningModule):
        return apply_speed_options(net, cfg)
    if not isinstance(net, nn.Module):
        raise M3LError(f"net: {cfg.net._target_} built a {type(net).__name__}, not an nn.Module or LightningModule")
    # a video net takes a window of frames (m3l.models.video); an image net, an image
    wrapper = VideoRestorationModule if getattr(net, "frames", None) is not None else RestorationModule
    module = wrapper(net, loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer),
                               scheduler=instantiate(cfg.scheduler), scheduler_interval=cfg.scheduler_interval,
                               metrics=OmegaConf.to_container(cfg.metrics) if cfg.get("metrics") else None)
    return apply_speed_options(module, cfg)


def apply_speed_options(module, cfg: DictConfig):
    """``channels_last``, ``fold_batch_norm``, ``compile``, ``backend``, ``tile`` and ``ensemble`` from the config
    (all but the first two need a RestorationModule, whose test and predict steps then run the fast exact path of
    :mod:`m3l.engine.fuse` on a copy of the net: batch norm folded, channels-last where it helps, compiled or run in
    onnxruntime).

    ``channels_last=true`` puts the whole module (training too) in NHWC; ``auto`` only the inference copy, on the
    CPU. ``compile=true`` compiles the net in place (``nn.Module.compile``), so its weights keep their plain keys:
    checkpoints load into it and the checkpoints it writes load anywhere; testing and correcting compile the
    inference copy, after the weights are loaded."""
    from m3l.engine.ensemble import parse
    from m3l.engine.fuse import check_options
    from m3l.engine.restoration import RestorationModule

    channels_last, backend = cfg.get("channels_last", False), cfg.get("backend") or "torch"
    check_options(channels_last, backend)
    if channels_last is True:
        import torch

        module = module.to(memory_format=torch.channels_last)
    restoration = isinstance(module, RestorationModule)
    if backend != "torch" and not restoration:
        raise M3LError(f"backend: {backend} needs a plain nn.Module net (wrapped in RestorationModule)")
    if restoration:
        module.fold_batch_norm = bool(cfg.get("fold_batch_norm", True))
        module.inference_channels_last = channels_last
        module.compile_inference = bool(cfg.get("compile"))
        module.backend = backend
        module.inference_threads = compute_threads(cfg)
    if cfg.get("tile"):
        if not restoration:
            raise M3LError("tile: tiled inference needs a plain nn.Module net (wrapped in RestorationModule)")
        module.tiling = (int(cfg.tile), int(cfg.get("tile_overlap", 32)))
    ensemble = parse(cfg.get("ensemble"))
    if ensemble is not None:
        if not restoration:
            raise M3LError("ensemble: the self-ensemble needs a plain nn.Module net (wrapped in RestorationModule)")
        module.ensemble = ensemble
    if cfg.get("compile"):
        (module.net if restoration else module).compile()  # in place: the state dict keeps its keys
    return module


def load_checkpoint(module, cfg: DictConfig) -> str:
    """Load ``cfg.checkpoint`` into ``module``; returns where the weights came from.

    The checkpoint is optional when the net starts from ``net.pretrained`` weights (see m3l.hub), so
    testing or correcting with published weights is one override.
    """
    from m3l.checkpoint import load_weights

    checkpoint = OmegaConf.select(cfg, "checkpoint", default=None, throw_on_missing=False)
    pretrained = OmegaConf.select(cfg, "net.pretrained", default=None, throw_on_missing=False)
    if checkpoint in (None, "???") and pretrained not in (None, False, "???"):
        return f"pretrained {pretrained}"
    if checkpoint in (None, "???") and next(module.parameters(), None) is None:
        return "no weights to load"  # a net without parameters (model=identity) needs no checkpoint
    if checkpoint in (None, "???"):
        raise M3LError("checkpoint is required: pass checkpoint=PATH (or net.pretrained=true|NAME|PATH to use "
                       "pretrained weights)")
    load_weights(module, checkpoint)
    return str(checkpoint)


def _plain(value) -> bool:
    """A value a checkpoint's recorded net config may give a net key: a scalar (a short plain string: no
    interpolation, which OmegaConf would resolve) or a short list of them."""
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(not isinstance(v, (list, tuple)) and _plain(v) for v in value)
    if isinstance(value, str):
        return len(value) <= 256 and value.isprintable() and "${" not in value
    return value is None or isinstance(value, (bool, int, float))


def _typed_keys(overrides: list[str]) -> list[str]:
    """The config keys the command line's value overrides set (``net.width=8``, ``+net.x=1``, ``net={...}``);
    group choices (``data=paired``, ``net=dncnn``) choose configs and set no key themselves."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if not override.is_delete() and isinstance(override.value(), str) and available(key):
            continue
        keys.append(key)
    return keys


def checkpoint_net_settings(cfg: DictConfig, overrides: list[str], name: str) -> list[str]:
    """``checkpoint=PATH`` (test, correct, export): the net keys the command line did not set take the values the
    checkpoint was trained with, so ``python -m m3l.run.test model=dncnn checkpoint=CKPT`` after
    ``python -m m3l.run.train model=dncnn net.width=8 net.depth=3`` needs no net overrides (one line says which).

    The values come from the config m3l.run.train records in its checkpoints (``m3l_config``, its ``net``), and
    only where its net class (``_target_``) is the config's own: nothing read from the file chooses code. Only
    keys the config's net has are taken, each a scalar or a list of scalars (no interpolation); a nested net
    config (``net.net.depth`` of per_frame_dncnn) is followed where its class is the config's too. A net key
    that follows another (``channels: ${data.channels}``) sets that key. A key given on the command line that
    differs from the checkpoint's value is kept, with one line naming both values. Nothing is taken from a
    checkpoint trained from ``net.pretrained`` weights (their file, not the recorded config, fixed its net).

    Returns the contradictions, one phrase each: run() says them once, in its error line when the net then does not
    fit, else as a note after the run."""
    import re

    checkpoint = OmegaConf.select(cfg, "checkpoint", default=None, throw_on_missing=False)
    pretrained = OmegaConf.select(cfg, "net.pretrained", default=None, throw_on_missing=False)
    if checkpoint in (None, "???", "") or not isinstance(cfg.get("net"), DictConfig) or pretrained not in (
            None, False, "", "???"):
        return []
    from m3l.checkpoint import read_checkpoint

    recorded = read_checkpoint(checkpoint).get("m3l_config")
    net = recorded.get("net") if isinstance(recorded, dict) else None
    if not isinstance(net, dict) or net.get("pretrained") not in (None, False, ""):
        return []
    typed = _typed_keys(overrides)

    def is_typed(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in typed)

    def show(value) -> str:
        return json.dumps(value) if isinstance(value, str) and not value.isidentifier() else (
            str(value).lower() if isinstance(value, bool) or value is None else
            "[" + ",".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value))

    taken, contradicted = [], []

    def fill(path: str, theirs: dict) -> None:
        ours = OmegaConf.select(cfg, path)
        if theirs.get("_target_") != ours.get("_target_"):
            print(f"m3l {name}: checkpoint {checkpoint} was trained with the net {str(theirs.get('_target_'))[:200]}"
                  f", this model's is {ours.get('_target_')}: its net settings are not used", file=sys.stderr)
            return
        for key, value in theirs.items():
            if not isinstance(key, str) or key.startswith("_") or key == "pretrained" or key not in ours:
                continue
            dotted = f"{path}.{key}"
            if isinstance(value, dict):
                if isinstance(ours.get(key), DictConfig) and "_target_" in value:
                    fill(dotted, value)
                continue
            if not _plain(value):
                continue
            current = OmegaConf.select(cfg, dotted)
            current = OmegaConf.to_container(current) if isinstance(current, (DictConfig, ListConfig)) else current
            if current == value or (isinstance(value, tuple) and current == list(value)):
                continue
            node = ours._get_node(key)
            follows = re.fullmatch(r"\$\{([\w.]+)\}", str(node._value())) if not isinstance(
                node, (DictConfig, ListConfig)) else None
            source = follows.group(1) if follows else dotted
            if is_typed(dotted) or is_typed(source):
                given = source if is_typed(source) else dotted
                contradicted.append(f"{given}={show(current)} on the command line, but checkpoint {checkpoint} "
                                    f"was trained with {dotted}={show(value)}")
                continue
            OmegaConf.update(cfg, source, list(value) if isinstance(value, tuple) else value)
            taken.append(f"{source}={show(value)}")

    fill("net", net)
    if taken:
        print(f"m3l {name}: the net settings checkpoint {checkpoint} was trained with: {' '.join(taken)}")
    return contradicted


def build_datamodule(cfg: DictConfig):
    from hydra.utils import instantiate

    from m3l.engine.lightning_package import as_pytorch_lightning

    return as_pytorch_lightning(instantiate(cfg.data, _convert_="all"))


# Lightning loggers that need an extra: (class name, module, extra).
LOGGER_EXTRAS = (("WandbLogger", "wandb", "wandb"), ("TensorBoardLogger", "tensorboard", "tensorboard"))


def build_logger(cfg: DictConfig):
    """The configured logger (``logger=csv`` by default; ``logger=null``: none); one that needs an extra that is
    not installed (wandb, tensorboard) stops with the ``pip install`` line."""
    from hydra.utils import instantiate

    from m3l.run.extras import require as require_extra

    if cfg.get("logger") is None:
        return False
    target = str(cfg.logger.get("_target_", ""))
    for name, module, extra in LOGGER_EXTRAS:
        if target.rsplit(".", 1)[-1] == name:
            require_extra(module, extra, f"logger ({name})")
    return instantiate(trainer_side(cfg.logger), _convert_="all")


def trainer_side(config: DictConfig):
    """A trainer, logger or callback config as plain containers, resolved, its ``lightning.pytorch.X`` targets read
    as ``pytorch_lightning.X`` (configs copied from lightning-hydra-template run on m3l's Trainer)."""
    from m3l.engine.lightning_package import pytorch_lightning_targets

    return pytorch_lightning_targets(OmegaConf.to_container(config, resolve=True))


def build_trainer(cfg: DictConfig, callbacks=(), logger=None):
    """``pytorch_lightning.Trainer`` from ``cfg.trainer``; ``trainer.gpus=N`` means ``accelerator=gpu, devices=N``."""
    from hydra.utils import instantiate

    kwargs = trainer_side(cfg.trainer)
    gpus = kwargs.pop("gpus", None)
    if gpus not in (None, "???"):
        kwargs.update(accelerator="gpu", devices=gpus)
    from m3l.engine.callbacks import logger_callbacks

    logger = build_logger(cfg) if logger is None else logger
    if kwargs.get("enable_progress_bar", True) and not sys.stdout.isatty():
        kwargs["enable_progress_bar"] = False  # a bar in a log file (nohup, sbatch, CI) is noise: progress lines
    if not kwargs.get("enable_progress_bar", True) and cfg.get("progress_every") is not None:
        from m3l.engine.callbacks import ProgressLines

        callbacks = [*callbacks, ProgressLines(float(cfg.progress_every))]
    return instantiate(kwargs, callbacks=[*callbacks, *logger_callbacks(logger)], logger=logger)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every non-null entry of a ``{name: config}`` mapping such as ``callbacks``."""
    from hydra.utils import instantiate

    return [instantiate(trainer_side(c), _convert_="all") for c in (group or {}).values() if c is not None]
