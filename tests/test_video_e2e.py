"""Video end to end through the real commands: train -> test -> correct on a tiny clip set made here
(frame folders and an mp4), with a tiny FastDVDnet."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

from m3l.io.clips import Clip, frame_rate, read_clip, write_clip

from m3l.data.video import moving_crops

TINY_VIDEO = [
    "net.widths=[4,8,8]", "net.per_frame=2", "trainer.max_epochs=1", "data.crops_per_epoch=8",
    "data.train_batch_size=4", "data.patch_size=24", "data.num_workers=0", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def make_clips(root, seed=0):
    """Two frame folders of different lengths and sizes, and an H.264 mp4 at 24 fps."""
    rng = np.random.RandomState(seed)
    image = torch.from_numpy(rng.rand(1, 96, 96).astype(np.float32)).cumsum(1).div(96)
    write_clip(moving_crops(image, 7, 32, 40, rng), root / "walk")
    write_clip(moving_crops(image, 5, 28, 28, rng), root / "more" / "pan")
    write_clip(moving_crops(image, 6, 32, 32, rng), root / "cam.mp4", fps=24, codec="libx264", crf=10)


def test_train_test_correct_on_frame_folders_and_an_mp4(run_m3l, tmp_path):
    make_clips(tmp_path / "clips")
    data = [f"data.train_dir={tmp_path / 'clips'}", f"data.val_dir={tmp_path / 'clips'}"]
    checkpoint = tmp_path / "model.ckpt"
    run_m3l("train", "model=fastdvdnet", *TINY_VIDEO, *data, f"checkpoint_out={checkpoint}", "hydra.run.dir=train")
    assert checkpoint.is_file()

    run_m3l("test", "model=fastdvdnet", *TINY_VIDEO, f"checkpoint={checkpoint}",
            f"data.test_sets={{mine:{tmp_path / 'clips'}}}", "hydra.run.dir=test")
    per_clip = pd.read_csv(tmp_path / "test" / "per_image.csv")
    per_frame = pd.read_csv(tmp_path / "test" / "per_frame.csv")
    summary = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert per_clip.set_index("image")["frames"].to_dict() == {"cam.mp4": 6, "more/pan": 5, "walk": 7}
    assert len(per_frame) == 18
    means = per_frame.groupby("image")["psnr"].mean()
    assert np.allclose(per_clip.set_index("image")["psnr"], means[per_clip["image"]].values, atol=1e-5)
    assert summary[["dataset", "degradation", "n_images"]].values.tolist() == [["mine", "sigma25", 3]]

    (tmp_path / "clips" / "broken.avi").write_bytes(b"not a video")
    result = run_m3l("correct", "model=fastdvdnet", *TINY_VIDEO, f"checkpoint={checkpoint}",
                     f"data.correct_dir={tmp_path / 'clips'}", "serializer.root_dir=out", "data.chunk=2",
                     "hydra.run.dir=correct")
    assert "skipping broken.avi" in result.stderr and "skipped 1 unreadable: broken.avi" in result.stdout
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".m3l_correct.yaml", "cam.mkv", *[f"more/pan/{i:05d}.png" for i in range(5)],
        *[f"walk/{i:05d}.png" for i in range(7)]]
    corrected = read_clip(out / "cam.mkv")
    assert corrected.shape == (6, 1, 32, 32) and frame_rate(Clip(out / "cam.mkv", "cam")) == Fraction(24)

    # a rerun resumes: finished clips are skipped, a killed write's leftovers go, the missing clip is redone
    stamp = (out / "cam.mkv").stat().st_mtime_ns
    for frame in (out / "walk").iterdir():
        frame.unlink()
    (out / "walk").rmdir()
    (out / ".walk.abcd1234.tmp").mkdir()
    (out / ".walk.abcd1234.tmp" / "00000.png").write_bytes(b"half")
    correct = ["model=fastdvdnet", *TINY_VIDEO, f"checkpoint={checkpoint}", f"data.correct_dir={tmp_path / 'clips'}",
               "serializer.root_dir=out", "data.chunk=2", "hydra.run.dir=correct"]
    result = run_m3l("correct", *correct)
    assert "wrote 1 clips" in result.stdout and "skipped 2 already done" in result.stdout
    assert (out / "cam.mkv").stat().st_mtime_ns == stamp and not (out / ".walk.abcd1234.tmp").exists()
    assert len(list((out / "walk").iterdir())) == 7
    result = run_m3l("correct", *correct, "serializer.overwrite=true")
    assert "wrote 3 clips" in result.stdout and (out / "cam.mkv").stat().st_mtime_ns != stamp

    run_m3l("correct", "model=fastdvdnet", *TINY_VIDEO, f"checkpoint={checkpoint}",
            f"data.correct_dir={tmp_path / 'clips' / 'cam.mp4'}", "serializer.root_dir=one", "hydra.run.dir=one")
    assert torch.equal(read_clip(tmp_path / "one" / "cam.mkv"), corrected)  # chunking does not change the output


@pytest.mark.slow
def test_workflow_benchmarks_a_video_model_beside_an_image_model(m3l_env, tmp_path):
    from test_workflow import CONFIG, snakemake, workflow_config

    workflow_config(tmp_path, {"dncnn": {"model": "dncnn"}, "fastdvdnet": CONFIG["models"]["fastdvdnet"]})
    snakemake(tmp_path, m3l_env, "--cores", "2", "results/benchmark.csv", "results/fastdvdnet/examples.png",
              timeout=600)
    results = tmp_path / "results"
    per_clip = pd.read_csv(results / "fastdvdnet" / "per_image.csv")
    assert per_clip["frames"].tolist() == [10, 12, 8, 14]  # the embedded test clips
    corrected = results / "fastdvdnet" / "corrected" / "clips" / "sigma25"
    assert sorted(p.name for p in corrected.iterdir()) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert len(list((corrected / "rocket").glob("*.png"))) == 14
    benchmark = pd.read_csv(results / "benchmark.csv").set_index("model")
    assert benchmark.loc["fastdvdnet", "clips/sigma25/psnr"] > 0 and pd.isna(benchmark.loc["dncnn", "clips/sigma25/psnr"])
    assert benchmark.loc["dncnn", "small/sigma25/psnr"] > 0
    assert (results / "fastdvdnet" / "examples.png").is_file()
