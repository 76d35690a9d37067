"""BSVD (streaming video denoising with temporal shifts): m3l's net is the authors' network as their code runs it.

The authors' code is not installable (BasicSR fork, CUDA-only streaming), so the reference is FACTS produced from it
in a scratch folder outside m3l (ChenyangQiQi/BSVD @ 29a6f050, run on the CPU):

- ``tests/data/bsvd_reference.pt``: for two tiny nets (``relu6``: chns [8, 16, 32], mid_ch 4, interm_ch 6;
  ``relu``: chns [8, 8, 16], mid_ch 3, interm_ch 5; norm none), the authors' state-dict keys and shapes (their TSN
  training net), a clip (seed 1) and the output of their TSN in eval mode on it (the whole clip, zeros beyond its
  ends, noise map = sigma) with the weights :func:`seeded_state` draws for those keys. Their streaming BSVD
  (bsvd_arch.py, the pipelined net with bidirectional buffers) was run on the same weights there too: it agreed with
  TSN within 6e-7.
- ``tests/data/authors_keys/bsvd_c64.json``: every key, shape and dtype of the released configuration
  (options/test/bsvd_c64.yml's net, as BasicSR saves it: ``{"params": state dict}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from m3l.errors import M3LError
from m3l.models import _layouts
from m3l.models.bsvd import BSVD, FAMILY, WEIGHTS

TOLERANCE = 1e-5
DATA = Path(__file__).parent / "data"
QUICK = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def seeded_state(keys: list[str], shapes: list[list[int]], seed: int = 0) -> dict:
    """The reference weights: drawn in the authors' key order, convolution weights N(0, 1 / fan_in), biases
    N(0, 0.02^2) (the rule the scratch script used)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in zip(keys, shapes):
        if len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) * (1 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.02
    return state


def reference(name: str) -> dict:
    return torch.load(DATA / "bsvd_reference.pt", weights_only=True)[name]


def authors_file(tmp_path, facts: dict) -> Path:
    path = tmp_path / "bsvd_tiny.pth"
    torch.save({"params": seeded_state(facts["keys"], facts["shapes"])}, path)  # BasicSR's save_network
    return path


def m3l_net(path, act: str) -> BSVD:
    layout, state, args = _layouts.convert(path)
    assert layout.name == "bsvd" and args["act"] == "relu6"  # the file does not say it: the released net's
    net = BSVD(**{**args, "act": act}).eval()
    net.load_state_dict(state, strict=True)
    return net


@pytest.mark.parametrize("name, step", [("relu6", 1), ("relu6", 3), ("relu6", 64), ("relu", 64)])
def test_bsvd_equals_the_authors_network(tmp_path, name, step):
    """step: frames fed at a time (1: the authors' pipeline; 3: chunks; 64: the whole clip at once)."""
    facts = reference(name)
    net = m3l_net(authors_file(tmp_path, facts), facts["args"]["act"])
    x, expected = facts["input"], facts["output"]
    with torch.no_grad():
        got = net.restore_clip(x, torch.tensor([facts["sigma"]]), step=step)
    assert got.shape == expected.shape and (expected - x).abs().max() > 0.1  # the net does something
    difference = (got - expected).abs().max().item()
    print(f"BSVD {name} step {step}: max |diff| {difference:.2g}")
    assert difference < TOLERANCE


def test_the_window_is_the_clip_pass_at_its_centre_and_forward_clip_every_window():
    """forward on 33 frames = the whole-clip output of the centre frame when it has 16 frames on each side;
    forward_clip = forward on every window; near a clip's end the zero features differ from a 33-frame window."""
    torch.manual_seed(0)
    net = FAMILY.build(1).eval()
    x, sigma = torch.rand(1, 34, 1, 5, 7), torch.tensor([0.1])
    with torch.no_grad():
        clip = net.restore_clip(x, sigma, step=5)
        windows = torch.stack([net(x[:, t:t + 33], sigma) for t in range(2)], 1)
        reused = net.forward_clip(x, sigma, step=4)
    assert clip.shape == x.shape and reused.shape == (1, 2, 1, 5, 7)
    assert (windows - clip[:, 16:18]).abs().max() < 1e-6 and (reused - windows).abs().max() < 1e-6
    assert (windows[:, 0] - clip[:, 15]).abs().max() > 1e-3  # a neighbour's frame is not the centre's
    with pytest.raises(ValueError, match="33 frames, got 5"):
        net(x[:, :5], sigma)


def test_sizes_not_divisible_by_4_are_reflected_at_the_bottom_and_right():
    torch.manual_seed(0)
    net = FAMILY.build(3).eval()
    x = torch.rand(1, 6, 3, 10, 13)
    padded = torch.cat([x, x[..., -2:-1, :], x[..., -3:-2, :]], -2)  # rows 10, 11 mirror rows 8, 7
    padded = torch.cat([padded, padded[..., -2:-1], padded[..., -3:-2], padded[..., -4:-3]], -1)
    with torch.no_grad():
        assert torch.equal(net.restore_clip(x, 0.1), net.restore_clip(padded, 0.1)[..., :10, :13])


def test_the_released_layout_gives_the_paper_net(tmp_path):
    """The released configuration's keys (read from the authors' code): the net BSVD-64, every tensor used once."""
    facts = json.loads((DATA / "authors_keys" / "bsvd_c64.json").read_text())
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.rand(shape, generator=generator) for key, shape, _ in facts["keys"]}
    torch.save({"params": state}, tmp_path / "bsvd-64.pth")
    layout, converted, args = _layouts.convert(tmp_path / "bsvd-64.pth")
    assert layout.name == "bsvd" and args == WEIGHTS[0].net
    assert sorted(round(v.sum().item(), 3) for v in converted.values()) == sorted(
        round(v.sum().item(), 3) for v in state.values())
    with torch.device("meta"):
        net = BSVD(**args)
    assert sum(p.numel() for p in net.parameters()) == 9_815_683 == sum(v.numel() for v in state.values())
    assert BSVD.frames == 33


