"""The README's "your own model" guide, run as written: a LightningModule and a DataModule that live
only in a temporary folder, configured only through $XDG_CONFIG_HOME/m3l."""

import shutil

import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import REPO, write_images

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "own_model"
SMALL = ["net.n_layers=3", "net.width=8", "data.num_workers=0", "data.train_batch_size=4", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false"]


@pytest.fixture
def user(tmp_path, m3l_env):
    """A user's machine: their code in ./src, their configs in $XDG_CONFIG_HOME/m3l, images in ./images."""
    shutil.copytree(EXAMPLE / "my_library", tmp_path / "src" / "my_library")
    xdg = tmp_path / "xdg"
    shutil.copytree(EXAMPLE / "m3l_config", xdg / "m3l")
    write_images(tmp_path / "images", {f"{i}.png": (48, 40) for i in range(3)})
    return {"PYTHONPATH": str(tmp_path / "src"), "XDG_CONFIG_HOME": str(xdg)}


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning.pytorch"])
def test_train_test_correct_own_model(run_m3l, tmp_path, user, package):
    """The README's example as written (``import pytorch_lightning as pl``), and written against the ``lightning``
    package (``import lightning.pytorch as pl``, the current Lightning docs, with trainer, logger and checkpoint
    configs naming lightning.pytorch classes as lightning-hydra-template does): its own steps run, not m3l's."""
    targets = []
    if package == "lightning.pytorch":
        targets = ["trainer._target_=lightning.pytorch.Trainer", "logger._target_=lightning.pytorch.loggers.CSVLogger",
                   "callbacks.model_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint"]
        pytest.importorskip("lightning")
        source = tmp_path / "src" / "my_library" / "my_package.py"
        text = source.read_text().replace("import pytorch_lightning as pl", "import lightning.pytorch as pl")
        assert "pytorch_lightning" not in text
        source.write_text(text)
    data = ["data.root_dir=images"]
    run_m3l("train", "model=my_model", *data, *SMALL, *targets, "checkpoint_out=my.ckpt", "hydra.run.dir=run", env=user)
    assert sorted(path.name for path in (tmp_path / "run").rglob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    checkpoint = torch.load(tmp_path / "my.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["width"] == 8
    assert all(key.startswith("body.") for key in checkpoint["state_dict"])  # the user's module, not wrapped
    logged = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))
    assert logged["val/psnr"].notna().any() and "val/ssim" not in logged  # its validation_step, not m3l's
    run_m3l("test", "model=my_model", *data, *SMALL, "checkpoint=my.ckpt", "metrics_csv=metrics.csv", env=user)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert "test/psnr" in metrics.columns and len(metrics) == 1 and metrics["test/psnr"][0] > 0
    run_m3l("correct", "model=my_model", *data, *SMALL, "checkpoint=my.ckpt", "data.correct_dir=images",
            "serializer.root_dir=out", env=user)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".m3l_correct.yaml", "0.png", "1.png", "2.png"]
    assert Image.open(tmp_path / "out" / "0.png").size == (48, 40)


def test_without_pythonpath_the_error_says_so(run_m3l, user):
    result = run_m3l("train", "model=my_model", "data.root_dir=images", *SMALL, env={**user, "PYTHONPATH": ""},
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "my_library.my_package.MyRestorationNetwork" in result.stderr and "PYTHONPATH" in result.stderr


def test_user_config_shadows_a_builtin(run_m3l, tmp_path, m3l_env):
    xdg = tmp_path / "xdg"
    (xdg / "m3l" / "net").mkdir(parents=True)
    (xdg / "m3l" / "net" / "dncnn.yaml").write_text(
        "_target_: m3l.models.dncnn.DnCNN\nchannels: 1\ndepth: 4\nwidth: 6\nbatch_norm: false\n")
    result = run_m3l("train", "model=dncnn", "--cfg", "job", env={"XDG_CONFIG_HOME": str(xdg)})
    assert "depth: 4" in result.stdout and "width: 6" in result.stdout and "batch_norm: false" in result.stdout
    result = run_m3l("train", "model=dncnn", "--cfg", "job")
    assert "depth: 17" in result.stdout


def test_the_example_runs_as_written_and_a_folder_without_images_is_one_line(run_m3l, tmp_path, user):
    """As the README gives it (no data.root_dir): scikit-image's photos; a folder without PNGs: one line."""
    run_m3l("train", "model=my_model", *SMALL, "checkpoint_out=my.ckpt", "hydra.run.dir=run", env=user)
    assert (tmp_path / "my.ckpt").is_file()
    (tmp_path / "empty").mkdir()
    result = run_m3l("train", "model=my_model", "data.root_dir=empty", *SMALL, "hydra.run.dir=bad", env=user,
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "data.root_dir: no PNG images in empty" in result.stderr
