"""logger=wandb, offline: what train and test write is read back from the run's .wandb file and media."""

from __future__ import annotations

import json
import struct

import pytest
from PIL import Image

from conftest import TINY

OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}


def wandb_records(path) -> list:
    """The records of a ``.wandb`` file: a LevelDB-style log of wandb's own protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block, records, pending = path.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B", "not a .wandb file"
    pos = 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def read_run(run_dir):
    """(config, history rows, run folder) of the one offline wandb run under ``run_dir``."""
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    config, history = {}, []
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return config, history, folder


@pytest.mark.slow
def test_wandb_logs_config_metrics_samples_and_test_table(run_m3l, tmp_path):
    run_m3l("train", "model=dncnn", *TINY, "logger=wandb", "checkpoint_out=model.ckpt", "hydra.run.dir=train",
            env=OFFLINE)
    config, history, folder = read_run(tmp_path / "train")
    assert config["task"] == "train" and config["net"]["width"] == 8 and config["name"] == "dncnn"
    assert any("val/psnr" in row for row in history)
    samples = [row for row in history if "val/samples/filenames" in row]
    assert samples, "no validation samples were logged"
    (name,) = samples[0]["val/samples/filenames"]
    assert "degraded | restored | clean" in samples[0]["val/samples/captions"][0]
    with Image.open(folder / "files" / name) as strip:
        assert strip.width == samples[0]["val/samples/width"] == 3 * strip.height  # three gray images in a row

    run_m3l("test", "model=dncnn", "net.depth=3", "net.width=8", "checkpoint=model.ckpt", "logger=wandb",
            "data.num_workers=0", "trainer.enable_progress_bar=false", "hydra.run.dir=test", env=OFFLINE)
    config, history, folder = read_run(tmp_path / "test")
    assert config["task"] == "test" and config["checkpoint"] == "model.ckpt"
    assert any(key.startswith("test/photos/") and key.endswith("/psnr") for row in history for key in row)
    tables = {row[f"{key}/path"]: key for row in history for key in ("test/per_image", "test/summary")
              if f"{key}/path" in row}
    assert sorted(tables.values()) == ["test/per_image", "test/summary"]
    read = {key: json.loads((folder / "files" / path).read_text()) for path, key in tables.items()}
    per_image, summary = read["test/per_image"], read["test/summary"]
    assert {"dataset", "image", "psnr", "psnr_input"} <= set(per_image["columns"])
    assert {"dataset", "degradation", "n_images", "psnr", "ssim"} <= set(summary["columns"])
    n_images = summary["columns"].index("n_images")
    assert len(per_image["data"]) == sum(row[n_images] for row in summary["data"]) > 0
