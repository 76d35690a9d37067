"""Export for deployment: the file runs with torch alone (or onnxruntime) and matches the checkpoint on other
sizes; every zoo net exports, side inputs (noise level, JPEG quality) included."""

from __future__ import annotations

import json
import os
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
from m3l.io.export import export_net, load_exported, min_size
from m3l.engine.restoration import required_arguments
from m3l.models._registry import families
from m3l.models.dncnn import DnCNN
from m3l.models.fbcnn import FBCNN
from m3l.models.ffdnet import FFDNet
from m3l.models.nafnet import NAFNet
from m3l.models.restormer import Restormer
from m3l.models.video import PerFrame

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
    """, str(REPO / "m3l" / "deploy.py"), str(model), "in", "out", cwd=tmp_path)
    assert "wrote 2 images" in result.stdout and "broken.png" in result.stderr
    net = checkpoint_net(tiny_checkpoint)
    for image, name in zip(images, ["a.png", "sub/b.png"]):
        source = torch.from_numpy(np.array(Image.open(image).convert("L"), dtype=np.float32) / 255)[None, None]
        with torch.no_grad():
            expected = net(source).clamp(0, 1).mul(255).round()[0, 0].numpy()
        written = np.array(Image.open(tmp_path / "out" / name)).astype(np.float32)
        assert written.shape == expected.shape
        assert np.abs(written - expected).max() <= 1  # float rounding at .5 may differ by one level


@pytest.mark.slow
def test_torch_only_runner_passes_the_noise_level(tmp_path):
    net = FFDNet(1, depth=4, width=8).eval()
    export_net(net, tmp_path / "ffdnet.pt2")
    images = write_images(tmp_path / "in", {"a.png": (29, 22), "tiny.png": (2, 9)})  # 2 px: under FFDNet's 3
    runner = """
        import runpy, sys
        sys.argv = sys.argv[1:]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exit:
            print("exit", exit.code)
    """
    script = str(REPO / "m3l" / "deploy.py")
    result = run_torch_only(runner, script, "ffdnet.pt2", "in", "out", cwd=tmp_path)
    assert "exit 2" in result.stdout and "takes sigma: pass --sigma VALUE" in result.stderr
    result = run_torch_only(runner, script, "ffdnet.pt2", "in", "out", "--sigma", "25", cwd=tmp_path)
    assert "exit 0" in result.stdout and "tiny.png: 2x9 is under the model's minimum size 3" in result.stderr
    source = torch.from_numpy(np.array(Image.open(images[0]), dtype=np.float32) / 255)[None, None]
    with torch.no_grad():
        expected = net(source, torch.tensor([25 / 255])).clamp(0, 1).mul(255).round()[0, 0].numpy()
    written = np.array(Image.open(tmp_path / "out" / "a.png")).astype(np.float32)
    assert written.shape == expected.shape and np.abs(written - expected).max() <= 1


def test_bad_format_and_side_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(M3LError, match="format: 'png' is not one of export, onnx, torchscript"):
        export_net(DnCNN(depth=3, width=4), tmp_path / "x.pt2", "png")

    class NeedsSigma(torch.nn.Module):
        def forward(self, x, sigma):
            return x - sigma

    class NeedsKernel(torch.nn.Module):
        def forward(self, x, kernel):
            return x

    with pytest.raises(M3LError, match="needs sigma besides the image; format=torchscript .* use format=export"):
        export_net(NeedsSigma(), tmp_path / "x.pt", "torchscript")
    with pytest.raises(M3LError, match="takes kernel; export knows the side inputs sigma, quality only"):
        export_net(NeedsKernel(), tmp_path / "x.pt2")
    assert not list(tmp_path.iterdir())


def test_a_failed_export_suggests_only_what_works(tmp_path):
    """NAFNet's TorchScript failure points to format=export (which exports it: the zoo tests below), and a
    torch.export failure suggests no other format."""
    with pytest.raises(M3LError, match=r"cannot export NAFNet with format=torchscript: .*\(format=export exports every "
                                       r"zoo net; M3L_DEBUG=1 for the traceback\)$"):
        export_net(NAFNet(1, 8, (1,), 1, (1,)), tmp_path / "x.pt", "torchscript")

    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(M3LError, match=r"cannot export DataDependent with format=export: .*\(M3L_DEBUG=1 for the "
                                       r"traceback\)$") as error:
        export_net(DataDependent(), tmp_path / "x.pt2")
    assert "torchscript" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_a_file_that_does_not_match_the_net_is_not_kept(tmp_path, monkeypatch):
    import m3l.io.export

    monkeypatch.setattr(m3l.io.export, "load_exported", lambda path: (lambda x: x + 1, {}))
    with pytest.raises(M3LError, match="another output than the net"):
        export_net(DnCNN(depth=3, width=4), tmp_path / "x.pt", "torchscript")
    assert not (tmp_path / "x.pt").exists()


# Every family of the registry at its tiny size (Family.tiny: a new family is tested without editing this list),
# and variants that are not families of their own: (net, channels, side inputs of its file).
ZOO = {name: (lambda family=family: family.build(1), 1, sorted(required_arguments(family.build(1))))
       for name, family in families().items()}
ZOO |= {
    "fbcnn-quality": (lambda: FBCNN(1, (8, 16, 32, 64), 1, 16, blind=False), 1, ["quality"]),
    # NAFNet with TLC: windows under and over the sizes below (without: test_nafnet_and_ffdnet_export_end_to_end)
    "nafnet-tlc": (lambda: NAFNet(3, 8, (1,), 1, (1,), tlc_size=12), 3, []),
    "restormer-color": (lambda: Restormer(3, 8, (1, 1), (1, 2), 1), 3, []),
    "per_frame": (lambda: PerFrame(DnCNN(1, depth=3, width=4)), 1, []),
}
# torch.export takes > 5 s for these on 2 cores
SLOW = {"restormer", "mprnet", "restormer-color", "nafnet", "nafnet-tlc", "fastdvdnet", "swinir", "scunet",
        "retinexformer", "bsvd", "kbnet", "mixdehazenet", "uformer", "fftformer", "shiftnet"}
# The ONNX conversion (torch.export, then onnxscript) of these takes 1-5 min each on 2 cores, about 10 min of CI's
# 90 together: each was checked under onnxruntime when its family was added (session 21's closing note), and
# M3L_TEST_ALL_EXPORTS=1 runs them. Every family's torch.export test (..._exports_with_dynamic_height_and_width) always runs.
HEAVY_ONNX = {"mprnet", "retinexformer", "bsvd", "mixdehazenet", "uformer"}
ALL_EXPORTS = os.environ.get("M3L_TEST_ALL_EXPORTS") == "1"


def onnx_params():
    """The ONNX test's families: every one, HEAVY_ONNX skipped unless M3L_TEST_ALL_EXPORTS=1."""
    marks = {n: [pytest.mark.slow] if n in SLOW else [] for n in ZOO}
    for name in HEAVY_ONNX:
        if not ALL_EXPORTS and name in marks:
            marks[name].append(pytest.mark.skip(reason="heavy ONNX conversion: M3L_TEST_ALL_EXPORTS=1 runs it"))
    return [pytest.param(n, marks=marks[n]) for n in ZOO]


