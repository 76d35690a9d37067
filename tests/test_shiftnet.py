"""Shift-Net (m3l/models/shiftnet.py): m3l's net equals the authors' on the same weights and clip, through m3l's
loading path; the chunked clip path; paired clip folders; misfit files in one line; end to end.

The facts in tests/data/shiftnet/ were produced OUTSIDE m3l, in a scratch folder, by running the authors' code
unmodified (dasongli1/Shift-Net@450a4f2, basicsr/models/archs/gshift_deblur2.py for ``small`` = "Ours-s" and
gshift_deblur1.py for ``plus`` = "Ours+", ``GShiftNet(future_frames=2, past_frames=2)`` as their
inference/test_deblur*.py build it):

- ``shiftnet_<variant>.json.gz``: every key, shape and dtype of ``net.state_dict()`` (what their BasicSR training
  saves as ``{"params": ...}``, the released files' layout), in order;
- ``shiftnet_<variant>_tiny.json.gz``: the same for their files with only the hard-coded widths made small
  (``n_feats2`` 64 / 80 -> 16, ``n_feats0`` and Encoder2's ``n_feat0`` 14 / 24 -> 4 / 8, TFR_UNet's
  ``scale_unetfeats`` 4 / 12 -> 2 / 4; everything else as released): the full nets take minutes on a loaded CPU;
- ``shiftnet_reference.pt``: ``{variant: net(x)}`` of those tiny nets in eval mode (float32, CPU, one thread),
  loaded with :func:`seeded_state` (the same function, run there on the same facts), for
  ``x = torch.rand(1, 7, 3, 32, 40)`` from ``torch.Generator().manual_seed(1)``: the middle 3 frames.

No code of theirs is in m3l or here: only those facts.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

import m3l.models._layouts as layouts
from m3l.errors import M3LError
from m3l.models.shiftnet import PLUS, SMALL, ShiftNet, convert_authors, spatial_shift, temporal_shift

FACTS = Path(__file__).parent / "data" / "shiftnet"
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of small convolutions: threads only contend on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def facts(variant: str) -> list:
    return json.loads(gzip.decompress((FACTS / f"shiftnet_{variant}.json.gz").read_bytes()))["keys"]


def seeded_state(keys: list) -> dict:
    """Weights for the authors' keys from one seeded generator, in key order: PReLUs in [0.05, 0.45], layer-norm
    scales in [0.8, 1.2], other vectors in [-0.1, 0.1], ``beta`` in [-0.5, 0.5] (zero at initialisation: the shift
    blocks must count), kernels uniform with std ``1 / sqrt(3 fan_in)`` (outputs of order 1)."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, _ in keys:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        if tuple(shape) == (1,):
            value = 0.05 + 0.4 * u
        elif key.endswith("norm.weight"):
            value = 0.8 + 0.4 * u
        elif len(shape) == 1:
            value = 0.2 * (u - 0.5)
        elif key.endswith("beta"):
            value = u - 0.5
        else:
            value = (2 * u - 1) / torch.Size(shape[1:]).numel() ** 0.5
        state[key] = value.float()
    return state


def authors_file(tmp_path, variant: str) -> Path:
    path = tmp_path / f"net_gopro_deblur_{variant}.pth"  # variant: small, plus, small_tiny, plus_tiny
    torch.save({"params": seeded_state(facts(variant))}, path)
    return path


def loaded(path) -> ShiftNet:
    layout, state, net_args = layouts.convert(path)
    assert layout.name == "shiftnet"
    net = ShiftNet(**net_args)
    net.load_state_dict(state)  # strict: every key of m3l's net filled
    return net.eval()


