"""The zoo's registry: every model family, what it knows, in one place that every consumer reads.

A family is one file ``m3l/models/<family>.py`` holding, in this order (timm's shape):

1. the net (a plain ``nn.Module``; its ``__init__`` arguments are the net config's keys);
2. its released weights layouts (:class:`m3l.models._layouts.Layout`: ``detect`` and ``convert`` of the
   authors' files; shared helpers in :mod:`m3l.models._layouts` and :mod:`m3l.models._matconvnet`);
3. its weights entries (:class:`Weights`: URL, sha256, architecture arguments, layout, published numbers and
   the test protocol that measures them; protocol helpers: :data:`GRAY_DENOISING`, :func:`sigma`, :func:`rows`,
   :func:`noise`, :data:`JPEG_GRAY`, :data:`NOISE_TESTS`, :data:`COLOR_DENOISING`, :data:`GOPRO_TEST`, :data:`SIDD_TEST`);
4. one registry line at the bottom::

       FAMILY = register(Family("dncnn", DnCNN, tiny={"depth": 3, "width": 4}, layouts=LAYOUTS, weights=WEIGHTS,
                                doc="DnCNN (Zhang et al. 2017). pretrained=True: ..."))

   ``name`` is the torch.hub entry point (``torch.hub.load(REPO, name, pretrained=..., variant=...)``) and the
   ``family`` of its entries; ``tiny`` the architecture arguments, without ``channels``, of a net small enough
   for a test (built, run forward and backward, exported, saved and reloaded in well under a second);
   ``doc`` the entry point's docstring. A layout's or an entry's ``target`` (the net class) is filled in here.

Nothing else lists the families: :func:`families` imports every module of ``m3l/models/`` (not those starting
with ``_``) and collects what they register. From it come ``hubconf.py`` (one entry point per family),
:data:`m3l.hub.WEIGHTS` (every family's entries), the layouts :func:`m3l.hub.convert_file` recognises,
``python -m m3l.run.list``, ``benchmarks/published.py``, and the tests that parametrize over the families
(``tests/test_zoo.py``, ``test_zoo_configs.py``, ``test_hub.py``, ``test_export.py``) with each family's
``tiny`` settings: a new family is tested by them without editing them.

Adding a family touches:

- ``m3l/models/<family>.py``: the net, its layouts, its weights entries, its ``register(Family(...))`` line;
- ``m3l/configs/net/<family>.yaml`` (``_target_`` and the paper's architecture), ``m3l/configs/model/<family>.yaml``
  (its training protocol at CPU size) and ``m3l/configs/protocol/paper/<family>.yaml`` (the paper's);
- ``tests/test_authors_weights.py``: the authors' own code (from a reference implementation, test-only) and m3l's
  net give the same output on the converted file;
- the workflow's preset rows (``workflow/config/config.yaml``) where the family joins the paper reruns.

Imports torch only (through the families), so torch.hub users need neither Lightning nor Hydra.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, replace

from m3l.errors import M3LError


@dataclass(frozen=True)
class Weights:
    """One weights file: where it is, what it fits and what it is known to reach."""

    model: str              # the model config that tests it (m3l/configs/model/NAME.yaml: dncnn, dncnn_b, ffdnet, ...)
    variant: str            # which training (sigma25, gray_blind, kair_sigma25, ...)
    url: str
    sha256: str | None      # None: not checked when the entry was written (recorded at the first download)
    target: str = ""        # the architecture's class (a net config's _target_); in a family's file, the family's
    net: dict = field(default_factory=dict)  # the architecture arguments the weights need
    layout: str = "m3l"     # layout of the file (m3l.models._layouts), converted to m3l's on load
    metrics: dict = field(default_factory=dict)  # "test set/degradation/metric": value, as published
    protocol: tuple = ()    # m3l.run.test overrides that measure `metrics` ({data_root}: the test sets' folder)
    source: str = ""        # who trained it, and its licence
    file: str = ""          # the file's name as released, where the URL does not end with it (Google Drive)

    @property
    def name(self) -> str:
        return f"{self.model}_{self.variant}"

    @property
    def family(self) -> str:
        """The family of the architecture (``dncnn`` for m3l.models.dncnn.DnCNN): its hubconf entry point."""
        return family_of(self.target) or self.target.rsplit(".", 2)[-2]

    @property
    def manual(self) -> bool:
        """The URL is a shared folder (Google Drive, OneDrive / SharePoint ``:f:`` links), not a file: the user
        downloads ``released_name`` from it by hand."""
        return "drive.google.com/drive/folders/" in self.url or ".sharepoint.com/:f:/" in self.url

    @property
    def released_name(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1]

    @property
    def filename(self) -> str:
        """Its name in torch.hub's cache: ``<entry>-<sha256's first 8 digits>.<ext>`` (torch.hub's habit), or
        ``<entry>.<ext>`` for an entry without a pinned sha256 (the sha256 of its first download is recorded,
        see :func:`m3l.hub.download`). Never the released name alone: two entries released as ``model.pth``
        must not share a cache file."""
        suffix = "." + self.released_name.rsplit(".", 1)[-1] if "." in self.released_name else ""
        return f"{self.name}-{self.sha256[:8]}{suffix}" if self.sha256 else f"{self.name}{suffix}"


# Test protocols (m3l.run.test overrides; {data_root} holds set12/, bsd68/, live1_gray/, classic5/, ...).
GRAY_DENOISING = ("preset=paper", "data_root={data_root}")


def sigma(value: int) -> tuple:
    """DnCNN-S's protocol: one sigma, tested at that sigma only."""
    return (*GRAY_DENOISING, "data.test_degradations=null", f"degradation@data.degradation=sigma{value}")


NOISE_TESTS = ("data.test_degradations=[" + ",".join(
    "{_target_:m3l.data.degradations.GaussianNoise,sigma:%d}" % s for s in (15, 25, 50)) + "]")
COLOR_DENOISING = ("data.channels=3", "data.test_sets={cbsd68:{data_root}/cbsd68}", NOISE_TESTS)  # sigma 15/25/50
JPEG_GRAY = ("data.test_sets={live1_gray:{data_root}/live1_gray,classic5:{data_root}/classic5}",
             "data.test_degradations=[{_target_:m3l.data.degradations.JPEG,quality:10},"
             "{_target_:m3l.data.degradations.JPEG,quality:20},{_target_:m3l.data.degradations.JPEG,quality:30},"
             "{_target_:m3l.data.degradations.JPEG,quality:40}]", "metrics.psnrb=true")

# Real pairs (data=paired): GoPro's test pairs as released (<sequence>/blur/ and sharp/, degradation gopro_blur); the
# SIDD validation blocks as PNG pairs (the standard set `sidd`: input/ and target/, degradation real). Metric keys:
# "gopro/gopro_blur/psnr", "sidd/real/psnr".
GOPRO_TEST = ("data=paired", "data.test_sets={gopro:{data_root}/gopro/test}")
SIDD_TEST = ("data=paired", "data.test_sets={sidd:{data_root}/sidd}", "data.input=/input/", "data.target=/target/",
             "data.degradation=real")


def rows(sets: dict[str, dict[str, tuple]], metrics: tuple[str, ...] = ("psnr",)) -> dict:
    """``{"set/degradation/metric": value}`` from ``{set: {degradation: (value per metric)}}``."""
    return {f"{s}/{d}/{m}": v for s, table in sets.items() for d, values in table.items()
            for m, v in zip(metrics, values)}


def noise(values: tuple[float, ...], sigmas: tuple[int, ...] = (15, 25, 50)) -> dict:
    """``{"sigma15": (value,), ...}``: one row per noise level, for :func:`rows`."""
    return {f"sigma{s}": (v,) for s, v in zip(sigmas, values)}


@dataclass(frozen=True)
class Family:
    """One model family: see the module's docstring."""

    name: str                       # the torch.hub entry point; the `family` of its weights entries
    net: type                       # the net class (a net config's _target_)
    tiny: dict = field(default_factory=dict)  # small architecture arguments (no `channels`) for tests
    layouts: tuple = ()             # its released layouts (m3l.models._layouts.Layout)
    weights: tuple = ()             # its weights entries (Weights), the first the default of pretrained=True
    doc: str = ""                   # the torch.hub entry point's docstring

    @property
    def target(self) -> str:
        """The net class as a config's ``_target_`` names it."""
        return f"{self.net.__module__}.{self.net.__qualname__}"

    def build(self, channels: int = 1, **kwargs):
        """The net with its ``tiny`` settings (``kwargs`` override them)."""
        return self.net(channels=channels, **{**self.tiny, **kwargs})


_FAMILIES: dict[str, Family] = {}
_LOADED = False


def register(family: Family) -> Family:
    """Register ``family`` (called at the bottom of its file): its layouts' and entries' ``target`` become its
    net's. Returns the family as registered."""
    if family.name in _FAMILIES and _FAMILIES[family.name].target != family.target:
        raise M3LError(f"two families are named {family.name!r}: {_FAMILIES[family.name].target} and {family.target}")
    family = replace(family, layouts=tuple(layout if layout.target else replace(layout, target=family.target)
                                           for layout in family.layouts),
                     weights=tuple(w if w.target else replace(w, target=family.target) for w in family.weights))
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, Family]:
    """``{name: Family}`` of every family, by name (imports each module of ``m3l/models/`` once)."""
    global _LOADED
    if not _LOADED:
        import m3l.models

        for module in pkgutil.iter_modules(m3l.models.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"m3l.models.{module.name}")
        _LOADED = True
    return dict(sorted(_FAMILIES.items()))


def family(name: str) -> Family:
    """The family ``name``; one line listing the known ones otherwise."""
    known = families()
    if name not in known:
        raise M3LError(f"no model family {name!r}; known: {', '.join(known)}")
    return known[name]


def family_of(target: str) -> str | None:
    """The name of the family whose net is the class ``target``, or None."""
    return next((f.name for f in families().values() if f.target == target), None)


def weights() -> dict[str, Weights]:
    """``{entry name: Weights}`` of every family's entries (:data:`m3l.hub.WEIGHTS`)."""
    table: dict[str, Weights] = {}
    for fam in families().values():
        for entry in fam.weights:
            if entry.name in table:
                raise M3LError(f"two weights entries are named {entry.name!r} (families {table[entry.name].family} "
                               f"and {fam.name})")
            table[entry.name] = entry
    return table


def layouts() -> dict[str, Layout]:  # noqa: F821 (m3l.models._layouts.Layout)
    """``{name: Layout}``: m3l's own layout, then every family's."""
    from m3l.models._layouts import M3L

    known = {M3L.name: M3L}
    for fam in families().values():
        for layout in fam.layouts:
            known[layout.name] = layout
    return known
