"""What the user typed wins over a preset.

A preset (``preset=paper``) composes ``configs/preset/<preset>.yaml`` and the chosen model's protocol,
``configs/protocol/<preset>/<model>.yaml``. The protocol comes after the model in the defaults list (it must
override the model's CPU-sized defaults), and Hydra composes the defaults list before it applies the command
line's values, with two consequences a user would not expect:

- a degradation chosen on the command line (``degradation@data.degradation=sigma25``) is composed before the
  protocol, whose value (``data.degradation.sigma: [0, 75]``) then replaces the chosen one;
- a mapping on the command line (``data.test_sets={set12: DIR}``) is merged into the protocol's mapping, so the
  protocol's other sets stay.

:func:`user_wins` repairs the composed config after the fact: every key the preset set and the command line
touched takes the value it has in the same command without the preset. ``run.yaml`` records, for each key the
preset set, whether the preset's value was used or the command line's; a disagreement is said in one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# Groups whose option is one setting (what the degradation is): chosen on the command line, they win over the
# preset. The other groups choose a component (data=paired, net=..., trainer=...) that the preset then tunes, as
# an experiment config tunes them in lightning-hydra-template: `data=paired preset=paper` keeps the protocol's
# folders and patch sizes; set a component's keys with KEY=VALUE to win over the preset.
SETTING_GROUPS = ("degradation",)
DROPPED = object()  # a key the command line's value leaves out (a test set not in data.test_sets={...})


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """The leaf keys of a config (dotted paths), lists and empty mappings counted as leaves; values unresolved."""
    if isinstance(node, DictConfig) and len(node) > 0:
        out: dict[str, Any] = {}
        for key in node.keys():
            out.update(leaves(node._get_node(key), f"{prefix}{key}."))
        return out
    value = OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node
    if hasattr(value, "_value"):  # an omegaconf ValueNode: its raw value, interpolations kept as written
        value = value._value()
    return {prefix[:-1]: value}


def _select(cfg: DictConfig, key: str, default: Any = KeyError) -> Any:
    """``key``'s node value in ``cfg`` without resolving interpolations (``default`` when absent)."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return default
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value()


def _touches(user: str, key: str) -> bool:
    return user == key or key.startswith(user + ".") or user.startswith(key + ".")


def _preset_config(preset: str, model: str | None) -> DictConfig:
    """What ``preset=PRESET`` itself sets for ``model``: its preset file and the model's protocol, merged."""
    from hydra import compose

    from m3l.run.common import available

    names = [f"preset/{preset}"]
    if model and model in available(f"protocol/{preset}"):
        names.append(f"protocol/{preset}/{model}")
    parts = [compose(config_name=name) for name in names]
    for part in parts:
        OmegaConf.set_struct(part, False)
    return OmegaConf.merge(*parts)


