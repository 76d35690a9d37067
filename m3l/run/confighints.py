"""What to say after Hydra's own message when a run fails on a config typo.

Hydra lists the valid options of a config group (``model=dcnn``), but for a misspelt key
(``trainer.max_epochz=3``) it only says the key is not in the config, and a value of the wrong type
(``trainer.max_epochs=ten``) gets through composition to fail deep inside the library that uses it.
:func:`override_hints` checks the command line's overrides against the config composed without
them and returns one line per bad override: the valid keys (closest first) or the expected type.
It runs only once a run has failed, so it costs nothing otherwise.
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf

_ABSENT = object()


def _key_hint(cfg: DictConfig, key: str) -> str | None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=_ABSENT, throw_on_missing=False) if parent else cfg
    if node is _ABSENT:
        return _key_hint(cfg, parent)
    if not isinstance(node, DictConfig):
        return None
    keys = [str(k) for k in node.keys()]
    close = difflib.get_close_matches(leaf, keys, n=3, cutoff=0.6)
    where, prefix = (f"'{parent}'", f"{parent}.") if parent else ("the config", "")
    guess = f" (did you mean {' or '.join(prefix + k for k in close)}?)" if close else ""
    return f"{key}: no such key in {where}{guess}; its keys: {', '.join(keys)}; '+{key}=...' adds a new one"


def _type_hint(key: str, default, value) -> str | None:
    if isinstance(default, bool) or isinstance(value, bool):
        expected = "true or false" if isinstance(default, bool) and not isinstance(value, bool) else None
    elif isinstance(default, (int, float)) and isinstance(value, str):
        expected = "a number"
    else:
        expected = None
    return f"{key}={value}: {expected} is expected here (the config's value is {default!r})" if expected else None


def _is_missing(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` is in ``cfg`` with the value ``???`` (``OmegaConf.select`` gives such a key's default)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_missing=False) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node.keys() and OmegaConf.is_missing(node, leaf)


def override_hints(config_name: str, overrides: list[str]) -> list[str]:
    """One line per override of ``overrides`` that names no key of the config or has the wrong type."""
    try:
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(
            [o for o in overrides if "=" in o and not o.startswith(("-", "hydra.", "+hydra.", "++hydra."))])
        GlobalHydra.instance().clear()
        with initialize_config_module("m3l.configs", version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            groups = [o for o in parsed if "@" in o.key_or_group or loader.get_group_options(o.key_or_group)]
            values = [o for o in parsed if o not in groups and o.is_force_add() is False and not o.is_add()
                      and not o.is_delete() and not o.is_sweep_override()]
            cfg = compose(config_name, overrides=[o.input_line for o in groups])
    except Exception:  # a group typo: Hydra has listed the options already
        return []
    hints = []
    for override in values:
        key = override.key_or_group
        try:
            default = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        except Exception:  # an interpolation that needs a running Hydra app
            continue
        if default is _ABSENT and _is_missing(cfg, key):  # a ??? key (checkpoint, clean_dir): it exists
            continue
        hint = _key_hint(cfg, key) if default is _ABSENT else _type_hint(key, default, override.value())
        if hint:
            hints.append(hint)
    return hints