# Two batches at sizes that are not multiples of 8 (nor of the 64x64 export example): 11 < 12, NAFNet's TLC window.
SIZES = [(1, (19, 30)), (2, (37, 11))]


def sizes_for(net) -> tuple[list, dict]:
    """SIZES and export_net's example / check sizes, moved up by the net's multiple when it takes no smaller ones
    (SCUNet pads to 64: sizes from 65, and an example above one multiple)."""
    up = min_size(net) - 1 if min_size(net) > 11 else 0
    arguments = {"example_size": (64 + up, 64 + up), "check_size": (45 + up, 77 + up)} if up else {}
    return [(batch, (h + up, w + up)) for batch, (h, w) in SIZES], arguments


def zoo_net(name: str) -> tuple[torch.nn.Module, int, list[str]]:
    torch.manual_seed(0)
    build, channels, side = ZOO[name]
    net = build().eval()
    for p in net.parameters():  # NAFNet's branch scales start at zero: the branches would not count
        if not p.any():
            torch.nn.init.normal_(p, std=0.2)
    return net, channels, side


def zoo_inputs(net, channels: int, side: list[str], batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    shape = (channels, *size) if getattr(net, "frames", None) is None else (net.frames, channels, *size)
    values = {"sigma": torch.linspace(0.05, 0.2, batch), "quality": torch.linspace(0.1, 0.9, batch)}
    return (torch.rand(batch, *shape), *(values[name] for name in side))


def eager(net, side: list[str], inputs) -> torch.Tensor:
    with torch.no_grad():
        return net(inputs[0], **dict(zip(side, inputs[1:])))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ZOO])
