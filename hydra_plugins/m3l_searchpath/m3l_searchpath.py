"""Puts the user's m3l config folders in front of the built-in configs.

``$XDG_CONFIG_HOME/m3l`` (default ``~/.config/m3l``), then ``/etc/m3l``, then ``pkg://m3l.configs``:
a user file with the same name as a built-in one shadows it. Only folders that exist are added,
and only for m3l's own apps. (``hydra.searchpath`` in a primary config could only append.)

Hydra finds this module by scanning the ``hydra_plugins`` namespace package; an editable install
hides it from that scan, so :func:`register` also adds it explicitly (m3l's entry points call it).
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

M3L_CONFIGS = "pkg://m3l.configs"


def user_config_dirs() -> list[Path]:
    """m3l's user config folders, highest priority first, that exist."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [p for p in (Path(xdg) / "m3l", Path("/etc/m3l")) if p.is_dir()]


class M3LSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        paths = search_path.get_path()
        if not any(e.path == M3L_CONFIGS for e in paths) or any(e.provider == "m3l-user" for e in paths):
            return
        for folder in reversed(user_config_dirs()):
            search_path.prepend(provider="m3l-user", path=f"file://{folder}")


def register() -> None:
    """Register the plugin with Hydra unless its plugin scan already found it."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    if not any(c.__name__ == M3LSearchPathPlugin.__name__ for c in plugins.discover(SearchPathPlugin)):
        plugins.register(M3LSearchPathPlugin)
