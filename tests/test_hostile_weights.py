"""A weights file is data, never code: a corpus of hostile files, built here (never downloaded), against the real
commands (``python -m m3l.run.correct|test``, ``python -m m3l.hub convert``, ``python -m m3l.deploy``).

Each payload comes in several variants (keys, nesting, file types .pth / .ckpt / .mat / .pt2). A payload that
runs writes a marker file (``pathlib.Path.write_text`` reached through a Hydra ``_target_`` chain, a pickle, a
sympy expression or a guard), so that "it ran" is a file on disk. Every hostile input must end with exit status
2 and one line on stderr naming the file, no traceback, no marker, nothing written outside the output folder,
and the inputs byte-identical. Memory bombs run under ``RLIMIT_AS``, so a regression fails instead of taking
the machine.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import pickle
import re
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import REPO, write_images
from m3l import hub
from m3l.errors import M3LError
from m3l.models.dncnn import DnCNN

ARCH = {"channels": 1, "depth": 3, "width": 8, "batch_norm": False}
TARGET = "m3l.models.dncnn.DnCNN"
MEMORY_LIMIT = 3 << 30  # bytes of address space for the memory-bomb cases


# ---- payloads ------------------------------------------------------------------------------------------------

def hydra_write(marker: Path, data: str = "pwned") -> dict:
    """A Hydra config that, instantiated, writes ``marker`` (and returns its length: an int like a depth)."""
    return {"_target_": "pathlib.Path.write_text", "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
            "data": data}


class WritesMarker:
    """Unpickled, writes the marker: ``pathlib.Path(marker).write_text("pwned")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (Path(self.marker), "pwned")