def test_every_zoo_net_exports_with_dynamic_height_and_width(name, tmp_path, monkeypatch):
    import m3l.io.export

    loaded = {}  # the file export_net loads back for its check, reused here (torch.export.load takes seconds)
    monkeypatch.setattr(m3l.io.export, "load_exported", lambda path: loaded.get(path) or loaded.setdefault(
        path, load_exported(path)))
    net, channels, side = zoo_net(name)
    path = tmp_path / f"{name}.pt2"
    sizes, arguments = sizes_for(net)
    assert export_net(net, path, channels=channels, **arguments) <= 1e-4
    assert list(loaded) == [path]
    module, info = loaded[path]
    assert list(info["side"]) == side
    for batch, size in sizes:
        inputs = zoo_inputs(net, channels, side, batch, size)
        with torch.no_grad():
            got = module(*inputs)
        expected = eager(net, side, inputs)
        assert got.shape == expected.shape == (batch, channels, *size)
        assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    too_small = info["min_size"] - 1
    if too_small:  # under the net's multiple + 1: refused by the file, not computed wrong
        with pytest.raises(Exception, match=">= " + str(info["min_size"])):
            module(*zoo_inputs(net, channels, side, 1, (too_small, 20)))


@pytest.mark.parametrize("name", onnx_params())
def test_every_zoo_net_exports_to_onnx_checked_with_onnxruntime(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason='format=onnx needs pip install "m3l[onnx]"')
    net, channels, side = zoo_net(name)
    path = tmp_path / f"{name}.onnx"
    sizes, arguments = sizes_for(net)
    if "onnx" in getattr(net, "not_exportable", {}):  # Shift-Net: refused in one line, nothing written
        with pytest.raises(M3LError, match=r"^cannot export \w+ with format=onnx: .*; use format=export$"):
            export_net(net, path, "onnx", channels=channels, **arguments)
        assert not list(tmp_path.iterdir())
        return
    assert export_net(net, path, "onnx", channels=channels, **arguments) <= 1e-4
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", *side]
    assert json.loads(session.get_modelmeta().custom_metadata_map["m3l.json"])["channels"] == channels
    for batch, size in sizes:
        inputs = zoo_inputs(net, channels, side, batch, size)
        got = session.run(None, dict(zip(["image", *side], (t.numpy() for t in inputs))))[0]
        expected = eager(net, side, inputs).numpy()
        assert got.shape == expected.shape
        difference = float(np.abs(got - expected).max())
        print(f"{name} onnxruntime vs torch, batch {batch}, {size[0]}x{size[1]}: max |diff| {difference:.2g}")
        assert difference <= 1e-4


def test_onnx_without_onnxruntime_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    missing = r'format=onnx needs onnxruntime, which is not installed: pip install "m3l\[onnx\]"'
    with pytest.raises(M3LError, match=missing):
        export_net(DnCNN(depth=3, width=4), tmp_path / "x.onnx", "onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_nafnet_and_ffdnet_export_end_to_end(run_m3l, tmp_path):
    """The commands of the issue: NAFNet to ONNX (it failed: "Constraints violated (height, width)", and the
    format=torchscript its message suggested failed too), FFDNet with its noise level as an input."""
    onnxruntime = pytest.importorskip("onnxruntime", reason='format=onnx needs pip install "m3l[onnx]"')
    nafnet = NAFNet(3, 8, (1, 1), 1, (1, 1))
    for p in nafnet.parameters():
        torch.nn.init.normal_(p, std=0.2)
    torch.save(nafnet.state_dict(), tmp_path / "nafnet.pth")
    result = run_m3l("export", "model=nafnet", "data.channels=3", "net.width=8", "net.encoder_blocks=[1,1]",
                     "net.decoder_blocks=[1,1]", "checkpoint=nafnet.pth", "format=onnx", "out=nafnet.onnx",
                     "hydra.run.dir=run")
    assert "wrote nafnet.onnx (onnx" in result.stdout and "max difference" in result.stdout
    assert "INFO" not in result.stdout + result.stderr  # the ONNX exporter's pass-by-pass log stays quiet
    x = torch.rand(1, 3, 29, 42)
    session = onnxruntime.InferenceSession(str(tmp_path / "nafnet.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = nafnet.eval()(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= 1e-4

    ffdnet = FFDNet(1, depth=4, width=8)
    torch.save(ffdnet.state_dict(), tmp_path / "ffdnet.pth")
    run_m3l("export", "model=ffdnet", "net.depth=4", "net.width=8", "checkpoint=ffdnet.pth", "out=ffdnet.pt2",
            "hydra.run.dir=run2")
    module, info = load_exported(tmp_path / "ffdnet.pt2")
    assert info["side"] == {"sigma": "float32 (N,), the noise level / 255"}
    x, sigma = torch.rand(2, 1, 23, 17), torch.tensor([15 / 255, 50 / 255])
    with torch.no_grad():
        assert torch.allclose(module(x, sigma), ffdnet.eval()(x, sigma), atol=1e-5)
