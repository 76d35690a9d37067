"""Pretrained weights: the table of known weights files, their download, their conversion and their loading.

Each entry of :data:`WEIGHTS` (:class:`Weights`, written in its family's file ``m3l/models/<family>.py`` and
gathered by the registry, :mod:`m3l.models._registry`) names a model and a variant, the authors' URL of the
file, its sha256, the architecture arguments it needs, the layout it is stored in (see
:mod:`m3l.models._layouts`: MatConvNet ``.mat``, KAIR's ``model.<i>.*``, ...; converted to m3l's net on load),
the results it is published to reach and the test protocol that measures them (``benchmarks/published.py``
runs it). Files download into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``, see
:func:`torch.hub.get_dir`) under a name of their own, ``<entry>-<sha256[:8]>.<ext>`` (:attr:`Weights.filename`;
two entries released as ``model.pth`` never share a file), and are checked against their sha256 (a mismatch is
an error, and the bad file is not kept). An entry whose sha256 could not be checked when it was written
(``sha256=None``) caches as ``<entry>.<ext>``, records the sha256 of its first download in
``checkpoints/m3l_sha256.json`` and refuses a later file that differs, in one line.

Files are read, their tensors taken and their fit checked by the one route of :mod:`m3l.checkpoint`.

Used by ``hubconf.py`` (``torch.hub.load(...)``) and by net configs with a ``pretrained`` key
(``net.pretrained=true``, ``net.pretrained=NAME`` of an entry, or ``net.pretrained=PATH`` of any weights file
whose layout m3l knows); see :func:`split_pretrained`. Imports torch only, so torch.hub users need neither
Lightning nor Hydra.

``python -m m3l.hub convert FILE OUT.pth`` writes any known file (the authors' files, an m3l checkpoint)
in m3l's layout (the net's state dict, its class and its architecture arguments) and prints its sha256,
its layout and the overrides it implies (``python -m m3l.hub CHECKPOINT OUT.pth`` does the same: releasing
a trained net); the converted weights are loaded into the net they imply (strict) before anything is written.

A weights file is data, never code. The net's class comes from m3l's own configs (the model's net config,
or for a file read alone, one of the ``_target_`` classes of the net configs m3l ships or the user's config
folders hold: :func:`known_nets`), never from the file. The architecture arguments a file records
(``m3l_net_args`` of a release, ``m3l_config.net`` of a checkpoint) are accepted only as arguments of that
class's ``__init__``, each a scalar or a list of scalars (:func:`check_net_args`), and reach the class as plain
Python arguments, never through Hydra's (recursive) instantiation; the net is first built on the ``meta``
device and checked against the file's tensors, so no argument can make it allocate more than the file holds.
Tensors must be finite and of a floating type where the net has one (:func:`m3l.checkpoint.check_state`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from m3l.checkpoint import check_state, misfit, override, read_checkpoint, state_dict_of  # noqa: F401 (re-exported)
from m3l.errors import M3LError
from m3l.models._registry import Weights, weights

RECORDED = "m3l_sha256.json"  # sha256 of the first download of entries without one, beside the cache

# Every family's weights entries (m3l/models/<family>.py; the registry: m3l.models._registry), by name.
WEIGHTS: dict[str, Weights] = weights()


def find(model: str, variant: str | None = None) -> Weights:
    """The entry of ``model`` (a model config, or a family: ``dncnn`` also finds ``dncnn_b``'s entries) and
    ``variant`` (the first of its entries when ``variant`` is None)."""
    for match in (lambda w: w.model == model, lambda w: w.family == model):
        known = [w for w in WEIGHTS.values() if match(w) and variant in (None, w.variant, w.name)]
        if known:
            return known[0]
    names = ", ".join(sorted(WEIGHTS)) or "none"
    raise M3LError(f"no pretrained weights for model {model!r}" + (f", variant {variant!r}" if variant else "")
                   + f"; known: {names}")


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded(folder: Path) -> dict:
    """``{url: sha256}`` of the entries without a pinned sha256 that were downloaded before."""
    try:
        return json.loads((folder / RECORDED).read_text())
    except (OSError, ValueError):
        return {}


def record(folder: Path, url: str, digest: str) -> None:
    from m3l.io.atomic import atomic_write

    known = {**recorded(folder), url: digest}
    with atomic_write(folder / RECORDED, "w") as f:
        json.dump(known, f, indent=1, sort_keys=True)


def download(entry: Weights, progress: bool = True) -> Path:
    """The entry's file in torch.hub's cache, downloaded first if missing; its sha256 is always checked
    (against the entry's, or for an entry without one, against the one recorded at its first download)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / entry.filename
    expected = entry.sha256 or recorded(folder).get(entry.url)
    if target.is_file() and expected is None:  # put there by hand, or downloaded before the record existed
        expected = sha256(target)
        record(folder, entry.url, expected)
    if target.is_file() and sha256(target) == expected:
        return target
    if entry.manual:  # a shared folder's page: downloading it would record a web page's hash as the file's
        raise M3LError(f"pretrained {entry.name}: the authors share {entry.released_name} in a folder, {entry.url}: "
                       f"download it by hand and pass net.pretrained=PATH (or put it at {target})")
    folder.mkdir(parents=True, exist_ok=True)
    try:  # writes a temporary file, checks the hash, then renames: a bad download never lands in the cache
        torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=expected, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            pinned = "expected" if entry.sha256 else f"recorded (in {folder / RECORDED}, at its first download)"
            raise M3LError(f"pretrained {entry.name}: {entry.url} does not have the {pinned} sha256 "
                           f"{expected} ({error}); not kept") from None
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url}: {error}") from None
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url} ({error}); download it by hand "
                       f"into {target}") from None
    if expected is None:
        digest = sha256(target)
        record(folder, entry.url, digest)
        print(f"pretrained {entry.name}: the table has no sha256 for {entry.url}; recorded {digest} in "
              f"{folder / RECORDED} (later downloads are checked against it)")
    return target