def pickled_payload(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(WritesMarker(marker), buffer)
    return buffer.getvalue()


def dncnn_state(depth: int = 3, width: int = 8, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return DnCNN(channels=1, depth=depth, width=width, batch_norm=False).state_dict()


# ---- running a command on a hostile file ---------------------------------------------------------------------

def snapshot(root: Path, skip: Path | None = None) -> dict:
    """``{relative path: sha256}`` of every file under ``root`` (but under ``skip``)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (skip and skip in path.parents):
            files[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def refused(command: list[str], cwd: Path, names: str, marker: Path | None = None, env: dict | None = None,
            limit: int | None = None) -> str:
    """Run ``command`` in ``cwd`` (its outputs go to ``cwd/out``): it must exit 2 with one line naming ``names``
    (a file name), no traceback, no marker, nothing written outside ``out/``, inputs unchanged; returns the line."""
    before = snapshot(cwd, cwd / "out")
    preexec = (lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))) if limit else None
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                            preexec_fn=preexec)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert names in lines[0], lines[0]
    assert marker is None or not marker.exists(), "the payload ran"
    assert snapshot(cwd, cwd / "out") == before, "written outside the output folder, or an input changed"
    return lines[0]


@pytest.fixture
def env(m3l_env):
    return {**m3l_env}


def correct(tmp_path: Path, *overrides: str) -> list[str]:
    """``m3l.run.correct`` of a tiny DnCNN on ``in/``, everything it writes under ``out/``."""
    if not (tmp_path / "in").is_dir():
        write_images(tmp_path / "in", {"a.png": (20, 16)})
    return [sys.executable, "-m", "m3l.run.correct", "model=dncnn", *[f"net.{k}={str(v).lower()}" for k, v in
            ARCH.items() if k != "channels"], "data.correct_dir=in", "serializer.root_dir=out/images",
            "data.num_workers=0", "hydra.run.dir=out/run", "trainer.enable_progress_bar=false", *overrides]


def convert(path: Path) -> list[str]:
    return [sys.executable, "-m", "m3l.hub", "convert", str(path), "out/converted.pth"]


# ---- 1. a Hydra _target_ inside a weights file ---------------------------------------------------------------

def release_with_args(path: Path, net_args: dict, depth: int = 3, target: str | None = TARGET) -> Path:
    payload = {"state_dict": dncnn_state(depth), "m3l_layout": 1, "m3l_net_args": net_args}
    if target:
        payload["m3l_target"] = target
    torch.save(payload, path)
    return path


def checkpoint_with_net(path: Path, net: dict, depth: int = 3) -> Path:
    state = {f"net.{k}": v for k, v in dncnn_state(depth).items()}
    torch.save({"state_dict": state, "m3l_config": {"name": "dncnn", "net": net}}, path)
    return path


def hydra_variants(tmp_path: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """{variant: (file, the key its one line names)}: the payload in several keys, nestings and file types."""
    chain = hydra_write(marker)  # instantiated: writes the marker and returns 5, a depth
    list_chain = {"_target_": "builtins.len", "_args_": [[hydra_write(marker, "x")] * 8]}  # len(...) = 8, a width
    return {
        "pth_depth": (release_with_args(tmp_path / "depth.pth", {**ARCH, "depth": chain}, depth=5), "depth"),
        "ckpt_width_in_list": (checkpoint_with_net(tmp_path / "width.ckpt", {"_target_": TARGET, **ARCH,
                                                                            "width": list_chain}), "width"),
        "pth_partial_in_list": (release_with_args(tmp_path / "partial.pth", {**ARCH, "batch_norm": [
            {"_partial_": True, "_target_": "pathlib.Path.write_text"}]}), "_partial_"),
        "ckpt_class_from_file": (checkpoint_with_net(tmp_path / "class.ckpt", {"_target_": "pathlib.Path.touch",
                                                                              "self": str(marker)}), "pathlib.Path"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["pth_depth", "ckpt_width_in_list", "pth_partial_in_list"])
def test_a_hydra_target_in_a_weights_file_never_runs_in_correct(tmp_path, env, variant):
    marker = tmp_path / "marker"
    path, key = hydra_variants(tmp_path, marker)[variant]
    line = refused(correct(tmp_path, f"net.pretrained={path}"), tmp_path, path.name, marker, env)
    assert key in line


@pytest.mark.parametrize("variant", ["pth_depth", "ckpt_width_in_list", "pth_partial_in_list", "ckpt_class_from_file"])
def test_hub_convert_never_copies_a_hydra_target_into_a_release(tmp_path, env, variant):
    marker = tmp_path / "marker"
    path, key = hydra_variants(tmp_path, marker)[variant]
    line = refused(convert(path), tmp_path, path.name, marker, env)
    assert key in line and not (tmp_path / "out" / "converted.pth").exists()


@pytest.mark.parametrize("variant", ["pth_depth", "ckpt_width_in_list", "pth_partial_in_list"])
def test_torch_hub_and_build_refuse_hydra_keys(tmp_path, variant, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    marker = tmp_path / "marker"
    path, key = hydra_variants(tmp_path, marker)[variant]
    with pytest.raises(M3LError, match=re.escape(path.name) + ".*" + re.escape(key)):
        torch.hub.load(str(REPO), "dncnn", source="local", pretrained=str(path))
    with pytest.raises(M3LError, match=re.escape(key)):
        hub.build_net({"_target_": TARGET, **ARCH, "pretrained": str(path)}, "dncnn")
    assert not marker.exists()


def test_file_arguments_must_be_the_class_arguments_and_scalars(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name, args, message in [("unknown", {**ARCH, "layers": 3}, "'layers' is not an argument of DnCNN"),
                                ("mapping", {**ARCH, "width": {"value": 8}}, "key width is a mapping"),
                                ("text", {**ARCH, "width": "${oc.env:HOME}"}, "key width"),
                                ("huge", {**ARCH, "width": 10 ** 12}, "larger than"),
                                ("nan", {**ARCH, "width": float("nan")}, "not a finite number")]:
        path = release_with_args(tmp_path / f"{name}.pth", args)
        with pytest.raises(M3LError, match=f"{name}.pth.*{re.escape(message)}"):
            hub.convert_file(path, TARGET)


@pytest.mark.slow
def test_arguments_that_would_allocate_more_than_the_file_holds_are_refused_before_the_net_is_built(tmp_path, env):
    """A width of 60000 (a 130 GB conv) in a 10 KB file: checked on the meta device, refused; under RLIMIT_AS."""
    path = release_with_args(tmp_path / "wide.pth", {**ARCH, "width": 60000})
    refused(convert(path), tmp_path, "wide.pth", env=env, limit=MEMORY_LIMIT)
    program = ("import sys; from m3l import hub; from m3l.errors import M3LError\n"
               "try: hub.build_net({'_target_': 'm3l.models.dncnn.DnCNN', 'channels': 1, 'depth': 3, 'width': 8,"
               " 'batch_norm': False, 'pretrained': sys.argv[1]}, 'dncnn')\n"
               "except M3LError as e: print(e, file=sys.stderr); raise SystemExit(2)\n")
    refused([sys.executable, "-c", program, str(path)], tmp_path, "wide.pth", env=env, limit=MEMORY_LIMIT)


# ---- 2. exported programs (.pt2) -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from m3l.io.export import export_net

    path = tmp_path_factory.mktemp("exported") / "dncnn.pt2"
    torch.manual_seed(0)
    export_net(DnCNN(**ARCH), path, metadata={"name": "dncnn", "weights": "test"})
    return path


def rewrite(source: Path, target: Path, change, compress: str = "") -> Path:
    """A copy of the archive ``source`` with ``change(files)`` applied to ``{name inside root: bytes}``; the files
    whose name contains ``compress`` (when given) deflated."""
    with zipfile.ZipFile(source) as archive:
        root = archive.namelist()[0].split("/")[0] + "/"
        files = {name[len(root):]: archive.read(name) for name in archive.namelist()}
    change(files)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            packed = zipfile.ZIP_DEFLATED if compress and compress in name else zipfile.ZIP_STORED
            archive.writestr(root + name, data, compress_type=packed)
    return target


def json_edit(files: dict, name: str, edit) -> None:
    value = json.loads(files[name])
    edit(value)
    files[name] = json.dumps(value).encode()


def pt2_variants(exported: Path, folder: Path, marker: Path) -> dict[str, Path]:
    payload = pickled_payload(marker)
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned')"

    def pickled_weight(files):
        json_edit(files, "data/weights/model_weights_config.json",
                  lambda c: next(iter(c["config"].values())).update(use_pickle=True))
        first = next(iter(json.loads(files["data/weights/model_weights_config.json"])["config"].values()))
        files["data/weights/" + first["path_name"]] = payload

    def opaque_constant(files):
        json_edit(files, "data/constants/model_constants_config.json", lambda c: c["config"].update(
            {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}))
        files["data/constants/opaque_obj_0"] = pickle.dumps(WritesMarker(marker))

    def sample_inputs(files):
        files["data/sample_inputs/model.pt"] = payload

    def guard(files):
        json_edit(files, "models/model.json", lambda p: p["guards_code"].append(f"{code} > 0"))

    def sympy(files):
        text = files["models/model.json"].decode()
        first = re.search(r'"expr_str": "([^"]+)"', text).group(1)
        files["models/model.json"] = text.replace(f'"expr_str": "{first}"', '"expr_str": "' + (
            f"({code} and 0) + {first}").replace('"', '\\"') + '"', 1).encode()

    def operator(files):
        text = files["models/model.json"].decode()
        files["models/model.json"] = re.sub(r'"target": "torch\.ops\.aten\.relu[^"]*"',
                                            '"target": "torch.serialization.os.system"', text, count=1).encode()

    variants = {"pickled_weight": pickled_weight, "opaque_constant": opaque_constant,
                "sample_inputs": sample_inputs, "guard": guard, "sympy": sympy, "operator": operator}
    written = {name: rewrite(exported, folder / f"{name}.pt2", change) for name, change in variants.items()}
    written["compressed"] = rewrite(exported, folder / "compressed.pt2", lambda files: None, compress="weight_")
    return written


def deploy(model: Path) -> list[str]:
    return [sys.executable, "-m", "m3l.deploy", str(model), "in", "out/images"]


@pytest.mark.parametrize("variant", ["pickled_weight", "opaque_constant", "sample_inputs", "guard", "sympy",
                                     "operator", "compressed"])
def test_a_tampered_pt2_is_refused_before_torch_loads_it(exported, tmp_path, env, variant):
    marker = tmp_path / "marker"
    write_images(tmp_path / "in", {"a.png": (20, 16)})
    path = pt2_variants(exported, tmp_path, marker)[variant]
    line = refused(deploy(path), tmp_path, path.name, marker, env)
    assert "refused" in line
    from m3l.io.export import load_exported

    with pytest.raises(M3LError, match=re.escape(path.name)):
        load_exported(path)
    assert not marker.exists()


@pytest.mark.slow
def test_the_pt2_check_passes_m3l_exports_and_is_the_same_in_the_runner(exported, tmp_path, env):
    from m3l.io.export import archive_problem

    assert archive_problem(exported.read_bytes()) is None
    rewritten = rewrite(exported, tmp_path / "rewritten.pt2", lambda files: None)  # the same files, rezipped
    write_images(tmp_path / "in", {"a.png": (20, 16)})
    result = subprocess.run(deploy(rewritten), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and (tmp_path / "out" / "images" / "a.png").is_file(), result.stderr[-2000:]
    import m3l.deploy
    import m3l.io.export

    assert m3l.io.export.archive_problem is m3l.deploy.archive_problem  # one check: m3l's and the runner's
    imported = {node.module for node in ast.walk(ast.parse((REPO / "m3l" / "deploy.py").read_text()))
                if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(ast.parse((REPO / "m3l" / "deploy.py").read_text()))
        if isinstance(node, ast.Import) for alias in node.names}
    assert imported and not {name for name in imported if name.split(".")[0] in ("m3l", "pytorch_lightning",
                                                                               "lightning", "hydra", "omegaconf")}


@pytest.mark.parametrize("metadata, key", [("{not json", "not JSON"), ('{"channels": "3"}', "channels"),
                                           ('{"inputs": ["image", "__class__"]}', "inputs"), ("[1, 2]", "list")])
def test_bad_metadata_in_the_runner_is_one_line(exported, tmp_path, env, metadata, key):
    path = rewrite(exported, tmp_path / "meta.pt2", lambda files: files.update({"extra/m3l.json": metadata.encode()}))
    write_images(tmp_path / "in", {"a.png": (20, 16)})
    assert key in refused(deploy(path), tmp_path, "meta.pt2", env=env)


# ---- 3. and 4. HDF5 (.mat v7.3): files outside the file, declared sizes ----------------------------------------

def write_mat(path: Path, filter_of=None, type_of=None, depth: int = 3, width: int = 4) -> Path:
    """A DnCNN in MatConvNet's layout; ``filter_of(file, refs, name, array)`` may store layer 0's filter
    otherwise, ``type_of(file, group)`` layer 0's type."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        refs, net = f.create_group("#refs#"), f.create_group("net")
        handles = []
        for i in range(depth):
            cin, cout = (1 if i == 0 else width), (1 if i == depth - 1 else width)
            conv = refs.create_group(f"conv{i}")
            if i == 0 and type_of:
                type_of(f, conv)
            else:
                conv.create_dataset("type", data=np.array([[ord(c)] for c in "conv"], np.uint16))
            conv.create_dataset("name", data=np.array([[ord(c)] for c in f"conv{i}"], np.uint16))
            array = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
            if i == 0 and filter_of:
                weight = filter_of(f, refs, f"w{i}", array)
            else:
                weight = refs.create_dataset(f"w{i}", data=array)
            bias = refs.create_dataset(f"b{i}", data=np.zeros((1, cout), np.float32))
            weights = conv.create_dataset("weights", (2, 1), dtype=h5py.ref_dtype)
            weights[0, 0], weights[1, 0] = weight.ref, bias.ref
            handles.append(conv.ref)
            if i < depth - 1:
                relu = refs.create_group(f"relu{i}")
                relu.create_dataset("type", data=np.array([[ord(c)] for c in "relu"], np.uint16))
                handles.append(relu.ref)
        layers = net.create_dataset("layers", (len(handles), 1), dtype=h5py.ref_dtype)
        for i, handle in enumerate(handles):
            layers[i, 0] = handle
    return path


def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret" / "environ"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(np.arange(36, dtype=np.float32).tobytes())  # a local file's bytes, 36 floats of them
    return path


def mat_variants(tmp_path: Path) -> dict[str, Path]:
    leak = secret(tmp_path)
    other = tmp_path / "secret" / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.arange(36, dtype=np.float32).reshape(4, 1, 3, 3))
        f.create_dataset("type", data=np.array([[ord(c)] for c in "conv"], np.uint16))

    def external(f, refs, name, array):
        return refs.create_dataset(name, array.shape, np.float32, external=[(str(leak), 0, leak.stat().st_size)])

    def virtual(f, refs, name, array):
        layout = h5py.VirtualLayout(shape=(4, 1, 3, 3), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(4, 1, 3, 3))
        return refs.create_virtual_dataset(name, layout)

    def external_link(f, group):
        group["type"] = h5py.ExternalLink(str(other), "type")

    def soft_link(f, group):
        f["#refs#"].create_dataset("elsewhere", data=np.array([[ord(c)] for c in "conv"], np.uint16))
        group["type"] = h5py.SoftLink("/#refs#/elsewhere")

    return {"external_storage": write_mat(tmp_path / "external.mat", filter_of=external),
            "virtual": write_mat(tmp_path / "virtual.mat", filter_of=virtual),
            "external_link": write_mat(tmp_path / "link.mat", type_of=external_link),
            "soft_link": write_mat(tmp_path / "soft.mat", type_of=soft_link)}


@pytest.mark.parametrize("variant", ["external_storage", "virtual", "external_link", "soft_link"])
def test_a_mat_file_never_reads_outside_itself(tmp_path, env, variant):
    path = mat_variants(tmp_path)[variant]
    line = refused(convert(path), tmp_path, path.name, env=env)
    assert "refused" in line and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_mat_file_with_external_storage_in_correct(tmp_path, env):
    path = mat_variants(tmp_path)["external_storage"]
    refused(correct(tmp_path, f"net.pretrained={path}"), tmp_path, path.name, env=env)


def mat_bombs(tmp_path: Path) -> dict[str, Path]:
    def huge_filter(f, refs, name, array):  # 14 GB declared, a fill value: a few KB on disk
        return refs.create_dataset(name, (64, 64, 30000, 30), np.float32, chunks=(1, 1, 64, 30), fillvalue=1.0)

    def huge_string(f, group):  # 20 GB of declared characters
        group.create_dataset("type", (10_000_000_000, 1), np.uint16, chunks=(4096, 1), fillvalue=ord("c"))

    def huge_text_type(f, group):  # 16 fixed-length strings of 1 GiB each
        group.create_dataset("type", (16,), dtype=h5py.string_dtype("ascii", 1 << 30))

    return {"huge_filter": write_mat(tmp_path / "filter.mat", filter_of=huge_filter),
            "huge_string": write_mat(tmp_path / "string.mat", type_of=huge_string),
            "huge_text_type": write_mat(tmp_path / "text.mat", type_of=huge_text_type)}


@pytest.mark.parametrize("variant", ["huge_filter", "huge_string", "huge_text_type"])
def test_declared_sizes_are_checked_before_reading(tmp_path, env, variant):
    path = mat_bombs(tmp_path)[variant]
    assert path.stat().st_size < 1 << 20
    refused(convert(path), tmp_path, path.name, env=env, limit=MEMORY_LIMIT)


def test_a_compressed_record_in_a_pth_is_refused(tmp_path, env):
    """torch.save stores records uncompressed; a deflated one unpacks to what it declares (64 MiB of zeros from a
    64 KiB file here, gigabytes as easily)."""
    torch.save({"body.0.weight": torch.zeros(1 << 24)}, tmp_path / "plain.pth")
    path = rewrite(tmp_path / "plain.pth", tmp_path / "deflated.pth", lambda files: None, compress="data/0")
    assert path.stat().st_size < 1 << 20
    assert "compressed" in refused(convert(path), tmp_path, "deflated.pth", env=env, limit=MEMORY_LIMIT)


# ---- 12. non-finite and non-float weights ------------------------------------------------------------------------

def poisoned(tmp_path: Path) -> dict[str, Path]:
    state = dncnn_state()
    nan = {**state, "body.2.weight": state["body.2.weight"].clone().fill_(float("nan"))}
    inf = {k.replace("body.", "model.", 1): v for k, v in state.items()}
    inf["model.0.bias"] = inf["model.0.bias"].clone()
    inf["model.0.bias"][1] = float("inf")
    integer = {**state, "body.0.weight": state["body.0.weight"].round().to(torch.int32)}
    complex_ = {**state, "body.0.bias": state["body.0.bias"].to(torch.complex64)}
    torch.save(nan, tmp_path / "nan.pth")
    torch.save(inf, tmp_path / "kair_inf.pth")
    torch.save({"state_dict": {f"net.{k}": v for k, v in nan.items()}}, tmp_path / "nan.ckpt")
    torch.save(integer, tmp_path / "int.pth")
    torch.save(complex_, tmp_path / "complex.pth")

    def inf_filter(f, refs, name, array):
        array = array.copy()
        array[0, 0, 0, 0] = np.inf
        return refs.create_dataset(name, data=array)

    write_mat(tmp_path / "inf.mat", filter_of=inf_filter)
    return {"nan_pth": tmp_path / "nan.pth", "inf_kair": tmp_path / "kair_inf.pth", "nan_ckpt": tmp_path / "nan.ckpt",
            "int": tmp_path / "int.pth", "complex": tmp_path / "complex.pth", "inf_mat": tmp_path / "inf.mat"}


@pytest.mark.parametrize("variant, key", [("nan_pth", "body.2.weight"), ("inf_kair", "0.bias"),
                                          ("nan_ckpt", "body.2.weight"), ("inf_mat", "body.0.weight"),
                                          ("int", "body.0.weight"), ("complex", "body.0.bias")])
def test_hub_convert_refuses_non_finite_and_non_float_weights(tmp_path, env, variant, key):
    path = poisoned(tmp_path)[variant]
    assert key in refused(convert(path), tmp_path, path.name, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["pretrained", "checkpoint"])
def test_non_finite_weights_are_refused_in_correct(tmp_path, env, route):
    path = poisoned(tmp_path)["nan_pth" if route == "pretrained" else "nan_ckpt"]
    line = refused(correct(tmp_path, f"net.{route}={path}" if route == "pretrained" else f"checkpoint={path}"),
                   tmp_path, path.name, env=env)
    assert "body.2.weight" in line and "not finite" in line


def test_hub_convert_loads_the_converted_weights_into_the_net_they_imply(tmp_path, env):
    """A release whose tensors do not fit the class and arguments it records is not written."""
    state = dncnn_state()
    state["body.2.weight"] = state["body.2.weight"][:, :4]
    torch.save({"state_dict": state, "m3l_layout": 1, "m3l_net_args": ARCH, "m3l_target": TARGET},
               tmp_path / "misfit.pth")
    line = refused(convert(tmp_path / "misfit.pth"), tmp_path, "misfit.pth", env=env)
    assert "body.2.weight" in line and not (tmp_path / "out").exists()


# ---- low: one line for every bad weights input ---------------------------------------------------------------

def malformed(tmp_path: Path) -> dict[str, Path]:
    files = {"empty.ckpt": b"", "junk.pth": b"\x01"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": [1, 2, 3]}, tmp_path / "list_state.pth")
    torch.save({"state_dict": dncnn_state(), "m3l_layout": 1, "m3l_net_args": [3, 8]}, tmp_path / "list_args.pth")
    torch.save({"state_dict": dncnn_state(), "m3l_config": "dncnn"}, tmp_path / "text_config.ckpt")
    torch.save({"m_head.weight": "x", "qf_embed.0.weight": 1, "m_body_encoder.0.res.0.weight": 2},
               tmp_path / "fbcnn_text.pth")  # FBCNN's keys, holding no tensors
    with h5py.File(tmp_path / "numbers.mat", "w") as f:  # net.layers holds numbers, not references to layers
        f.create_group("net").create_dataset("layers", data=np.zeros((3, 1)))
    with h5py.File(tmp_path / "scalar.mat", "w") as f:  # net is an array, not a struct
        f.create_dataset("net", data=np.zeros(3))
    return {p.name: p for p in tmp_path.iterdir() if p.is_file()}


@pytest.mark.parametrize("name", ["empty.ckpt", "junk.pth", "list_state.pth", "list_args.pth", "text_config.ckpt",
                                  "fbcnn_text.pth", "numbers.mat", "scalar.mat"])
def test_malformed_weights_files_are_one_line(tmp_path, env, name):
    path = malformed(tmp_path)[name]
    line = refused(convert(path), tmp_path, name, env=env)
    assert "weights_only=False" not in line


@pytest.mark.slow
@pytest.mark.parametrize("route, name", [("checkpoint", "empty.ckpt"), ("pretrained", "junk.pth")])
def test_malformed_weights_are_one_line_in_correct(tmp_path, env, route, name):
    path = malformed(tmp_path)[name]
    override = f"checkpoint={path}" if route == "checkpoint" else f"net.pretrained={path}"
    line = refused(correct(tmp_path, override), tmp_path, name, env=env)
    assert "weights_only=False" not in line


@pytest.mark.slow
def test_the_exported_metadata_names_the_weights_by_name_and_sha256(tmp_path, run_m3l):
    path = tmp_path / "secret_folder" / "weights.pth"
    path.parent.mkdir()
    torch.save(dncnn_state(), path)
    run_m3l("export", "model=dncnn", *[f"net.{k}={str(v).lower()}" for k, v in ARCH.items() if k != "channels"],
            f"checkpoint={path}", "out=net.pt2", "hydra.run.dir=run")
    archive = zipfile.ZipFile(tmp_path / "net.pt2")
    text = archive.read(next(n for n in archive.namelist() if n.endswith("/extra/m3l.json"))).decode()
    assert json.loads(text)["weights"] == f"weights.pth (sha256 {hub.sha256(path)})"
    assert "secret_folder" not in text and str(tmp_path) not in text
