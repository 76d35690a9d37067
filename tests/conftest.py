"""Shared fixtures: run the real m3l commands in subprocesses on tiny models and data.

Every test starts from a seeded random state and runs with an empty ``XDG_CONFIG_HOME`` (the developer's own
``~/.config/m3l`` never leaks in) and a private ``M3L_CACHE``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# A DnCNN small enough to train in seconds on 2 cores, on a few tiny dead-leaves images.
TINY = [
    "net.depth=3", "net.width=8", "trainer.max_epochs=1", "data.patches_per_epoch=32",
    "data.train_batch_size=8", "data.deadleaves.count=4", "data.deadleaves.size=64", "data.num_workers=0",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whichever tests ran before it on its worker
    (pytest-xdist hands tests to workers in a different order each run)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _private_pixel_cache(tmp_path_factory, monkeypatch):
    """Data modules built inside the test process keep their training-set caches (m3l.data.cache) in the session's
    temp folder, not in ``~/.cache/m3l``."""
    from m3l.data import cache

    monkeypatch.setattr(cache, "DEFAULT_DIR", tmp_path_factory.getbasetemp() / "pixels")


@pytest.fixture(scope="session")
def m3l_env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("M3L_", "HYDRA_"))}
    env.update(XDG_CONFIG_HOME=str(root / "xdg"), M3L_CACHE=str(root / "cache"), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def run_m3l(m3l_env, tmp_path):
    """``run_m3l(task, *overrides, cwd=tmp_path, env=None, check=True)`` -> CompletedProcess."""

    def run(task: str, *overrides: str, cwd: Path | None = None, env: dict | None = None, check: bool = True):
        result = subprocess.run([sys.executable, "-m", f"m3l.run.{task}", *overrides], cwd=cwd or tmp_path,
                                env={**m3l_env, **(env or {})}, capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"m3l.run.{task} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result

    return run


@pytest.fixture(scope="session")
def tiny_checkpoint(m3l_env, tmp_path_factory) -> Path:
    """A tiny DnCNN trained once for the session (exact final path through checkpoint_out)."""
    folder = tmp_path_factory.mktemp("trained")
    target = folder / "final" / "model.ckpt"
    subprocess.run([sys.executable, "-m", "m3l.run.train", "model=dncnn", *TINY, f"checkpoint_out={target}",
                    "hydra.run.dir=run"], cwd=folder, env=m3l_env, check=True, capture_output=True, timeout=600)
    return target


def write_images(folder: Path, sizes: dict[str, tuple[int, int]], mode: str = "L", seed: int = 0) -> list[Path]:
    """Random-texture images of the given ``{relative name: (width, height)}``."""
    rng = np.random.default_rng(seed)
    paths = []
    for name, (w, h) in sizes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (h, w) if mode == "L" else (h, w, len(mode))
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        paths.append(path)
    return paths


def perturbed(net: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """``net`` with every parameter moved off its initial value: a net whose init is the identity (DnCNN's zero
    last convolution) would make a test comparing two ways of running it compare the input with itself."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return net


# The spandrel versions the authors'-weights tests were checked with (tests/test_authors_weights.py).
SPANDREL = ("0.4", "0.5")


def import_spandrel():
    """``spandrel``, imported for tests only, or a pytest skip saying why.

    ``import spandrel`` imports every architecture it ships, and two that m3l does not use (LaMa,
    RestoreFormer) import ``torchvision.transforms.functional`` at module level. Where torchvision is
    missing (it has no CPU-only build to install beside torch), a stub package with those names alone
    (calling them raises) stands in while spandrel is imported, and is removed from ``sys.modules`` again.
    """
    import importlib.util
    import types

    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed (pip install --no-deps 'spandrel>=0.4,<0.5' safetensors einops)")
    stubbed = []
    if "spandrel" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        def missing(*args, **kwargs):
            raise RuntimeError("torchvision stub (tests/conftest.py): not installed")

        names = {"torchvision": {}, "torchvision.transforms": {},
                 "torchvision.transforms.functional": {"InterpolationMode": type("InterpolationMode", (), {}),
                                                       "rotate": missing, "normalize": missing}}
        for name, attributes in names.items():
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            sys.modules[name] = module
            stubbed.append(name)
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    try:
        import spandrel
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
    low, high = SPANDREL
    version = tuple(int(part) for part in spandrel.__version__.split(".")[:2])
    if not tuple(map(int, low.split("."))) <= version < tuple(map(int, high.split("."))):
        pytest.skip(f"spandrel {spandrel.__version__} is outside the tested range >={low},<{high}")
    return spandrel


@pytest.fixture(scope="session")
def spandrel_arch():
    """``spandrel_arch(name)``: spandrel's package for architecture ``name`` (``"DRUNet"``, ``"FBCNN"``,
    ``"NAFNet"``, ...), holding the authors' network class and spandrel's ``<name>Arch`` (its detect and load).
    Skips when spandrel is not installed or not in the tested version range."""
    import importlib

    import_spandrel()
    return lambda name: importlib.import_module(f"spandrel.architectures.{name}")