def test_incomplete_or_foreign_files_are_refused_in_one_line(tmp_path):
    facts = reference("relu")
    state = seeded_state(facts["keys"], facts["shapes"])
    missing = tmp_path / "missing.pth"
    torch.save({"params": {k: v for k, v in state.items() if k != "base_model.nets_list.1.upc1.convblock.1.bias"}},
               missing)
    with pytest.raises(M3LError, match=r"^bsvd: the file lacks key base_model\.nets_list\.1\.upc1\.convblock\.1\.bias")\
            as error:
        _layouts.convert(missing)
    assert "\n" not in str(error.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"params": {**state, "base_model.nets_list.0.downc0.convblock.3.c1.net.weight": torch.zeros(8, 7, 3, 3)}},
               wrong)
    with pytest.raises(M3LError, match=r"downc0\.convblock\.3\.c1\.net\.weight has shape \(8, 7, 3, 3\)"):
        _layouts.convert(wrong)


def test_weights_entry_is_the_authors_release():
    from m3l import hub

    entry, = FAMILY.weights
    assert hub.WEIGHTS["bsvd_c64"] == entry and entry.layout == "bsvd" and entry.file == "bsvd-64.pth"
    assert entry.target == "m3l.models.bsvd.BSVD" and "MIT" in entry.source


def test_paper_preset_and_cpu_default():
    from hydra import compose, initialize_config_module

    from m3l.run.common import register_search_path

    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=["model=bsvd", "preset=paper", "data_root=/sets", "trainer.gpus=2"])
        default = compose("train", overrides=["model=bsvd"])
    assert list(cfg.net.widths) == [64, 128, 256] and cfg.net.mid_channels == 64 and cfg.net.act == "relu6"
    assert cfg.data.frames == 33 and cfg.data.patch_size == 96 and cfg.data.train_batch_size == 8
    assert set(cfg.data.test_sets) == {"set8", "davis_test"} and cfg.metrics.crop_border == 2
    assert [d.sigma for d in cfg.data.test_degradations] == [10, 20, 30, 40, 50]
    assert cfg.scheduler.gamma == 0.7 and cfg.trainer.max_steps == 700_000 and cfg.trainer.gradient_clip_val == 5
    assert default.data.frames == 33 and default.data.synthetic.frames >= 33 and default.data.train_dir is None


def test_tiny_net_trains_a_step():
    torch.manual_seed(0)
    net = FAMILY.build(1).train()
    x = torch.rand(1, 33, 1, 8, 8)
    loss = (net(x, torch.tensor([0.1])) - x[:, 16]).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.slow
def test_bsvd_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    """The CPU default, scaled down, on the embedded clips; then test (ends mirrored) and correct a 6-frame clip."""
    import numpy as np
    import pandas as pd

    from m3l.io.clips import write_clip

    small = ["net.widths=[4,8,8]", "net.mid_channels=2", "net.input_width=2", "data.synthetic.count=2",
             "data.synthetic.size=64", "data.crops_per_epoch=2", "data.train_batch_size=2", "data.patch_size=16",
             "trainer.max_epochs=1", *QUICK]
    run_m3l("train", "model=bsvd", *small, "checkpoint_out=bsvd.ckpt", "hydra.run.dir=train")
    write_clip(torch.rand(6, 1, 20, 22), tmp_path / "clips" / "seq", names=[f"{i:05d}.png" for i in range(6)])
    run_m3l("test", "model=bsvd", *small, "checkpoint=bsvd.ckpt", "data.test_sets={S: clips}", "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["sigma25"] and rows.psnr.notna().all()
    run_m3l("correct", "model=bsvd", *small, "checkpoint=bsvd.ckpt", "data.correct_dir=clips",
            "serializer.root_dir=out")
    written = sorted((tmp_path / "out" / "seq").iterdir())
    assert len(written) == 6
