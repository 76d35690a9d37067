"""Export for deployment: the file runs with torch alone and matches the checkpoint on other sizes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, write_images
from m3l.checkpoint import load_weights
from m3l.errors import M3LError
from m3l.export import export_net
from m3l.models.dncnn import DnCNN

TINY_NET = ["net.depth=3", "net.width=8"]  # the architecture of conftest's tiny_checkpoint

# Run Python with m3l, Lightning, Hydra and OmegaConf impossible to import, as on a bare deployment box.
BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = {"m3l", "pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf", "torchmetrics"}
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked on purpose: {name}")
    sys.meta_path.insert(0, Block())
""")


def run_torch_only(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = BLOCKER + textwrap.dedent(code) + "\nassert not BLOCKED & {m.split('.')[0] for m in sys.modules}\n"
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def checkpoint_net(checkpoint: Path) -> DnCNN:
    net = DnCNN(channels=1, depth=3, width=8)

    class Holder(torch.nn.Module):  # load_weights expects the RestorationModule layout (net.*)
        def __init__(self):
            super().__init__()
            self.net = net

    load_weights(Holder(), checkpoint)
    return net.eval()


def test_the_blocker_blocks(tmp_path):
    result = subprocess.run([sys.executable, "-c", BLOCKER + "import m3l"], capture_output=True, text=True)
    assert result.returncode != 0 and "blocked on purpose: m3l" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("format", ["export", "torchscript"])
def test_exported_file_runs_with_torch_alone_on_other_sizes(format, run_m3l, tiny_checkpoint, tmp_path):
    out = tmp_path / f"dncnn.{'pt2' if format == 'export' else 'pt'}"
    result = run_m3l("export", "model=dncnn", *TINY_NET, f"checkpoint={tiny_checkpoint}", f"format={format}",
                     f"out={out}", "hydra.run.dir=run")
    assert out.is_file() and "max difference" in result.stdout
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"

    torch.manual_seed(0)
    inputs = torch.rand(2, 1, 53, 91)  # neither the export example (64x64) nor the check size (45x77)
    torch.save(inputs, tmp_path / "inputs.pt")
    run_torch_only("""
        import json, sys, zipfile, torch
        path, inputs = sys.argv[1], torch.load(sys.argv[2])
        extra = {"m3l.json": ""}
        if any(n.endswith("/archive_format") for n in zipfile.ZipFile(path).namelist()):
            model = torch.export.load(open(path, "rb"), extra_files=extra).module()
        else:
            model = torch.jit.load(path, _extra_files=extra)
        assert json.loads(extra["m3l.json"])["channels"] == 1
        with torch.no_grad():
            torch.save(model(inputs), sys.argv[3])
    """, str(out), "inputs.pt", "outputs.pt", cwd=tmp_path)
    with torch.no_grad():
        expected = checkpoint_net(tiny_checkpoint)(inputs)
    got = torch.load(tmp_path / "outputs.pt")
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


@pytest.mark.slow
def test_torch_only_runner_corrects_a_folder(tiny_checkpoint, tmp_path):
    model = tmp_path / "dncnn.pt2"
    export_net(checkpoint_net(tiny_checkpoint), model, "export")
    images = write_images(tmp_path / "in", {"a.png": (70, 50), "sub/b.jpg": (41, 33)})
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    result = run_torch_only("""
        import runpy, sys
        sys.argv = sys.argv[1:]  # the runner's own command line: SCRIPT MODEL IN OUT
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exit:
            assert exit.code == 0, exit.code
    """, str(REPO / "deploy" / "correct_exported.py"), str(model), "in", "out", cwd=tmp_path)
    assert "wrote 2 images" in result.stdout and "broken.png" in result.stderr
    net = checkpoint_net(tiny_checkpoint)
    for image, name in zip(images, ["a.png", "sub/b.png"]):
        source = torch.from_numpy(np.array(Image.open(image).convert("L"), dtype=np.float32) / 255)[None, None]
        with torch.no_grad():
            expected = net(source).clamp(0, 1).mul(255).round()[0, 0].numpy()
        written = np.array(Image.open(tmp_path / "out" / name)).astype(np.float32)
        assert written.shape == expected.shape
        assert np.abs(written - expected).max() <= 1  # float rounding at .5 may differ by one level


def test_bad_format_and_side_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(M3LError, match="format: 'onnx' is not one of export, torchscript"):
        export_net(DnCNN(depth=3, width=4), tmp_path / "x.pt2", "onnx")

    class NeedsSigma(torch.nn.Module):
        def forward(self, x, sigma):
            return x - sigma

    with pytest.raises(M3LError, match="needs sigma besides the image"):
        export_net(NeedsSigma(), tmp_path / "x.pt2")
    assert not list(tmp_path.iterdir())


def test_a_file_that_does_not_match_the_net_is_not_kept(tmp_path, monkeypatch):
    import m3l.export

    monkeypatch.setattr(m3l.export, "load_exported", lambda path: (lambda x: x + 1, {}))
    with pytest.raises(M3LError, match="another output than the net"):
        export_net(DnCNN(depth=3, width=4), tmp_path / "x.pt", "torchscript")
    assert not (tmp_path / "x.pt").exists()