@dataclass(frozen=True)
class Converted:
    """A weights file read and converted to m3l's layout: what :func:`load_pretrained` loads."""

    source: str             # the file (or the entry's name and URL), for messages
    layout: str             # the layout's name ("" when no layout recognised it: a bare state dict)
    target: str | None      # the net class the file is for, where the layout knows it
    state: dict
    net_args: dict          # the architecture arguments the file implies


def convert_file(path: str | os.PathLike, target: str | None = None, layout: str | None = None) -> Converted:
    """Read the weights file at ``path`` and convert it to m3l's layout (see :mod:`m3l.models._layouts`).

    ``layout`` forces a layout by name; else it is recognised, preferring those of ``target`` (the net class
    of the model config). A file in no known layout that is a bare state dict is kept as it is (a net's own
    ``state_dict()``): whether it fits is checked when it is loaded.
    """
    from m3l.models import _layouts

    raw = read_checkpoint(path, "pretrained:")
    try:
        chosen = _layouts.all_layouts()[layout] if layout else _layouts.find_layout(raw, path, target)
    except M3LError:
        try:
            state = state_dict_of(raw)
        except M3LError as error:
            raise M3LError(f"pretrained {path}: {error}") from None
        if not state:
            raise
        check_state(state, f"pretrained {path}")
        return Converted(str(path), "", None, state, {})
    except Exception as error:  # a layout's detect() on a file of unexpected structure
        raise M3LError(f"pretrained {path}: malformed weights file ({type(error).__name__}: "
                       f"{first_line(error)})") from None
    try:
        state, net_args = chosen.convert(raw)
    except M3LError as error:
        raise M3LError(f"pretrained {path} ({chosen.name}): {error}") from None
    except Exception as error:  # keys of the layout holding something else than it should (a file made by hand)
        raise M3LError(f"pretrained {path} ({chosen.name}): malformed weights file ({type(error).__name__}: "
                       f"{first_line(error)})") from None
    if not isinstance(net_args, dict):
        raise M3LError(f"pretrained {path}: the architecture arguments it records are a "
                       f"{type(net_args).__name__}, not a mapping; refused")
    net_args = dict(net_args)
    file_target = net_args.pop("_target_", None)
    if file_target is not None and not isinstance(file_target, str):
        raise M3LError(f"pretrained {path}: its net class is a {type(file_target).__name__}, not a class name; refused")
    file_target = file_target or chosen.target or None
    what = f"pretrained {path}"
    if net_args or file_target:  # the class comes from m3l's configs; the file's arguments must be its arguments
        cls = net_class(file_target or target, what, trusted=target)
        check_net_args(net_args, cls, what)
    check_state(state, what)
    return Converted(str(path), chosen.name, file_target, state, net_args)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


