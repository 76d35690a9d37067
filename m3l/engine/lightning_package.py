"""Modules, data modules and configs written for the ``lightning`` package, run by m3l's ``pytorch_lightning`` Trainer.

``import lightning.pytorch as L`` (the current Lightning docs, lightning-hydra-template) and ``import
pytorch_lightning as pl`` ship the same classes twice, and each Trainer accepts only its own package's
modules, callbacks and loggers. m3l runs everything on ``pytorch_lightning``; :func:`as_pytorch_lightning`
lets a user's ``lightning.pytorch.LightningModule`` / ``LightningDataModule`` in by giving the object a class
that is both: the user's class first (their ``training_step``, ``configure_optimizers``, ... run as written),
then ``pytorch_lightning``'s base, whose methods replace the ``lightning.pytorch`` base's ones the user did not
override (``log``, ``trainer``, the hooks' defaults), so the Trainer sees its own package throughout. A
config naming a ``lightning.pytorch`` class (a callback, a logger) gets its ``pytorch_lightning`` copy instead
(:func:`pytorch_lightning_targets`).
"""

from __future__ import annotations

import inspect
import sys

_TWINS: dict[type, type] = {}
_PLAIN = ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__init_subclass__")


def _lightning_base(obj):
    """``(lightning.pytorch base, pytorch_lightning base)`` of ``obj``, or None if it is no ``lightning`` object."""
    other = sys.modules.get("lightning.pytorch")
    if other is None:
        return None
    import pytorch_lightning as pl

    pairs = ((other.LightningModule, pl.LightningModule), (other.LightningDataModule, pl.LightningDataModule))
    for theirs, ours in pairs:
        if isinstance(obj, theirs) and not isinstance(obj, ours):
            return theirs, ours
    return None


def _twin(cls: type, theirs: type, ours: type) -> type:
    """``cls`` (a subclass of ``theirs``) with ``ours`` as a further base, made once per class."""
    if cls not in _TWINS:
        user = {name for klass in cls.__mro__ if not issubclass(theirs, klass) for name in vars(klass)}
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        for name in dir(theirs):
            if name not in user and name not in _PLAIN and hasattr(ours, name):
                namespace[name] = inspect.getattr_static(ours, name)
        if not {"__reduce__", "__reduce_ex__"} & user:
            namespace["__reduce_ex__"] = _reduce_ex
        namespace["_m3l_twin_of"] = (cls, theirs, ours)
        _TWINS[cls] = type(cls.__name__, (cls, ours), namespace)
    return _TWINS[cls]


def _reduce_ex(self, protocol):
    """Pickle a twin (``strategy=ddp_spawn``, spawned workers) by the user's class; it is twinned again on loading."""
    state = self.__getstate__() if hasattr(self, "__getstate__") else self.__dict__
    return _revive, type(self)._m3l_twin_of, state


def _revive(cls: type, theirs: type, ours: type):
    """An empty object of ``cls``'s twin, for unpickling (its state is set next)."""
    twin = _twin(cls, theirs, ours)
    return twin.__new__(twin)


def as_pytorch_lightning(obj):
    """``obj`` itself; a ``lightning.pytorch`` module or data module now also a ``pytorch_lightning`` one."""
    bases = _lightning_base(obj)
    if bases is not None:
        obj.__class__ = _twin(type(obj), *bases)
    return obj


LIGHTNING_PREFIX = "lightning.pytorch."


def pytorch_lightning_targets(config):
    """A plain config (dicts, lists) with each ``_target_: lightning.pytorch.X`` read as ``pytorch_lightning.X``,
    the same class in the package m3l's Trainer runs: trainer, callback and logger configs copied from the Lightning
    docs or lightning-hydra-template work as written."""
    if isinstance(config, dict):
        return {key: f"pytorch_lightning.{value[len(LIGHTNING_PREFIX):]}"
                if key == "_target_" and isinstance(value, str) and value.startswith(LIGHTNING_PREFIX)
                else pytorch_lightning_targets(value) for key, value in config.items()}
    if isinstance(config, list):
        return [pytorch_lightning_targets(value) for value in config]
    return config
