"""The zoo through the real commands: identity rows without a checkpoint, a side-information net
(FFDNet) trained, tested and used for correction, and the blind FBCNN."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_images

pytestmark = pytest.mark.slow

QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TRAIN = ["trainer.max_epochs=1", "data.patches_per_epoch=8", "data.train_batch_size=4", "data.deadleaves.count=2",
         "data.deadleaves.size=64"]


def test_identity_is_the_input_row_without_a_checkpoint(run_m3l, tmp_path):
    write_images(tmp_path / "set", {"a.png": (40, 32), "b.png": (35, 29)})
    run_m3l("test", "model=identity", "data=jpeg", "metrics.psnrb=true", "data.test_sets={S: set}", *QUICK,
            "data.test_degradations=[{_target_: m3l.data.degradations.JPEG, quality: 10}]", "hydra.run.dir=run")
    summary = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(summary.columns) == ["dataset", "degradation", "n_images", "psnr", "ssim", "psnrb"]
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    np.testing.assert_allclose(per_image.psnr, per_image.psnr_input)
    np.testing.assert_allclose(per_image.psnrb, per_image.psnrb_input)
    assert summary.degradation.tolist() == ["jpeg10"] and (summary.psnrb < summary.psnr).all()

    run_m3l("correct", "model=identity", "data.correct_dir=set", "serializer.root_dir=out", *QUICK)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), np.asarray(Image.open(tmp_path / "set" / "a.png")))


def test_ffdnet_needs_and_gets_its_noise_level(run_m3l, tmp_path):
    net = ["net.depth=3", "net.width=8"]
    run_m3l("train", "model=ffdnet", *net, *TRAIN, *QUICK, "checkpoint_out=ffdnet.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "set", {"a.png": (33, 21)})
    run_m3l("test", "model=ffdnet", *net, *QUICK, "checkpoint=ffdnet.ckpt", "data.test_sets={S: set}",
            "hydra.run.dir=test")
    assert pd.read_csv(tmp_path / "test" / "metrics.csv").degradation.tolist() == ["sigma15", "sigma25", "sigma50"]

    result = run_m3l("correct", "model=ffdnet", *net, *QUICK, "checkpoint=ffdnet.ckpt", "data.correct_dir=set",
                     "serializer.root_dir=out", check=False)
    assert result.returncode == 2 and "data.correct_side.sigma=" in result.stderr and "Traceback" not in result.stderr
    outputs = {}
    for sigma in (5, 50):
        run_m3l("correct", "model=ffdnet", *net, *QUICK, "checkpoint=ffdnet.ckpt", "data.correct_dir=set",
                f"serializer.root_dir=out{sigma}", f"data.correct_side.sigma={sigma}")
        outputs[sigma] = np.asarray(Image.open(tmp_path / f"out{sigma}" / "a.png"))
    assert outputs[5].shape == (21, 33) and not np.array_equal(outputs[5], outputs[50])
    (tmp_path / "set" / "side.yaml").write_text("sigma: 50\n")  # as the workflow's degraded test sets carry
    run_m3l("correct", "model=ffdnet", *net, *QUICK, "checkpoint=ffdnet.ckpt", "data.correct_dir=set",
            "serializer.root_dir=out_side")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out_side" / "a.png")), outputs[50])


def test_fbcnn_trains_with_its_quality_loss_and_corrects_blind(run_m3l, tmp_path):
    net = ["net.widths=[4,8]", "net.blocks=1", "net.embedding=8"]
    run_m3l("train", "model=fbcnn", *net, *TRAIN, *QUICK, "checkpoint_out=fbcnn.ckpt", "hydra.run.dir=train")
    write_images(tmp_path / "in", {"x.png": (27, 19)})
    run_m3l("correct", "model=fbcnn", *net, *QUICK, "checkpoint=fbcnn.ckpt", "data.correct_dir=in",
            "serializer.root_dir=out")
    assert np.asarray(Image.open(tmp_path / "out" / "x.png")).shape == (19, 27)