# Hydra's instantiation keys: in a weights file they would choose code.
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
MAX_INT = 1 << 16           # an architecture argument (a width, a depth, a block count) larger than this is refused
MAX_LIST = 64               # the longest list argument (block counts per level, widths, ...)
MAX_TEXT = 256              # the longest string argument (a norm's name)


def known_nets() -> dict[str, str]:
    """``{class: net config}`` of the net configs m3l ships (``configs/net/*.yaml``) and the user's config folders
    hold (``~/.config/m3l/net``, ``/etc/m3l/net``): the only classes a weights file may name."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    folders = [files("m3l.configs") / "net"]
    try:
        from hydra_plugins.m3l_searchpath.m3l_searchpath import user_config_dirs

        folders = [folder / "net" for folder in user_config_dirs()] + folders
    except ImportError:  # torch.hub users: m3l's configs only
        pass
    known: dict[str, str] = {}
    for folder in reversed(folders):  # the user's configs win
        if not folder.is_dir():
            continue
        for config in sorted(folder.iterdir(), key=lambda p: p.name):
            if config.name.endswith(".yaml"):
                try:
                    target = OmegaConf.create(config.read_text()).get("_target_")
                except Exception:  # a broken user config: not a known net
                    continue
                if isinstance(target, str):
                    known[target] = config.name[:-5]
    return known


def net_class(target: str | None, what: str, trusted: str | None = None) -> type:
    """The class ``target``: the model config's own (``trusted``), or one of :func:`known_nets`."""
    import importlib

    if not target:
        raise M3LError(f"{what} records architecture arguments but no net class; pass the model (model=NAME) "
                       f"and net.pretrained=FILE")
    if target != trusted and target not in known_nets():
        known = ", ".join(sorted(known_nets()))
        raise M3LError(f"{what} is for the class {target[:200]!r}, none of m3l's nets ({known}); refused (a weights "
                       f"file does not choose code: give a model whose net config is that class)")
    module, _, name = target.rpartition(".")
    try:
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:  # a checkout that is not pip-installed: m3l.models is the repository's models/
            if not module.startswith("m3l.models"):
                raise
            return getattr(importlib.import_module(module.replace("m3l.models", "models", 1)), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise M3LError(f"{what}: cannot import its net class {target} ({first_line(error)})") from None


def _refused_key(value, prefix: str = "") -> str | None:
    """The first of Hydra's instantiation keys anywhere inside ``value`` (as ``a.b._target_``), or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key in HYDRA_KEYS:
                return name
            found = _refused_key(item, name)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _refused_key(item, f"{prefix}[{i}]")
            if found:
                return found
    return None


def _scalar_problem(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_INT else f"{value} is larger than {MAX_INT}"
    if isinstance(value, float):
        return None if math.isfinite(value) and abs(value) <= MAX_INT else f"{value} is not a finite number up to {MAX_INT}"
    if isinstance(value, str):
        if len(value) > MAX_TEXT or not value.isprintable() or "${" in value:
            return f"the string {value[:40]!r}... is not a short plain name"
        return None
    return f"a {type(value).__name__} is not a scalar"


def check_net_args(args: dict, cls: type, what: str) -> dict:
    """``args`` when each key is a parameter of ``cls.__init__`` and each value a scalar (bool, int, float, str,
    None) or a list of scalars; else one line naming ``what`` (the file) and the key. Any mapping, and any of
    Hydra's keys (``_target_``, ``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``) anywhere, is refused."""
    if not isinstance(args, dict):
        raise M3LError(f"{what}: its architecture arguments are a {type(args).__name__}, not a mapping; refused")
    hydra_key = _refused_key(args)
    if hydra_key:
        raise M3LError(f"{what}: key {hydra_key} is a Hydra instantiation key; refused (a weights file holds "
                       f"architecture arguments, never objects to build)")
    parameters = inspect.signature(cls.__init__).parameters
    names = [n for n, p in parameters.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key, value in args.items():
        if not isinstance(key, str) or key not in names:
            raise M3LError(f"{what}: key {str(key)[:80]!r} is not an argument of {cls.__name__} "
                           f"({', '.join(names) or 'none'}); refused")
        if isinstance(value, dict):
            raise M3LError(f"{what}: key {key} is a mapping; refused (architecture arguments are scalars or lists "
                           f"of scalars; a nested net config is not read from a weights file: pass checkpoint=FILE "
                           f"with the model's own config instead)")
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
            raise M3LError(f"{what}: key {key} is a list of {len(value)} items (more than {MAX_LIST}); refused")
        for item in items:
            problem = _scalar_problem(item)
            if problem:
                raise M3LError(f"{what}: key {key}: {problem}; refused (architecture arguments are scalars or "
                               f"lists of scalars)")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def model_for(target: str) -> str:
    """The model config (``m3l/configs/model/NAME.yaml``) whose net is ``target`` (one of :func:`known_nets`)."""
    name = known_nets().get(target)
    return f"model={name}" if name else f"a model whose net is {target[:200]}"


def load_into(net: nn.Module, state: dict, what: str, net_args: dict | None = None) -> nn.Module:
    """``net.load_state_dict(state)``, strict, with one line when the weights do not fit (keys, shapes, or a
    tensor that is not finite or not of the net's floating type)."""
    problem = misfit(net, state, net_args)
    if problem:
        raise M3LError(f"pretrained: {what} does not fit {type(net).__name__}: {problem}")
    check_state(state, f"pretrained: {what}", net.state_dict())
    net.load_state_dict(state, strict=True)
    return net


def build_checked(build, state: dict | None, what: str, net_args: dict | None = None) -> nn.Module:
    """``build()``, first on the ``meta`` device (no memory) and checked against ``state`` (the file's tensors):
    architecture arguments read from a file cannot make the net allocate more than the file holds."""
    if state is not None:
        try:
            with torch.device("meta"):
                probe = build()
        except M3LError:
            raise
        except Exception as error:
            raise M3LError(f"pretrained: {what}: its architecture arguments do not build the net "
                           f"({type(error).__name__}: {first_line(error)})") from None
        if isinstance(probe, nn.Module):
            problem = misfit(probe, state, net_args)
            if problem:
                raise M3LError(f"pretrained: {what} does not fit {type(probe).__name__}: {problem}")
        del probe
    return build()


def class_name(net: nn.Module) -> str:
    cls = type(net)
    return f"{cls.__module__.replace('models.', 'm3l.models.', 1) if cls.__module__.startswith('models.') else cls.__module__}.{cls.__name__}"


def load_pretrained(net: nn.Module, pretrained: str | os.PathLike | Weights | Converted, progress: bool = True,
                    net_args: dict | None = None) -> nn.Module:
    """Load ``pretrained`` (an entry, an entry's name, a converted file or a file path) into ``net``; returns
    ``net``. ``net_args``, the net's config, lets a misfit say which override would fit."""
    if isinstance(pretrained, str) and pretrained in WEIGHTS:
        pretrained = WEIGHTS[pretrained]
    if isinstance(pretrained, Weights):
        entry = pretrained
        pretrained = convert_file(download(entry, progress), entry.target, entry.layout)
        pretrained = Converted(f"{entry.name} ({entry.url})", pretrained.layout, pretrained.target,
                               pretrained.state, pretrained.net_args)
    elif not isinstance(pretrained, Converted):
        pretrained = convert_file(pretrained, class_name(net))
    what = pretrained.source
    if not pretrained.layout and misfit(net, pretrained.state, net_args):  # a bare state dict of another net
        from m3l.models._layouts import all_layouts

        what += f" (in none of the layouts m3l knows: {', '.join(all_layouts())})"
    return load_into(net, pretrained.state, what, net_args)


def split_pretrained(net_cfg: dict, model: str | None = None) -> tuple[dict, Weights | Converted | None]:
    """A net config without its ``pretrained`` key, and what that key asks for.

    ``pretrained: true`` means ``model``'s first entry for the config's ``_target_``; a name means that
    entry; anything else is a weights file, read and converted here (see :func:`convert_file`). The
    architecture arguments of an entry, or those a file implies, replace the config's (weights fix the
    architecture; one line says which changed), so one override is enough: ``net.pretrained=FILE``.
    """
    net_cfg = dict(net_cfg)
    pretrained = net_cfg.pop("pretrained", None)
    target = net_cfg.get("_target_")
    if pretrained in (None, False, ""):
        return net_cfg, None
    if pretrained is True:
        candidates = [w for w in WEIGHTS.values() if w.target == target]
        chosen = [w for w in candidates if w.model == model] or candidates
        if not chosen:
            raise M3LError(f"net.pretrained=true: no known weights for {target}; give a weights "
                           f"file (net.pretrained=PATH) or one of: {', '.join(sorted(WEIGHTS)) or 'none'}")
        pretrained = chosen[0]
    elif str(pretrained) in WEIGHTS:
        pretrained = WEIGHTS[str(pretrained)]
    else:
        pretrained = convert_file(str(pretrained), target)
    what = pretrained.name if isinstance(pretrained, Weights) else f"{pretrained.source}: {pretrained.layout}"
    file_target = pretrained.target
    if file_target and target != file_target:
        raise M3LError(f"net.pretrained: {what} holds weights of {file_target}, not of this model's "
                       f"{target}; use {model_for(file_target)}")
    args = file_args(pretrained)
    changed = {k: v for k, v in args.items() if net_cfg.get(k) != v}
    if "channels" in changed and "channels" in net_cfg:  # the net's channels are the data's (${data.channels})
        raise M3LError(f"net.pretrained: {what} is for {args['channels']}-channel images, the data has "
                       f"{net_cfg['channels']}: pass data.channels={args['channels']}")
    if changed:
        print(f"pretrained {what}; using " + " ".join(override(k, v) for k, v in changed.items()))
    return {**net_cfg, **args}, pretrained


def file_args(pretrained: Weights | Converted | None) -> dict:
    """The architecture arguments that ``pretrained`` fixes (an entry's, or those its file implies, checked)."""
    if pretrained is None:
        return {}
    return dict(pretrained.net if isinstance(pretrained, Weights) else pretrained.net_args)


def build_net(net_cfg: dict, model: str | None = None) -> nn.Module:
    """The net of ``net_cfg`` (a net config as plain containers, ``pretrained`` key included) with its weights.

    The config's own keys go to :func:`hydra.utils.instantiate`; the architecture arguments a weights file fixes
    (checked by :func:`check_net_args`) are passed to the class as plain Python arguments, never through Hydra;
    the net is checked against the file on the ``meta`` device before it is built (:func:`build_checked`).
    """
    from hydra.utils import instantiate

    config, pretrained = split_pretrained(net_cfg, model)
    fixed = file_args(pretrained)
    if not fixed:
        net = instantiate(config, _convert_="all")
    else:
        own = {k: v for k, v in config.items() if k not in fixed}
        make = instantiate(own, _convert_="all", _partial_=True)
        state = pretrained.state if isinstance(pretrained, Converted) else None
        net = build_checked(lambda: make(**fixed), state, pretrained.name if isinstance(pretrained, Weights)
                            else pretrained.source, config)
    if pretrained is not None:
        load_pretrained(net, pretrained, net_args=config)
    return net


def check_converted(converted: Converted) -> None:
    """Load ``converted`` into the net it implies (its class, built with its arguments; strict): what ``hub
    convert`` checks before it writes. A file without a known class is only checked for finite float tensors."""
    if not converted.target:
        return
    what = converted.source
    cls = net_class(converted.target, f"pretrained {what}")
    net = build_checked(lambda: cls(**converted.net_args), converted.state, what, converted.net_args)
    load_into(net, converted.state, what, converted.net_args)


def write(converted: Converted, out: str | os.PathLike) -> str:
    """Write ``converted`` to ``out`` in m3l's layout, atomically; returns its sha256.

    The file holds ``state_dict`` (the net's weights alone: no optimizer, no config), ``m3l_layout: 1``,
    ``m3l_target`` (the net's class) and ``m3l_net_args`` (its architecture arguments), plain containers
    that load with ``weights_only=True``.
    """
    from m3l.io.atomic import atomic_write

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": converted.state, "m3l_layout": 1, "m3l_net_args": converted.net_args}
    if converted.target:
        payload["m3l_target"] = converted.target
    with atomic_write(out) as f:
        torch.save(payload, f)
    return sha256(out)


def release(checkpoint: str | os.PathLike, out: str | os.PathLike) -> str:
    """Write the net weights of an m3l checkpoint (or any known weights file) to ``out``; returns its sha256."""
    return write(convert_file(checkpoint), out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("convert", "release", "-h", "--help"):
        argv = ["release", *argv]  # the first form: python -m m3l.hub CHECKPOINT OUT.pth
    parser = argparse.ArgumentParser(prog="python -m m3l.hub", description="Write a weights file in m3l's layout "
                                     "(the net's weights, class and architecture arguments) and print its sha256.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help in (("convert", "any weights file m3l knows: the authors' released files (MatConvNet .mat, "
                                   "KAIR, BasicSR, ...), m3l checkpoints"),
                       ("release", "a checkpoint written by m3l.run.train (or a state dict), for the weights table")):
        command = commands.add_parser(name, help=help)
        command.add_argument("file", help="the weights file or checkpoint to read, or the name of a WEIGHTS entry")
        command.add_argument("out", help="the weights file to write (.pth)")
    args = parser.parse_args(argv)
    try:
        entry = WEIGHTS.get(args.file)  # an entry's name: its file, downloaded and checked
        converted = convert_file(download(entry), entry.target, entry.layout) if entry else convert_file(args.file)
        check_converted(converted)  # the net it implies takes it (strict): nothing else is written as a release
        digest = write(converted, args.out)
    except M3LError as error:
        print(f"m3l.hub: error: {error}", file=sys.stderr)
        return 2
    overrides = ([model_for(converted.target)] if converted.target else []) + \
        [override(k, v) for k, v in converted.net_args.items()]
    print(f"{args.out}\nlayout: {converted.layout or 'a bare state dict'}\nsha256: {digest}\n"
          f"overrides: {' '.join(overrides) or 'none known'}\n"
          f"to release it: a URL whose file name ends with -{digest[:8]}.pth")
    return 0


def local_weights(entry: Weights, folder: str | os.PathLike | None = None, cache: bool = True) -> Path | None:
    """The entry's file on this machine, without downloading: under ``folder`` (at any depth) by its released
    name (``sigma=25.mat``) with the table's sha256 where it pins one (a file of that name with another sha256 is
    skipped with one line on stderr), else (``cache``) where :func:`download` keeps it in torch.hub's cache; None
    when neither has it. ``benchmarks/published.py --weights DIR`` and the workflow's ``weights_dir`` use it."""
    import sys

    for path in sorted(Path(folder).rglob(entry.released_name)) if folder is not None else []:
        if not path.is_file():
            continue
        if entry.sha256 is None or sha256(path) == entry.sha256:
            return path
        print(f"{entry.name}: {path} is not the table's file (sha256 differs); skipped", file=sys.stderr)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    expected = entry.sha256 or recorded(cached.parent).get(entry.url)  # an unpinned entry: its first download's
    if cache and cached.is_file() and (expected is None or sha256(cached) == expected):
        return cached
    return None


if __name__ == "__main__":
    raise SystemExit(main())
