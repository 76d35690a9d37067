"""data.progressive: training patch and batch sizes change at step milestones (Restormer's progressive training)."""

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from m3l.data.image_folders import ImageFolderDataModule
from m3l.data.progressive import Stage, epoch_batches, parse_schedule, stage_at
from m3l.errors import M3LError

# 3 steps of 16 px in batches of 2, 2 steps of 24 px in batches of 3, then 32 px in batches of 1 to the end
SCHEDULE = [{"steps": 3, "patch_size": 16, "batch_size": 2}, {"steps": 2, "patch_size": 24, "batch_size": 3},
            {"steps": 1, "patch_size": 32, "batch_size": 1}]
EXPECTED = [(2, 16)] * 3 + [(3, 24)] * 2 + [(1, 32)] * 3  # (batch, patch) of steps 0..7


def test_stage_at_follows_the_milestones_and_the_last_stage_runs_on():
    stages = parse_schedule(SCHEDULE)
    assert stages[1] == Stage(steps=2, patch_size=24, batch_size=3)
    assert [stage_at(stages, s)[0] for s in range(8)] == [0, 0, 0, 1, 1, 2, 2, 2]
    assert [stage_at(stages, s)[2] for s in range(6)] == [3, 2, 1, 2, 1, None]
    restormer = parse_schedule([{"steps": n, "patch_size": p, "batch_size": b} for n, p, b in
                                zip([92000, 64000, 48000, 36000, 36000, 24000], [128, 160, 192, 256, 320, 384],
                                    [8, 5, 4, 2, 1, 1])])
    assert stage_at(restormer, 91999)[1].patch_size == 128 and stage_at(restormer, 92000)[1].patch_size == 160
    assert stage_at(restormer, 276000)[1].patch_size == 384 and stage_at(restormer, 10**6)[0] == 5


def test_an_epoch_is_cut_at_the_end_of_its_stage():
    stage = Stage(steps=5, patch_size=8, batch_size=4)
    assert epoch_batches(100, stage, steps_left=None) == 25
    assert epoch_batches(100, stage, steps_left=3) == 3
    assert epoch_batches(100, stage, steps_left=3, accumulate=2) == 6   # 3 optimizer steps of 2 batches
    assert epoch_batches(100, stage, steps_left=None, devices=5) == 5   # 100 patches over 5 devices of batch 4
    assert epoch_batches(2, stage, steps_left=None) == 1


@pytest.mark.parametrize("bad, message", [
    ([{"steps": 3, "patch_size": 16}], r"data.progressive\[0\]: give a stage as"),
    ([SCHEDULE[0], {"steps": 0, "patch_size": 16, "batch_size": 2}], r"data.progressive\[1\].steps must be"),
    ([{"steps": 3, "patch_size": "16", "batch_size": 2}], r"data.progressive\[0\].patch_size must be"),
])
def test_a_bad_schedule_is_refused_naming_the_entry(bad, message):
    with pytest.raises(M3LError, match=message):
        ImageFolderDataModule(progressive=bad)


