import os
import pickle

import pytest
import torch

from m3l.checkpoint import load_weights
from m3l.errors import M3LError
from m3l.models.dncnn import DnCNN
from m3l.engine.restoration import RestorationModule


def module(**kwargs):
    return RestorationModule(DnCNN(depth=3, width=8, **kwargs))


def test_lightning_checkpoint_and_bare_weights_load(tmp_path):
    source = module()
    torch.save({"state_dict": source.state_dict(), "epoch": 1}, tmp_path / "a.ckpt")
    torch.save(source.net.state_dict(), tmp_path / "bare.pth")
    for name in ("a.ckpt", "bare.pth"):
        target = module()
        load_weights(target, tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(M3LError, match=r"checkpoint not found: .*nope.ckpt"):
        load_weights(module(), tmp_path / "nope.ckpt")


def test_truncated_checkpoint(tmp_path):
    torch.save({"state_dict": module().state_dict()}, tmp_path / "a.ckpt")
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "a.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(M3LError, match="not a readable PyTorch file"):
        load_weights(module(), tmp_path / "a.ckpt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.ckpt").write_text("hello")
    with pytest.raises(M3LError, match="not a readable PyTorch file"):
        load_weights(module(), tmp_path / "notes.ckpt")


def test_other_architecture(tmp_path):
    torch.save({"state_dict": RestorationModule(DnCNN(depth=3, width=16)).state_dict()}, tmp_path / "a.ckpt")
    with pytest.raises(M3LError, match=r"does not fit this net \(DnCNN\): .*with another shape"):
        load_weights(module(), tmp_path / "a.ckpt")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": module().state_dict(), "evil": Exploit()}, tmp_path / "evil.ckpt")
    with pytest.raises(M3LError, match="refused"):
        load_weights(module(), tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()