def clip() -> torch.Tensor:
    return torch.rand(1, 7, 3, 32, 40, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", ["small", "plus"])
def test_the_released_layouts_load_with_the_architecture_they_imply(variant):
    raw = {"params": {key: torch.empty(shape) for key, shape, _ in facts(variant)}}  # as released; values unread
    assert [layout.name for layout in layouts.all_layouts().values() if layout.detect(raw)] == ["shiftnet"]
    state, net_args = convert_authors(raw)
    assert net_args == (SMALL if variant == "small" else PLUS)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in ShiftNet(**net_args).state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == shapes


@pytest.mark.parametrize("variant", ["small", "plus"])
def test_equals_the_authors_net(tmp_path, variant):
    net = loaded(authors_file(tmp_path, f"{variant}_tiny"))
    reference = torch.load(FACTS / "shiftnet_reference.pt", weights_only=True)[variant]
    x = clip()
    with torch.no_grad():
        out = net.forward_clip(x)
        centre = net(x[:, 1:6])  # a 5-frame window: the authors' net on those 5 frames, its centre frame
    diff = (out - reference).abs().max().item()
    print(f"shiftnet {variant}: max |diff| {diff:.2e}")
    assert out.shape == reference.shape and diff < TOLERANCE
    assert (out - x[:, 2:5]).abs().max() > 0.05  # the net changes the frames: the comparison is not trivial
    assert centre.shape == (1, 3, 32, 40)
    assert (centre - out[:, 1]).abs().max() > 100 * TOLERANCE  # 5 frames are not 7: the shifts see the clip


def test_the_small_files_unused_layers_are_dropped_and_misfits_are_one_line():
    state = seeded_state(facts("small_tiny"))
    assert any(k.startswith("orb4.") for k in state) and "lrelu.weight" in state  # in the released layout
    converted, _ = convert_authors({"params": state})
    assert not any(k.startswith(("orb4.", "rorb5.", "lrelu.")) for k in converted)
    assert len(converted) == len([k for k in state if not k.startswith(("orb4.", "orb5.", "rorb4.", "rorb5.", "lrelu."))])
    incomplete = {k: v for k, v in state.items() if k != "stage1.decoder_level1.encoder_level1_2.1.beta"}
    with pytest.raises(M3LError, match=r"stage1\.decoder_level1\.encoder_level1_2\.1\.beta"):
        convert_authors({"params": incomplete})
    with pytest.raises(M3LError, match=r"rconcat\.weight has shape \(4, 40, 3, 3\)"):
        convert_authors({"params": {**state, "rconcat.weight": torch.zeros(4, 40, 3, 3)}})


def test_shifts():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2 * 3, 4, 1, 1)  # 2 clips of 3 frames, 4 channels
    wrapped = temporal_shift(x, 3, backward=False, wrap=True).reshape(2, 3, 4)
    clips = x.reshape(2, 3, 4)
    assert torch.equal(wrapped[:, 1, :2], clips[:, 0, 2:]) and torch.equal(wrapped[:, 1, 2:], clips[:, 1, :2])
    assert torch.equal(wrapped[:, 0, :2], clips[:, 2, 2:])  # the clip is a cycle; clips do not mix
    kept = temporal_shift(x, 3, backward=True, wrap=False).reshape(2, 3, 4)
    assert torch.equal(kept[:, 2], clips[:, 2]) and torch.equal(kept[:, 0, :2], clips[:, 0, 2:])
    assert torch.equal(kept[:, 0, 2:], clips[:, 1, :2])
    image = torch.zeros(1, 8, 20, 20)
    image[..., 10, 10] = 1
    moved = spatial_shift(image, 1)  # one group: the inner ring only, 4 pixels
    assert [tuple(int(i) for i in torch.nonzero(c)[0]) for c in moved[0]] == [
        (14, 14), (14, 10), (14, 6), (10, 14), (10, 6), (6, 14), (6, 10), (6, 6)]


def test_forward_clip_runs_the_authors_chunks():
    torch.manual_seed(0)
    net = ShiftNet(variant="small", width0=4, width=16, growth=2, units=1, chunk=2).eval()
    for p in net.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 9, 3, 8, 8)
    with torch.no_grad():
        out = net.forward_clip(x)
        chunks = [net._run(x[:, s:s + 6]) for s in (0, 2, 3)]  # outputs 0-1, 2-3, then 3-4 aligned to the end
        odd = net.forward_clip(x[:, :6, :, :7, :6])  # padded to a multiple of 4 and cropped back
    assert out.shape == (1, 5, 3, 8, 8)
    assert torch.equal(out[:, :2], chunks[0]) and torch.equal(out[:, 2:4], chunks[1])
    assert torch.equal(out[:, 4:], chunks[2][:, 1:])
    assert odd.shape == (1, 2, 3, 7, 6)


# ------------------------------------------------------------------------------------------- paired clip folders
def write_pairs(root: Path, sequences: dict[str, int], size=(20, 16), target: str = "sharp", seed: int = 0) -> None:
    """GoPro's layout: ``<seq>/blur/`` and ``<seq>/<target>/`` frame folders (and a ``blur_gamma/`` to ignore),
    each sharp frame the blurry one's negative (``blur + sharp = 1`` to 8 bits)."""
    from m3l.io.images import write_png

    generator = torch.Generator().manual_seed(seed)
    for name, frames in sequences.items():
        for t in range(frames):
            blur = (torch.rand(3, size[1], size[0], generator=generator) * 255).round() / 255
            write_png(blur, root / name / "blur" / f"{t:06d}.png")
            write_png(blur, root / name / "blur_gamma" / f"{t:06d}.png")
            write_png(1 - blur, root / name / target / f"{t:06d}.png")


