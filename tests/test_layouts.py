"""The authors' DnCNN / FFDNet files: MatConvNet .mat (v7.3) and KAIR .pth layouts, converted to m3l's nets.

The tests write small files in the authors' structures themselves (h5py writes a v7.3-like .mat: a
``net.layers`` cell array of object references to layer structs, filters stored with MATLAB's axes
reversed and trailing singletons dropped) and compare m3l's converted net with a direct reimplementation of
MatConvNet's forward (``vl_nnconv`` on ``H x W x Cin x Cout`` filters, ``vl_nnSubP``'s sub-image order,
``concat`` of the sigma map, the authors' ``input - res(end).x`` for DnCNN and ``res(end).x`` for FFDNet).
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from m3l import hub
from m3l.models import _layouts as layouts
from m3l.errors import M3LError
from m3l.models.dncnn import DnCNN
from m3l.models.ffdnet import FFDNet
from m3l.run.common import build_module, register_search_path


# ---- writing MatConvNet SimpleNN files as MATLAB -v7.3 does --------------------------------------------

def _char(group, name: str, text: str) -> None:
    data = group.create_dataset(name, data=np.array([[ord(c)] for c in text], dtype=np.uint16))
    data.attrs["MATLAB_class"] = np.bytes_("char")


def _matlab(refs, name: str, array: np.ndarray):
    """A MATLAB array as MATLAB saves it: trailing singleton axes dropped, axes reversed in HDF5."""
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    data = refs.create_dataset(name, data=np.ascontiguousarray(array.T))
    data.attrs["MATLAB_class"] = np.bytes_("single")
    return data


def write_mat(path, layers: list[dict]) -> None:
    """``layers``: dicts with ``type``, options (``pad``, ``scale``, ...) and, for conv, ``filter``
    (MATLAB's ``H x W x Cin x Cout``) and ``bias`` (``Cout``)."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        net = f.create_group("net")
        net.attrs["MATLAB_class"] = np.bytes_("struct")
        handles = []
        for i, layer in enumerate(layers):
            group = refs.create_group(f"layer{i}")
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            _char(group, "type", layer["type"])
            _char(group, "name", f"layer{i + 1}")
            for option in ("pad", "stride", "scale", "leak"):
                if option in layer:
                    group.create_dataset(option, data=np.array([[layer[option]]], dtype=np.float64))
            if "filter" in layer:
                weights = group.create_dataset("weights", (2, 1), dtype=h5py.ref_dtype)
                weights[0, 0] = _matlab(refs, f"filter{i}", layer["filter"]).ref
                weights[1, 0] = _matlab(refs, f"bias{i}", layer["bias"][None, :]).ref
            else:
                empty = group.create_dataset("weights", data=np.zeros(2, dtype=np.uint64))
                empty.attrs["MATLAB_class"], empty.attrs["MATLAB_empty"] = np.bytes_("cell"), 1
            handles.append(group.ref)
        cell = net.create_dataset("layers", (len(layers), 1), dtype=h5py.ref_dtype)
        for i, handle in enumerate(handles):
            cell[i, 0] = handle


def conv_stack(rng, widths: list[int]) -> list[dict]:
    """``conv, relu, ..., conv`` through the channel counts ``widths`` (random filters, MATLAB layout)."""
    layers = []
    for k, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append({"type": "conv", "pad": 1, "stride": 1,
                       "filter": rng.normal(0, 0.3, (3, 3, cin, cout)).astype(np.float32),
                       "bias": rng.normal(0, 0.1, cout).astype(np.float32)})
        if k < len(widths) - 2:
            layers.append({"type": "relu", "leak": 0})
    return layers


# ---- MatConvNet's forward, written from its definitions (H x W x C arrays) ---------------------------

def vl_nnconv(x: np.ndarray, filt: np.ndarray, bias: np.ndarray) -> np.ndarray:
    weight = torch.from_numpy(filt).permute(3, 2, 0, 1)  # y(h,w,o) = sum_{i,dy,dx} x(h+dy,w+dx,i) f(dy,dx,i,o)
    y = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], weight, torch.from_numpy(bias), padding=1)
    return y[0].permute(1, 2, 0).numpy()


