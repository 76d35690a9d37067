"""What m3l can run: ``python -m m3l.run.list [models|weights|families]``.

``models``: every model config (``model=NAME``; yours in ``~/.config/m3l/model/`` too), with its data and
degradation, its net, the parameters of its default (CPU-sized) net, its released weights and its config file.
``weights``: every entry of the pretrained weights table (:data:`m3l.hub.WEIGHTS`, ``net.pretrained=NAME``): its
model and family, what it is published to reach, and whether it is already in torch.hub's cache. ``families``
(listed first): every model family of the registry (:mod:`m3l.models._registry`, each in ``m3l/models/<family>.py``):
its net, the layouts of the released files it converts, its weights entries (its name is also its torch.hub
entry point). All three by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table


def model_rows() -> list[tuple[str, ...]]:
    """``(name, data (degradation), net, parameters, weights, config file)`` of each model config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from m3l.hub import WEIGHTS
    from m3l.run.common import register_search_path

    register_search_path()
    rows = []
    with initialize_config_module("m3l.configs", version_base="1.3"):
        repository = GlobalHydra.instance().config_loader().repository
        for name in sorted(GlobalHydra.instance().config_loader().get_group_options("model")):
            source = repository.load_config(f"model/{name}")
            folder = source.path.removeprefix("file://")  # a user folder; pkg://m3l.configs: the built-in ones
            where = f"m3l/configs/model/{name}.yaml" if folder.startswith("pkg://") else f"{folder}/model/{name}.yaml"
            weights = str(sum(w.model == name for w in WEIGHTS.values()) or "-")
            try:
                cfg = compose("test", overrides=[f"model={name}"], return_hydra_config=True)
                choices = cfg.hydra.runtime.choices
                net_cfg = OmegaConf.to_container(cfg.net, resolve=True)
                net_cfg.pop("pretrained", None)
                parameters = sum(p.numel() for p in instantiate(net_cfg, _convert_="all").parameters())
            except Exception as error:  # a broken user config: say so in its row, list the others
                rows.append((name, f"cannot build it: {str(error).splitlines()[0]}", "", "", weights, where))
                continue
            degradation = choices.get("degradation@data.degradation") or "clean"
            net = net_cfg["_target_"].rsplit(".", 1)[-1]
            rows.append((name, f"{choices.data} ({degradation})", net, f"{parameters:,}", weights, where))
    return rows


def published(metrics: dict, most: int = 2) -> str:
    """The first published numbers of an entry, ``set12/sigma25 30.44 dB``."""
    shown = [f"{key.rsplit('/', 1)[0]} {value:.2f} dB" if key.endswith("/psnr") else f"{key} {value}"
             for key, value in metrics.items() if key.endswith("/psnr")][:most]
    more = sum(key.endswith("/psnr") for key in metrics) - len(shown)
    return ", ".join(shown) + (f" (+{more})" if more > 0 else "") or "-"


def weights_rows() -> list[tuple[str, ...]]:
    """``(name, model, family, released file, published, cached)`` of each :data:`m3l.hub.WEIGHTS` entry (the
    released file's name is what ``weights_dir=`` / ``net.pretrained=FILE`` find it by)."""
    import torch

    from m3l.hub import WEIGHTS

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return [(w.name, w.model, w.family, w.released_name, published(w.metrics),
             "yes" if (cache / w.filename).is_file() else "no")
            for w in WEIGHTS.values()]


def family_rows() -> list[tuple[str, ...]]:
    """``(family, net, layouts, weights entries, file)`` of each family of the registry."""
    from m3l.models._registry import families

    return [(name, family.target, ", ".join(layout.name for layout in family.layouts) or "-",
             str(len(family.weights) or "-"), f"m3l/models/{family.net.__module__.rsplit('.', 1)[-1]}.py")
            for name, family in families().items()]


def show(title: str, columns: tuple[str, ...], rows, console: Console) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3l.run.list", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("models", "weights", "families"), help="list only these (default: all)")
    args = parser.parse_args(argv)
    console = Console()
    if args.what in (None, "families"):
        show("families: torch.hub.load(REPO, FAMILY, pretrained=True|NAME|FILE)",
             ("family", "net", "layouts (net.pretrained=FILE)", "weights", "file"), family_rows(), console)
    if args.what in (None, "models"):
        show("models: python -m m3l.run.train|test|correct model=NAME",
             ("model", "data (degradation)", "net", "parameters (default net)", "weights", "config"), model_rows(),
             console)
    if args.what in (None, "weights"):
        import torch

        show(f"weights: net.pretrained=NAME (cache: {Path(torch.hub.get_dir()) / 'checkpoints'})",
             ("name", "model", "family", "released file", "published PSNR", "downloaded"), weights_rows(), console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