def _touched_keys(overrides: Iterable[str]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """From the command line's overrides: ``(config key, override)`` pairs for every key a value override sets
    and every key a group override's chosen option sets; the overrides to compose again without the preset
    (values forced in with ``++``: a key the preset added may not exist without it); and the keys set to null
    inside a mapping (which keep the preset's value)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from m3l.run.common import available

    touched, again, nulls = [], [], []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        group, line = override.key_or_group, override.input_line
        if not override.is_delete() and isinstance(override.value(), dict):
            nulls += _null_leaves(override.value(), group)  # keep the config's value (see keep_nulls)
        is_group = not override.is_delete() and bool(available(group)) and isinstance(override.value(), str)
        if is_group and group not in SETTING_GROUPS:
            if group != "preset":
                again.append(line)
            continue
        if is_group:
            package = override.package if override.package is not None else group.replace("/", ".")
            package = "" if package == "_global_" else package
            home = group.replace("/", ".") + "."  # composed alone, an option lands at its group's path
            option = leaves(compose(config_name=f"{group}/{override.value()}"))
            relative = [key[len(home):] if key.startswith(home) else key for key in option]
            touched += [(f"{package}.{key}" if package else key, line) for key in relative]
            again.append(line)
        elif override.is_delete():
            touched.append((group, line))
            again.append(line)
        else:
            touched.append((group, line))
            again.append("++" + line.lstrip("+"))
    return touched, again, nulls


def user_wins(cfg: DictConfig, choices, overrides: list[str], config_name: str) -> list[dict]:
    """Make every key that both the preset and the command line set take the command line's value (as the
    same command without the preset composes it), in place; returns one record per key the preset set:
    ``{key, preset, used, by}`` with ``by`` ``preset`` or ``command line``."""
    from hydra import compose

    preset, model = choices.get("preset"), choices.get("model")
    if not preset:
        return []
    preset_leaves = {k: v for k, v in leaves(_preset_config(preset, model)).items() if v != "???"}
    touched, again, nulls = _touched_keys(overrides)
    mine = {key: line for key, line in ((k, line) for k in preset_leaves for user, line in touched
                                       if _touches(user, k) and k not in nulls)}
    without = compose(config_name=config_name, overrides=again) if mine else None
    records = []
    for key, preset_value in preset_leaves.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if key not in mine:
            if key in nulls and isinstance(node, DictConfig):  # {set12: null}: the preset's Set12
                node[leaf] = preset_value
            records.append({"key": key, "preset": preset_value, "used": preset_value, "by": "preset"})
            continue
        used = _select(without, key, default=DROPPED)
        if isinstance(node, DictConfig):
            with open_dict(node):
                if used is DROPPED:
                    node.pop(leaf, None)
                else:
                    node[leaf] = used
        records.append({"key": key, "preset": preset_value, "by": "command line", "override": mine[key],
                        **({"dropped": True} if used is DROPPED else {"used": used})})
    return records


def _null_leaves(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _null_leaves(v, f"{prefix}.{key}")]
    return [prefix] if value is None else []


def keep_nulls(cfg: DictConfig, overrides: list[str], config_name: str) -> None:
    """A null inside a mapping given on the command line (``data.test_sets={set12: null}``) keeps the value the
    rest of the configuration gives that key (the preset's, the protocol's or an earlier override's folder of
    Set12), so a mapping of names picks among the sets without repeating their folders; in place."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    for index, override in enumerate(parsed):
        value = override.value() if not override.is_delete() else None
        nulls = _null_leaves(value, override.key_or_group) if isinstance(value, dict) else []
        if not nulls:
            continue
        rest = compose_as_run(config_name, [o for i, o in enumerate(overrides) if i != index])
        for key in nulls:
            given = _select(rest, key, default=None)
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent)
            if given is not None and isinstance(node, DictConfig):
                node[leaf] = given


def conflicts(records: list[dict], preset: str) -> list[str]:
    """One line for each key where the command line's value replaced a different value of the preset."""
    lines = []
    for r in records:
        if r["by"] != "command line" or r.get("used") == r["preset"]:
            continue
        now = "left out" if r.get("dropped") else f"using the command line's {_show(r['used'])}"
        lines.append(f"{r['key']}: {now} ({r['override']}), not preset={preset}'s {_show(r['preset'])}")
    return lines


def _show(value: Any) -> str:
    """A config value in a few words: ``GaussianNoise(sigma=15)`` for a ``_target_`` mapping."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict) and "_target_" in value:
        args = ", ".join(f"{k}={_show(v)}" for k, v in value.items() if not k.startswith("_"))
        return f"{str(value['_target_']).rsplit('.', 1)[-1]}({args})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def compose_as_run(config_name: str, overrides: list[str]) -> DictConfig:
    """``config_name`` composed with ``overrides`` as ``python -m m3l.run.<config_name>`` runs it (the command
    line winning over a preset), for scripts that compose instead of running a command (the workflow's
    ``degrade`` rule). Needs an initialized Hydra (``initialize_config_module("m3l.configs")``)."""
    from hydra import compose

    cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    user_wins(cfg, cfg.hydra.runtime.choices, list(overrides), config_name)
    keep_nulls(cfg, list(overrides), config_name)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