def vl_nnsubp(x: np.ndarray, scale: float) -> np.ndarray:
    """cszn/FFDNet's vl_nnSubP: sub-image i (1..4) of a channel is x(a:2:end, b:2:end), a = mod(i-1,2), b = floor((i-1)/2)."""
    if scale < 1:
        h, w, c = x.shape
        y = np.zeros((h // 2, w // 2, 4 * c), x.dtype)
        for ch in range(c):
            for i in range(4):
                y[:, :, 4 * ch + i] = x[i % 2::2, i // 2::2, ch]
        return y
    h, w, c4 = x.shape
    y = np.zeros((2 * h, 2 * w, c4 // 4), x.dtype)
    for ch in range(c4 // 4):
        for i in range(4):
            y[i % 2::2, i // 2::2, ch] = x[:, :, 4 * ch + i]
    return y


def vl_simplenn(layers: list[dict], x: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    for layer in layers:
        if layer["type"] == "conv":
            x = vl_nnconv(x, layer["filter"], layer["bias"])
        elif layer["type"] == "relu":
            x = np.maximum(x, 0)
        elif layer["type"] == "SubP":
            x = vl_nnsubp(x, layer["scale"])
        elif layer["type"] == "concat":
            x = np.concatenate([x, np.full(x.shape[:2] + (1,), sigma, x.dtype)], axis=2)
    return x


def to_torch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def dncnn_layers(rng, channels: int, depth: int, width: int) -> list[dict]:
    return conv_stack(rng, [channels] + [width] * (depth - 1) + [channels])


def ffdnet_layers(rng, channels: int, depth: int, width: int) -> list[dict]:
    return [{"type": "SubP", "scale": 0.5}, {"type": "concat"},
            *conv_stack(rng, [4 * channels + 1] + [width] * (depth - 1) + [4 * channels]),
            {"type": "SubP", "scale": 2}]


def compose_test(overrides):
    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return compose("test", overrides=overrides)


# ---- the tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_matconvnet_dncnn_is_the_authors_network(tmp_path, channels, capsys):
    rng = np.random.default_rng(channels)
    layers = dncnn_layers(rng, channels, depth=4, width=6)
    write_mat(tmp_path / "sigma=25.mat", [*layers, {"type": "loss"}])  # a training loss layer is dropped
    # The model config says depth 17, width 64, batch norm: the file's architecture replaces it.
    module = build_module(compose_test(["model=dncnn", f"data.channels={channels}",
                                        f"net.pretrained='{tmp_path / 'sigma=25.mat'}'"]))  # '=': quoted
    assert "matconvnet_dncnn; using net.depth=4 net.width=6 net.batch_norm=false" in capsys.readouterr().out
    noisy = rng.random((13, 10, channels)).astype(np.float32)
    expected = noisy - vl_simplenn(layers, noisy)  # the authors' test script: output = input - res(end).x
    with torch.no_grad():
        ours = module.net.eval()(to_torch(noisy))
    assert torch.allclose(ours, to_torch(expected), atol=1e-5)


@pytest.mark.parametrize("channels, size", [(1, (12, 10)), (3, (9, 7))])
def test_matconvnet_ffdnet_is_the_authors_network(tmp_path, channels, size):
    rng = np.random.default_rng(7)
    layers = ffdnet_layers(rng, channels, depth=4, width=8)
    write_mat(tmp_path / "FFDNet.mat", layers)
    state, args = layouts.convert(tmp_path / "FFDNet.mat", FFDNet.__module__ + ".FFDNet")[1:]
    assert args == {"channels": channels, "depth": 4, "width": 8, "batch_norm": False}
    net = FFDNet(**args).eval()
    net.load_state_dict(state)
    noisy = rng.random(size + (channels,)).astype(np.float32)
    h, w = size  # the authors' demo pads an odd side by repeating its last row / column, and crops back
    padded = np.pad(noisy, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    expected = vl_simplenn(layers, padded, sigma=25 / 255)[:h, :w]
    with torch.no_grad():
        ours = net(to_torch(noisy), torch.tensor([25 / 255]))
    assert torch.allclose(ours, to_torch(expected), atol=1e-5)


def test_kair_layouts_and_their_architecture(tmp_path):
    torch.manual_seed(0)
    dncnn, ffdnet = DnCNN(channels=3, depth=5, width=4, batch_norm=False), FFDNet(channels=1, depth=3, width=4,
                                                                                   batch_norm=False)
    for net, name, layout in ((dncnn, "dncnn_color_blind.pth", "kair_dncnn"), (ffdnet, "ffdnet_gray.pth", "kair_ffdnet")):
        torch.save({k.replace("body.", "model.", 1): v for k, v in net.state_dict().items()}, tmp_path / name)
        converted = hub.convert_file(tmp_path / name)  # recognised without a hint of the model
        assert converted.layout == layout and converted.target == f"m3l.models.{layout[5:]}.{type(net).__name__}"
        rebuilt = type(net)(**converted.net_args)
        rebuilt.load_state_dict(converted.state)
        assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values()))
    assert hub.convert_file(tmp_path / "dncnn_color_blind.pth").net_args == {
        "channels": 3, "depth": 5, "width": 4, "batch_norm": False}


def kair_ffdnet_forward(state: dict, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """KAIR's FFDNet (models/network_ffdnet.py) from its definition: its own pixel_unshuffle (a view and a
    permute), the noise map appended, model.<i> convolutions with ReLUs between, PixelShuffle."""
    n, c, h, w = x.shape
    sub = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
    y = torch.cat([sub, torch.full((n, 1, h // 2, w // 2), sigma)], 1)
    convs = sorted({int(k.split(".")[1]) for k in state})
    for i in convs:
        y = F.conv2d(y, state[f"model.{i}.weight"], state[f"model.{i}.bias"], padding=1)
        y = F.relu(y) if i != convs[-1] else y
    return F.pixel_shuffle(y, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_kair_ffdnet_is_kairs_network(tmp_path, channels):
    torch.manual_seed(channels)
    net = FFDNet(channels=channels, depth=4, width=6, batch_norm=False)
    state = {k.replace("body.", "model.", 1): v for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / "ffdnet_color.pth")
    converted = hub.convert_file(tmp_path / "ffdnet_color.pth")
    ours = FFDNet(**converted.net_args).eval()
    ours.load_state_dict(converted.state)
    x = torch.rand(2, channels, 10, 14)
    with torch.no_grad():
        assert torch.allclose(ours(x, torch.tensor([0.1, 0.1])), kair_ffdnet_forward(state, x, 0.1), atol=1e-6)


def test_one_line_errors_name_the_file_and_what_fits(tmp_path):
    rng = np.random.default_rng(0)
    write_mat(tmp_path / "FFDNet_gray.mat", ffdnet_layers(rng, 1, depth=3, width=4))
    with pytest.raises(M3LError, match=r"FFDNet_gray.mat: matconvnet_ffdnet holds weights of m3l.models.ffdnet.FFDNet"
                                       r".*use model=ffdnet"):
        build_module(compose_test(["model=dncnn", f"net.pretrained={tmp_path / 'FFDNet_gray.mat'}"]))

    write_mat(tmp_path / "gray.mat", dncnn_layers(rng, 1, depth=3, width=4))
    with pytest.raises(M3LError, match="gray.mat: matconvnet_dncnn is for 1-channel images, the data has 3: pass "
                                       "data.channels=1"):
        build_module(compose_test(["model=dncnn_color", f"net.pretrained={tmp_path / 'gray.mat'}"]))

    torch.save({"weights": [1, 2, 3]}, tmp_path / "foreign.pth")
    with pytest.raises(M3LError, match="in no layout m3l knows; known layouts: m3l .*matconvnet_dncnn .*kair_ffdnet"):
        hub.convert_file(tmp_path / "foreign.pth")

    torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), tmp_path / "model.pth")  # the DnCNN authors' habit
    with pytest.raises(M3LError, match=r"model.pth .*refused.*weights_only=False.*state_dict\(\)"):
        hub.convert_file(tmp_path / "model.pth")

    small = DnCNN(channels=1, depth=3, width=4, batch_norm=False)
    torch.save(small.state_dict(), tmp_path / "bare.pth")  # a bare state dict: the config's net must fit it
    with pytest.raises(M3LError, match=r"bare.pth \(in none of the layouts m3l knows: m3l, .*matconvnet_dncnn, .*\) "
                                       r"does not fit DnCNN: body.0.weight is \(4, 1, 3, 3\) in the file, "
                                       r"\(64, 1, 3, 3\) in the net; try net.width=4"):
        build_module(compose_test(["model=dncnn", "net.batch_norm=false", "net.depth=3",
                                   f"net.pretrained={tmp_path / 'bare.pth'}"]))
    with pytest.raises(M3LError, match=r"bare.pth .* does not fit DnCNN: .*try net.batch_norm=false net.depth=3"):
        build_module(compose_test(["model=dncnn", "net.width=4", f"net.pretrained={tmp_path / 'bare.pth'}"]))

    layers = dncnn_layers(rng, 1, depth=3, width=4)
    write_mat(tmp_path / "bnorm.mat", [layers[0], {"type": "bnorm"}, *layers[1:]])
    with pytest.raises(M3LError, match="bnorm.mat .*batch norm layers; merge them"):
        hub.convert_file(tmp_path / "bnorm.mat", "m3l.models.dncnn.DnCNN", "matconvnet_dncnn")
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(M3LError, match="v5.mat is not a MATLAB v7.3"):
        hub.convert_file(tmp_path / "v5.mat")


def test_convert_cli_writes_m3l_layout_that_loads_back(tmp_path):
    rng = np.random.default_rng(3)
    layers = ffdnet_layers(rng, 1, depth=3, width=4)
    write_mat(tmp_path / "FFDNet_gray.mat", layers)
    result = subprocess.run([sys.executable, "-m", "m3l.hub", "convert", str(tmp_path / "FFDNet_gray.mat"),
                             str(tmp_path / "out" / "ffdnet.pth")], capture_output=True, text=True, check=True)
    written = tmp_path / "out" / "ffdnet.pth"
    assert f"sha256: {hub.sha256(written)}" in result.stdout and "layout: matconvnet_ffdnet" in result.stdout
    assert "overrides: model=ffdnet net.channels=1 net.depth=3 net.width=4 net.batch_norm=false" in result.stdout
    saved = torch.load(written, weights_only=True)
    assert saved["m3l_layout"] == 1 and saved["m3l_target"] == "m3l.models.ffdnet.FFDNet"
    net = hub.load_pretrained(FFDNet(**saved["m3l_net_args"]), written)  # m3l's own layout now
    noisy = rng.random((8, 6, 1)).astype(np.float32)
    with torch.no_grad():
        assert torch.allclose(net(to_torch(noisy), 0.1), to_torch(vl_simplenn(layers, noisy, 0.1)), atol=1e-5)
    failed = subprocess.run([sys.executable, "-m", "m3l.hub", "convert", str(tmp_path / "none.mat"), str(written)],
                            capture_output=True, text=True)
    assert failed.returncode == 2 and "none.mat is not a file" in failed.stderr


@pytest.mark.slow
def test_run_test_with_a_matconvnet_file(run_m3l, tmp_path):
    rng = np.random.default_rng(5)
    write_mat(tmp_path / "tiny.mat", dncnn_layers(rng, 1, depth=3, width=4))
    result = run_m3l("test", "model=dncnn", f"net.pretrained={tmp_path / 'tiny.mat'}", "data.num_workers=0",
                     "trainer.enable_progress_bar=false", "hydra.run.dir=run")
    assert "tiny.mat: matconvnet_dncnn; using net.depth=3 net.width=4 net.batch_norm=false" in result.stdout
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    assert metrics.startswith("dataset,degradation") and "sigma25" in metrics
    bad = run_m3l("test", "model=ffdnet", f"net.pretrained={tmp_path / 'tiny.mat'}", check=False)
    assert bad.returncode == 2 and "use model=dncnn" in bad.stderr.strip().splitlines()[-1]
