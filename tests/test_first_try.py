"""What a new user types on the first try works (issue "First try works")."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from conftest import write_images


def test_a_weights_path_holding_equals_signs_works_unquoted(run_m3l, tmp_path, tiny_checkpoint):
    """Lightning names checkpoints epoch=3-step=100.ckpt, the DnCNN authors sigma=25.mat: typed as they are,
    Hydra's grammar would stop at the second '='."""
    named = tmp_path / "runs" / "epoch=0-step=4.ckpt"
    named.parent.mkdir()
    shutil.copy(tiny_checkpoint, named)
    write_images(tmp_path / "in=put", {"a.png": (24, 20)})
    run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={named}",
            f"data.correct_dir={tmp_path}/in=put", "serializer.root_dir=out", "data.num_workers=0")
    assert np.array(Image.open(tmp_path / "out" / "a.png")).shape == (20, 24)