def test_paired_clip_folders_test_and_train(tmp_path):
    from m3l.data.video_folders import VideoFolderDataModule

    write_pairs(tmp_path / "test", {"GOPR0001": 6, "GOPR0002": 5})
    data = VideoFolderDataModule(test_sets={"gopro": str(tmp_path / "test")}, train_dir=str(tmp_path / "test"),
                                 input="/blur/", target="/sharp/", channels=3, frames=5, patch_size=8,
                                 crops_per_epoch=3, num_workers=0)
    data.setup("test")
    (test_set,) = data.test_sets_
    items = [test_set[i] for i in range(len(test_set))]
    assert [i["path"] for i in items] == ["GOPR0001/blur", "GOPR0002/blur"]  # blur_gamma/ is no input
    assert [tuple(i["input"].shape) for i in items] == [(6, 3, 16, 20), (5, 3, 16, 20)]
    assert all(i["degradation"] == "real" and torch.allclose(i["input"] + i["target"], torch.ones(1)) for i in items)
    data.setup("fit")
    for index in range(3):  # crops of the pair, flipped / rotated / reversed alike
        crop = data.train_set[index]
        assert crop["input"].shape == (5, 3, 8, 8) and torch.allclose(crop["input"] + crop["target"], torch.ones(1))


def test_paired_clip_folders_misfits_are_one_line(tmp_path):
    from m3l.data.video_folders import VideoFolderDataModule, clip_pairs

    write_pairs(tmp_path / "dvd", {"seq": 3}, target="gt")
    assert list(clip_pairs(tmp_path / "dvd", "/blur/", "/gt/", "t")) == ["seq/blur"]
    with pytest.raises(M3LError, match="has no target clip .*sharp"):
        clip_pairs(tmp_path / "dvd", "/blur/", "/sharp/", "data.test_sets.dvd")
    with pytest.raises(M3LError, match="no frame folder under .* has '/input/'"):
        clip_pairs(tmp_path / "dvd", "/input/", "/GT/", "data.test_sets.dvd")
    (tmp_path / "dvd" / "seq" / "gt" / "000002.png").unlink()
    with pytest.raises(M3LError, match="has 3 frames and its target .* 2"):
        clip_pairs(tmp_path / "dvd", "/blur/", "/gt/", "data.test_sets.dvd")
    with pytest.raises(M3LError, match="data.input and data.target go together"):
        VideoFolderDataModule(input="/blur/")


@pytest.mark.slow
def test_shiftnet_trains_tests_and_corrects_end_to_end(run_m3l, tmp_path):
    """Trained on paired clips (whole crops through forward_clip), tested on them, a clip corrected."""
    import pandas as pd

    write_pairs(tmp_path / "gopro" / "train", {"a": 8})
    write_pairs(tmp_path / "gopro" / "test", {"b": 7, "c": 6}, seed=1)
    quick = ["data.num_workers=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
             "data.input=/blur/", "data.target=/sharp/"]
    run_m3l("train", "model=shiftnet", *quick, "data.train_dir=gopro/train", "data.val_dir=gopro/test",
            "data.frames=6", "data.patch_size=8", "data.crops_per_epoch=2", "data.train_batch_size=2",
            "trainer.max_epochs=1", "checkpoint_out=shiftnet.ckpt", "hydra.run.dir=train")
    run_m3l("test", "model=shiftnet", *quick, "checkpoint=shiftnet.ckpt", "data.test_sets={gopro: gopro/test}",
            "hydra.run.dir=test")
    rows = pd.read_csv(tmp_path / "test" / "metrics.csv")
    assert rows.degradation.tolist() == ["real"] and rows.psnr.notna().all()
    frames = pd.read_csv(tmp_path / "test" / "per_frame.csv")
    assert len(frames) == 7 + 6  # every frame, the ends mirrored
    run_m3l("correct", "model=shiftnet", "data.num_workers=0", "checkpoint=shiftnet.ckpt",
            "data.correct_dir=gopro/test/b/blur", "serializer.root_dir=out")
    assert len(list((tmp_path / "out").rglob("*.png"))) == 7
