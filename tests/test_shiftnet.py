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
