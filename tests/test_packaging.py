"""The zoo, data modules and configs install inside the m3l namespace, for wheels as for editable installs."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


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


def test_installed_modules_resolve_to_the_repository_folders():
    import m3l.configs
    import m3l.data
    import m3l.models

    assert m3l.models.__path__[0].endswith("models") and "m3l" not in m3l.models.__path__[0][len(str(REPO)):]
    assert {p.split("/")[-1] for p in (m3l.data.__path__[0], m3l.configs.__path__[0])} == {"data", "configs"}