class Recorder(pl.LightningModule):
    """A one-convolution net that records (global step, batch, patch) of every training batch."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.global_step, batch["input"].shape[0], batch["input"].shape[-1], self.current_epoch))
        return torch.nn.functional.mse_loss(self.conv(batch["input"]), batch["target"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def test_a_real_trainer_gets_the_scheduled_patches_and_batches_at_the_scheduled_steps(tmp_path):
    # 10 patches an epoch: 5 batches in stage 1, cut to its 3 steps; then 3 batches cut to stage 2's 2 steps
    data = ImageFolderDataModule(progressive=SCHEDULE, patches_per_epoch=10, num_workers=0,
                                 deadleaves={"count": 2, "size": 40})
    module = Recorder()
    trainer = pl.Trainer(max_steps=8, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert [step for step, *_ in module.seen] == list(range(8))
    assert [(batch, patch) for _, batch, patch, _ in module.seen] == EXPECTED
    epochs = [epoch for *_, epoch in module.seen]
    assert epochs[:6] == [0, 0, 0, 1, 1, 2]  # each stage starts an epoch


def test_a_run_resumed_mid_stage_finishes_the_stage_then_moves_on(tmp_path):
    kwargs = dict(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0)

    def data():
        return ImageFolderDataModule(progressive=SCHEDULE, patches_per_epoch=10, num_workers=0,
                                     deadleaves={"count": 2, "size": 40})

    first = pl.Trainer(max_steps=4, **kwargs)  # stops after the first step of stage 2
    first.fit(Recorder(), datamodule=data())
    first.save_checkpoint(tmp_path / "mid.ckpt")
    module = Recorder()
    pl.Trainer(max_steps=8, **kwargs).fit(module, datamodule=data(), ckpt_path=tmp_path / "mid.ckpt")
    assert [(step, batch, patch) for step, batch, patch, _ in module.seen] == \
        [(s, *EXPECTED[s]) for s in range(4, 8)]


@pytest.mark.parametrize("kind", ["image", "paired", "video"])
def test_every_folder_data_module_takes_a_schedule(kind, tmp_path):
    """Before any step (no trainer): the first stage's patch and batch; the largest patch is what images must hold."""
    from conftest import write_images

    from m3l.data.paired_folders import PairedFolderDataModule
    from m3l.data.video_folders import VideoFolderDataModule

    schedule = [{"steps": 2, "patch_size": 12, "batch_size": 3}, {"steps": 2, "patch_size": 20, "batch_size": 2}]
    if kind == "image":
        data = ImageFolderDataModule(progressive=schedule, num_workers=0, deadleaves={"count": 2, "size": 32})
    elif kind == "paired":
        write_images(tmp_path / "a" / "input", {"0.png": (24, 24)}, mode="RGB")
        write_images(tmp_path / "a" / "target", {"0.png": (24, 24)}, mode="RGB")
        data = PairedFolderDataModule(train_dir=str(tmp_path), val_dir=str(tmp_path), progressive=schedule,
                                      num_workers=0)
    else:
        data = VideoFolderDataModule(progressive=schedule, num_workers=0,
                                     synthetic={"count": 2, "size": 48, "frames": 6, "crop": 24})
    assert data.patch_size == 20
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input"].shape[0] == 3 and batch["input"].shape[-2:] == (12, 12)
    assert batch["target"].shape == batch["input"].shape


SHAPE_LOG = '''
import csv
import pytorch_lightning as pl


class ShapeLog(pl.Callback):
    """Append (global step, batch size, patch size) of every training batch to a CSV."""

    def __init__(self, path):
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([trainer.global_step, batch["input"].shape[0], batch["input"].shape[-1]])
'''


@pytest.mark.slow
def test_m3l_train_with_a_progressive_schedule_trains_on_the_scheduled_sizes(run_m3l, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "shape_log.py").write_text(SHAPE_LOG)
    schedule = "[" + ",".join("{steps:%d,patch_size:%d,batch_size:%d}" % (s["steps"], s["patch_size"], s["batch_size"])
                              for s in SCHEDULE) + "]"
    result = run_m3l("train", "model=dncnn", "net.depth=3", "net.width=4", f"data.progressive={schedule}",
                     "data.patches_per_epoch=10", "data.deadleaves.count=2", "data.deadleaves.size=40",
                     "data.num_workers=0", "trainer.max_steps=8", "trainer.max_epochs=-1",
                     "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                     "+callbacks.shapes._target_=shape_log.ShapeLog", f"+callbacks.shapes.path={tmp_path / 'shapes.csv'}",
                     "hydra.run.dir=run", env={"PYTHONPATH": str(tmp_path / "src")})
    shapes = pd.read_csv(tmp_path / "shapes.csv", header=None, names=["step", "batch", "patch"])
    assert list(shapes.step) == list(range(8))
    assert list(zip(shapes.batch, shapes.patch)) == EXPECTED
    log = result.stdout + result.stderr
    for line in ("stage 1 of 3 from step 0: 16x16 patches, batch 2", "stage 2 of 3 from step 3: 24x24 patches, batch 3",
                 "stage 3 of 3 from step 5: 32x32 patches, batch 1"):
        assert line in log
