"""Pretrained weights: the table of known weights files, their download and their loading.

Each entry of :data:`WEIGHTS` names a model and a variant, the URL of the file, its sha256, the
architecture arguments it needs, the key layout it is stored in (converted to m3l's on load) and the
results it is known to reach. Files download into torch.hub's cache (``$TORCH_HOME/hub/checkpoints``,
see :func:`torch.hub.get_dir`), are checked against their sha256 (a mismatch is an error, and the bad
file is not kept) and are read with ``weights_only=True``.

Used by ``hubconf.py`` (``torch.hub.load(...)``) and by net configs with a ``pretrained`` key
(``net.pretrained=true``, ``net.pretrained=NAME`` of an entry, or ``net.pretrained=PATH`` of a weights
file or checkpoint); see :func:`split_pretrained`. Imports torch only, so torch.hub users need
neither Lightning nor Hydra.

To release weights: ``python -m m3l.hub CHECKPOINT OUT.pth`` writes the net's weights alone (a plain
state dict, no optimizer or config) and prints the sha256 to put in a new :data:`WEIGHTS` entry.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from m3l.checkpoint import read_checkpoint
from m3l.errors import M3LError


@dataclass(frozen=True)
class Weights:
    """One weights file: where it is, what it fits and what it is known to reach."""

    model: str              # the model family, as in hubconf / configs/model (dncnn)
    variant: str            # which training (kair_sigma25, ...)
    url: str
    sha256: str
    target: str             # the architecture's class (a net config's _target_)
    net: dict               # the architecture arguments the weights need
    layout: str = "m3l"     # key layout of the file, converted by LAYOUTS on load
    metrics: dict = field(default_factory=dict)  # "test set/degradation/metric": value, as published
    source: str = ""        # who trained it, and its licence

    @property
    def name(self) -> str:
        return f"{self.model}_{self.variant}"

    @property
    def filename(self) -> str:
        """Name in torch.hub's cache: the URL's file name with the sha256's first 8 digits (torch.hub's habit)."""
        stem, dot, suffix = self.url.rsplit("/", 1)[-1].partition(".")
        return f"{stem}-{self.sha256[:8]}{dot}{suffix}"


WEIGHTS: dict[str, Weights] = {w.name: w for w in [
    # The DnCNN authors' gray sigma-25 DnCNN-S (MatConvNet training, batch norm merged into the
    # convolutions), as published in KAIR (MIT licence) under model.<i>.* keys.
    Weights(model="dncnn", variant="kair_sigma25",
            url="https://github.com/cszn/KAIR/releases/download/v1.0/dncnn_25.pth",
            sha256="0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
            target="m3l.models.dncnn.DnCNN", net={"channels": 1, "depth": 17, "width": 64, "batch_norm": False},
            layout="kair_dncnn", metrics={"set12/gaussian_25/psnr": 30.44, "bsd68/gaussian_25/psnr": 29.23},
            source="Zhang et al. 2017 (cszn/DnCNN, converted by cszn/KAIR; MIT licence)"),
]}


def strip_prefix(state: dict) -> dict:
    """m3l's layout: a bare net's state dict, or a Lightning checkpoint of RestorationModule (``net.*``)."""
    state = state.get("state_dict", state)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}
    return state


def kair_dncnn(state: dict) -> dict:
    """KAIR's DnCNN (``model.<i>.weight``, the same Conv/ReLU sequence) to m3l's (``body.<i>.weight``)."""
    return {re.sub(r"^model\.", "body.", k): v for k, v in strip_prefix(state).items()}


LAYOUTS: dict[str, Callable[[dict], dict]] = {"m3l": strip_prefix, "kair_dncnn": kair_dncnn}


def find(model: str, variant: str | None = None) -> Weights:
    """The entry for ``model`` and ``variant`` (the first of ``model``'s entries when ``variant`` is None)."""
    known = [w for w in WEIGHTS.values() if w.model == model and variant in (None, w.variant)]
    if not known:
        names = ", ".join(sorted(WEIGHTS)) or "none"
        raise M3LError(f"no pretrained weights for model {model!r}" + (f", variant {variant!r}" if variant else "")
                       + f"; known: {names}")
    return known[0]


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(entry: Weights, progress: bool = True) -> Path:
    """The entry's file in torch.hub's cache, downloaded first if missing; its sha256 is always checked."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    if target.is_file() and sha256(target) == entry.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes a temporary file, checks the hash, then renames: a bad download never lands in the cache
        torch.hub.download_url_to_file(entry.url, str(target), hash_prefix=entry.sha256, progress=progress)
    except RuntimeError as error:
        if "invalid hash value" in str(error):
            raise M3LError(f"pretrained {entry.name}: {entry.url} does not have the expected sha256 "
                           f"{entry.sha256} ({error}); not kept") from None
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url}: {error}") from None
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        raise M3LError(f"pretrained {entry.name}: cannot download {entry.url} ({error}); download it by hand "
                       f"into {target}") from None
    return target


def read_state(path: str | os.PathLike) -> dict:
    """The tensors in a weights file or checkpoint, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise M3LError(f"pretrained: {path} is not a file (give true, the name of a known entry, or a weights file)")
    return read_checkpoint(path, "pretrained:")


def load_into(net: nn.Module, state: dict, what: str) -> nn.Module:
    """``net.load_state_dict(state)``, strict, with one line when the weights do not fit."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split("\n\t")[1:2]) or str(error).splitlines()[0]
        raise M3LError(f"pretrained: {what} does not fit {type(net).__name__} ({detail[:300]}); are the net's "
                       f"arguments those the weights were trained with?") from None
    return net


def load_pretrained(net: nn.Module, pretrained: str | os.PathLike | Weights, progress: bool = True) -> nn.Module:
    """Load ``pretrained`` (an entry, an entry's name, or a file path) into ``net``; returns ``net``."""
    if isinstance(pretrained, str) and pretrained in WEIGHTS:
        pretrained = WEIGHTS[pretrained]
    if isinstance(pretrained, Weights):
        state = LAYOUTS[pretrained.layout](read_state(download(pretrained, progress)))
        return load_into(net, state, f"{pretrained.name} ({pretrained.url})")
    return load_into(net, strip_prefix(read_state(pretrained)), str(pretrained))


def split_pretrained(net_cfg: dict, model: str | None = None) -> tuple[dict, Weights | str | None]:
    """A net config without its ``pretrained`` key, and what that key asks for.

    ``pretrained: true`` means ``model``'s first entry for the config's ``_target_``; a name means that
    entry; anything else is a path. An entry's architecture arguments replace the config's (weights
    fix the architecture), so one override is enough: ``net.pretrained=dncnn_kair_sigma25``.
    """
    net_cfg = dict(net_cfg)
    pretrained = net_cfg.pop("pretrained", None)
    if pretrained in (None, False, ""):
        return net_cfg, None
    if pretrained is True:
        candidates = [w for w in WEIGHTS.values() if w.target == net_cfg.get("_target_")]
        chosen = [w for w in candidates if w.model == model] or candidates
        if not chosen:
            raise M3LError(f"net.pretrained=true: no known weights for {net_cfg.get('_target_')}; give a weights "
                           f"file (net.pretrained=PATH) or one of: {', '.join(sorted(WEIGHTS)) or 'none'}")
        pretrained = chosen[0]
    elif str(pretrained) in WEIGHTS:
        pretrained = WEIGHTS[str(pretrained)]
    else:
        return net_cfg, str(pretrained)
    if net_cfg.get("_target_") != pretrained.target:
        raise M3LError(f"net.pretrained: {pretrained.name} is for {pretrained.target}, not {net_cfg.get('_target_')}")
    changed = {k: v for k, v in pretrained.net.items() if net_cfg.get(k) != v}
    if changed:
        print(f"pretrained {pretrained.name}: using " + " ".join(f"net.{k}={v}" for k, v in changed.items()))
    return {**net_cfg, **pretrained.net}, pretrained


def release(checkpoint: str | os.PathLike, out: str | os.PathLike) -> str:
    """Write the net weights of an m3l checkpoint (or a state dict) to ``out``, atomically; returns its sha256."""
    import tempfile

    state = strip_prefix(read_state(checkpoint))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m m3l.hub", description="Write a checkpoint's net weights "
                                     "alone, for release, and print the sha256 for m3l.hub.WEIGHTS.")
    parser.add_argument("checkpoint", help="a checkpoint written by m3l.run.train (or a state dict)")
    parser.add_argument("out", help="the weights file to write (.pth)")
    args = parser.parse_args(argv)
    try:
        digest = release(args.checkpoint, args.out)
    except M3LError as error:
        print(f"m3l.hub: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}\nsha256: {digest}\nrelease it under a URL whose file name ends with -{digest[:8]}.pth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
