"""What every run records in its run directory: ``run.yaml`` with the exact command, the resolved
config, package versions and the git commit of m3l (and of the working directory, when it differs)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

PACKAGES = ("m3l", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "numpy", "pillow",
            "pandas", "snakemake", "wandb")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def git_state(folder: str | os.PathLike) -> dict | None:
    """Commit and dirtiness of the git work tree holding ``folder``; ``None`` outside one."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        root = git("rev-parse", "--show-toplevel").stdout.strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"root": root, "commit": head.stdout.strip(), "dirty": dirty}


def command(task: str, arguments: list[str]) -> str:
    """The command line that reruns this run."""
    return shlex.join(["python", "-m", f"m3l.run.{task}", *arguments])


def run_info(cfg: DictConfig, task: str, arguments: list[str], preset: list[dict] | None = None) -> dict:
    """What ``run.yaml`` holds; ``preset``: for each key the preset set, whose value was used
    (:func:`m3l.run.precedence.user_wins`)."""
    m3l_git = git_state(Path(__file__).resolve().parent)
    cwd_git = git_state(Path.cwd())
    info = {
        "command": command(task, arguments),
        "cwd": str(Path.cwd()),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": {"m3l": m3l_git, **({"cwd": cwd_git} if cwd_git and cwd_git != m3l_git else {})},
        "versions": versions(),
        "threads": _torch_threads(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if preset:
        info["preset_keys"] = preset
    return info


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def write_run_info(info: dict, folder: str | os.PathLike) -> Path:
    """Write ``folder/run.yaml``; on several ranks (DDP: Slurm tasks, or the processes Lightning starts) only global
    rank 0 writes it (the others return its path)."""
    from m3l.engine.distributed import is_rank_zero

    folder = Path(folder)
    if not is_rank_zero():
        return folder / "run.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    from m3l.io.atomic import atomic_write

    path = folder / "run.yaml"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(info, sort_keys=False, allow_unicode=True))
    return path
