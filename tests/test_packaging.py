"""Packaging: one package whose folders are its import paths (m3l/models is m3l.models), for wheels as for
editable installs; the core trains, tests and corrects without any extra, and a missing extra is one line naming the
``pip install "m3l[EXTRA]"`` to run."""

import re
import runpy
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY
from m3l.errors import M3LError

# What each extra brings (the importable names) and what the core may never need.
EXTRA_MODULES = {
    "workflow": ["snakemake", "matplotlib"],
    "slurm": ["hydra_plugins.hydra_submitit_launcher", "submitit", "snakemake_executor_plugin_slurm"],
    "wandb": ["wandb"],
    "tensorboard": ["tensorboard", "tensorboardX"],
    "optuna": ["hydra_plugins.hydra_optuna_sweeper", "optuna", "sqlalchemy"],
    "video": ["av"],
    "onnx": ["onnx", "onnxruntime", "onnxscript"],
}
EVERY_EXTRA = sorted({m for modules in EXTRA_MODULES.values() for m in modules})
# Makes the modules listed in argv[1] missing, as if their distributions were not installed (importing one fails,
# importlib.metadata does not find it: torchmetrics imports matplotlib when its metadata is there), then runs
# ``python -m MODULE ARGS`` or ``python -c CODE`` from the rest of argv.
BLOCKED = """import importlib.metadata as metadata, runpy, sys
blocked = [name for name in sys.argv[1].split(',') if name]
for name in blocked:
    sys.modules[name] = None
missing = {name.rsplit('.', 1)[-1].lower().replace('_', '-') for name in blocked}
installed = metadata.distribution
def distribution(name):
    if name.lower().replace('_', '-') in missing:
        raise metadata.PackageNotFoundError(name)
    return installed(name)
metadata.distribution = distribution
if sys.argv[2] == '-c':
    code, sys.argv = sys.argv[3], ['-c']
    exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})
else:
    sys.argv = sys.argv[3:]
    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def run_without(blocked, *command: str, cwd, env=None) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` or ``python -c CODE`` (``command``) in a subprocess where ``blocked`` are missing."""
    return subprocess.run([sys.executable, "-c", BLOCKED, ",".join(blocked), *command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_core_dependencies_hold_none_of_the_extras_and_all_holds_every_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core, extras = requirement_names(project["dependencies"]), project["optional-dependencies"]
    assert set(EXTRA_MODULES) | {"all", "dev"} == set(extras)
    for extra in EXTRA_MODULES:
        assert not core & requirement_names(extras[extra]), extra
    for package in ("tensorboard", "wandb", "snakemake", "matplotlib", "optuna", "hydra-optuna-sweeper",
                    "hydra-submitit-launcher", "av", "sqlalchemy", "onnx", "onnxruntime", "pytest"):
        assert package not in core
    assert {"torch", "pytorch-lightning", "hydra-core", "omegaconf", "h5py", "scikit-image"} <= core
    assert extras["all"] == [f"m3l[{','.join(EXTRA_MODULES)}]"]
    assert "m3l[all]" in extras["dev"] and "m3l[workflow]" in extras["slurm"]


def test_every_module_of_m3l_imports_with_every_extra_missing(tmp_path):
    code = ("import importlib, pkgutil, m3l, m3l.models, m3l.data, m3l.run\n"
            "for package in (m3l, m3l.models, m3l.data, m3l.run):\n"
            "    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
            "        importlib.import_module(module.name)\n"
            "print('imported')")
    result = run_without(EVERY_EXTRA, "-c", code, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr[-3000:]


@pytest.mark.slow
def test_core_trains_and_tests_with_every_extra_missing(m3l_env, tmp_path):
    """The default logger (CSV) needs no extra: train and test run through the real commands."""
    train = run_without(EVERY_EXTRA, "-m", "m3l.run.train", "model=dncnn", *TINY, "hydra.run.dir=run",
                        "checkpoint_out=model.ckpt", cwd=tmp_path, env=m3l_env)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").is_file()
    test = run_without(EVERY_EXTRA, "-m", "m3l.run.test", "model=dncnn", "net.depth=3", "net.width=8",
                       "checkpoint=model.ckpt", "data.num_workers=0", "hydra.run.dir=test", cwd=tmp_path, env=m3l_env)
    assert test.returncode == 0, test.stderr[-3000:]
    assert (tmp_path / "test" / "metrics.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("missing, overrides, extra", [
    ("wandb", ["model=dncnn", "logger=wandb", *TINY], "wandb"),
    ("tensorboard", ["model=dncnn", "logger=tensorboard", *TINY], "tensorboard"),
    ("hydra_plugins.hydra_submitit_launcher", ["model=dncnn", "cluster=vulcan"], "slurm"),
    ("optuna", ["hparams_search=dncnn_optuna"], "optuna"),
    ("av", ["model=fastdvdnet", "degradation@data.degradation=h264crf28"], "video"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_install(m3l_env, tmp_path, missing, overrides, extra):
    result = run_without([missing], "-m", "m3l.run.train", *overrides, "hydra.run.dir=run", cwd=tmp_path, env=m3l_env)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("m3l train: error: ") and last.endswith(f'pip install "m3l[{extra}]"'), result.stderr
    assert f"needs {missing.split('.')[-1]}, which is not installed" in last and "Traceback" not in result.stderr


@pytest.mark.parametrize("script", ["benchmark.py", "examples.py"])
def test_workflow_figures_without_matplotlib_name_the_workflow_extra(monkeypatch, script):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(M3LError, match=re.escape('needs matplotlib, which is not installed: pip install "m3l[workflow]"')):
        runpy.run_path(str(REPO / "workflow" / "scripts" / script))


def test_video_files_without_pyav_name_the_video_extra(monkeypatch, tmp_path):
    from m3l.io.clips import Clip, ClipWriter, iter_frames
    from m3l.data.video import H264
    from m3l.data.video_folders import _clips

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"not decoded")
    monkeypatch.setitem(sys.modules, "av", None)
    hint = re.escape('needs av, which is not installed: pip install "m3l[video]"')
    with pytest.raises(M3LError, match="data.correct_dir: the videos in .*" + hint):
        _clips(tmp_path / "clips", "data.correct_dir")
    with pytest.raises(M3LError, match=hint):
        next(iter_frames(Clip(tmp_path / "clips" / "a.mp4", "a.mp4")))
    with pytest.raises(M3LError, match=hint):
        ClipWriter(tmp_path / "out.mkv").write(torch.zeros(1, 8, 8))
    with pytest.raises(M3LError, match="H.264 degradation " + hint):
        H264(crf=28)


@pytest.mark.slow
def test_wheel_holds_everything_under_m3l(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "runs", "results"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), "-q"], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("m3l-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("m3l-")}
    assert tops == {"m3l", "hydra_plugins"}
    for expected in ("m3l/models/dncnn.py", "m3l/data/image_folders.py", "m3l/configs/train.yaml",
                     "m3l/configs/model/dncnn.yaml", "m3l/configs/cluster/vulcan.yaml",
                     "hydra_plugins/m3l_searchpath/m3l_searchpath.py"):
        assert expected in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace shared with other Hydra plugins
    # every module and config of the checkout, at the same path (a folder left out loses its commands)
    for top in ("m3l", "hydra_plugins"):
        for module in [*(REPO / top).rglob("*.py"), *(REPO / top).rglob("*.yaml")]:
            if "__pycache__" not in module.parts:
                assert module.relative_to(REPO).as_posix() in names, module


def test_installed_modules_resolve_to_the_repository_folders():
    """The folders are the import paths: m3l.models is m3l/models of this checkout, and so on."""
    import m3l.configs
    import m3l.data
    import m3l.models

    for package, folder in ((m3l.models, "models"), (m3l.data, "data"), (m3l.configs, "configs")):
        assert Path(package.__path__[0]).resolve() == (REPO / "m3l" / folder).resolve()
