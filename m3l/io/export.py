"""Export a restoration net to one file that runs without m3l, Lightning or Hydra.

Three formats:

- ``export``: :func:`torch.export.export` with dynamic batch, height and width, saved with
  :func:`torch.export.save` (a ``.pt2`` archive; load with ``torch.export.load(path).module()``).
  The preferred format: TorchScript is deprecated since torch 2.13 in favour of it. Every zoo net.
- ``onnx``: that same program converted by :func:`torch.onnx.export` (an ``.onnx`` file, batch, height
  and width dynamic), for onnxruntime, TensorRT, OpenVINO, ...; needs ``pip install "m3l[onnx]"``.
- ``torchscript``: :func:`torch.jit.script`, saved with :func:`torch.jit.save` (load with
  ``torch.jit.load``), for runtimes that still need TorchScript (older LibTorch C++ programs); nets that
  take the image alone and that TorchScript compiles (DnCNN, ARCNN).

The inputs are the image, float32 ``(N, C, H, W)`` in [0, 1] (video nets: ``(N, T, C, H, W)``, the
net's ``frames``), then the side information the net uses, each float32 ``(N,)`` on the [0, 1] scale:
``sigma`` (the noise level / 255: FFDNet, DRUNet, FastDVDnet), ``quality`` (the JPEG quality / 100:
FBCNN with ``blind=False``; a blind FBCNN ignores it, so its file takes the image alone). Nets that pad
the image to a multiple ``m`` of its size (the U-Nets) pad inside the file, so any height and width
from ``m + 1`` on work (``min_size`` in the metadata).

Every file carries ``m3l.json`` (channels, inputs, minimum size, value range, the exporting versions:
an extra file of the torch formats, a metadata property of the ONNX model) that the torch-only runner
``m3l/deploy.py`` reads. Every export is checked: the saved file is loaded back (ONNX: by
onnxruntime) and compared with the net on an input of another size than the example it was exported
with, so a file whose height or width got fixed at export time is never written silently.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from m3l.deploy import archive_problem  # the .pt2 check, shared with the torch-only runner
from m3l.io.atomic import atomic_write
from m3l.errors import M3LError

FORMATS = ("export", "onnx", "torchscript")
METADATA = "m3l.json"  # the extra file inside the exported archive; the metadata key of an ONNX model
SIDE = {"sigma": "the noise level / 255", "quality": "the JPEG quality / 100"}  # side inputs, their meaning


def image_only(net: nn.Module) -> None:
    """Refuse nets whose ``forward`` needs more than the image (side inputs such as a noise level)."""
    from m3l.engine.restoration import required_arguments

    required = sorted(required_arguments(net))
    if required:
        raise M3LError(f"{type(net).__name__}.forward needs {', '.join(required)} besides the image; format="
                       f"torchscript exports nets that take the image alone: use format=export or format=onnx")


def side_inputs(net: nn.Module, example: torch.Tensor) -> list[str]:
    """The side inputs the exported file takes: the arguments ``net.forward`` requires (a :class:`PerFrame`
    net: those of its image net), then each optional one that changes the output on ``example`` (FBCNN's
    ``quality`` when not blind)."""
    from m3l.engine.restoration import required_arguments

    required = sorted(getattr(net, "required_side", None) or required_arguments(net))
    params = list(inspect.signature(net.forward).parameters.values())[1:]
    optional = [p.name for p in params if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                  p.KEYWORD_ONLY)]
    unknown = [name for name in required + optional if name not in SIDE]
    if unknown:
        raise M3LError(f"{type(net).__name__}.forward takes {', '.join(unknown)}; export knows the side inputs "
                       f"{', '.join(SIDE)} only")
    used = []
    with torch.no_grad():
        for name in optional:
            low, high = (net(example, **{name: torch.full((len(example),), value)}) for value in (0.1, 0.9))
            if not torch.equal(low, high):
                used.append(name)
    return required + used


class Exported(nn.Module):
    """``net`` with its side inputs as positional tensors after the image: what the exported file computes."""

    def __init__(self, net: nn.Module, side: list[str]):
        super().__init__()
        self.net, self.side = net, list(side)

    def forward(self, image: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        return self.net(image, **dict(zip(self.side, side)))


def min_size(net: nn.Module) -> int:
    """The smallest height and width the exported file takes: ``multiple + 1`` for a net that pads to a
    multiple (its deepest features then have 2 pixels or more; a 1 would be another graph to the exporter)."""
    multiple = getattr(net, "multiple", None) or getattr(getattr(net, "net", None), "multiple", None) or 1
    return multiple + 1 if multiple > 1 else 1


def read_program(path: str | os.PathLike) -> bytes:
    """The bytes of the ``torch.export`` archive at ``path``, read once and checked by :func:`archive_problem`
    (the bytes checked are the bytes loaded); one line when it is not data alone."""
    data = Path(path).read_bytes()
    problem = archive_problem(data)
    if problem:
        raise M3LError(f"{path}: {problem}; refused (a .pt2 file must be data, see docs/export.md)")
    return data


def load_exported(path: str | os.PathLike) -> tuple:
    """A callable ``(image, *side) -> output`` and the ``m3l.json`` metadata of a file written by
    :func:`export_net` (ONNX files run with onnxruntime, on the CPU). A ``.pt2`` archive is checked first
    (:func:`read_program`).

    :mod:`m3l.deploy` does the same with torch alone; this one is for m3l's own checks.
    """
    if not zipfile.is_zipfile(path):
        return _load_onnx(path)
    extra = {METADATA: ""}
    if any(name.endswith("/archive_format") for name in zipfile.ZipFile(path).namelist()):
        module = torch.export.load(io.BytesIO(read_program(path)), extra_files=extra).module()
    else:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    text = extra[METADATA]
    return module, json.loads(text.decode() if isinstance(text, bytes) else text or "{}")


def _load_onnx(path) -> tuple:
    from m3l.run.extras import require

    onnxruntime = require("onnxruntime", "onnx", "format=onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0])

    meta = session.get_modelmeta().custom_metadata_map
    return run, json.loads(meta.get(METADATA, "{}"))


def export_net(net: nn.Module, path: str | os.PathLike, format: str = "export", channels: int = 1,
               example_size: tuple[int, int] = (64, 64), check_size: tuple[int, int] = (45, 77),
               tolerance: float = 1e-4, metadata: dict | None = None) -> float:
    """Write ``net`` (in eval mode, on CPU) to ``path`` in ``format``; returns the checked max abs difference.

    ``example_size`` is the (height, width) of the example input used for export (batch 2: torch.export
    fixes a dimension seen as 1); the file is then loaded back and run on a ``check_size`` input, and
    an output further than ``tolerance`` from the net's is an error (the file is not kept).
    """
    if format not in FORMATS:
        raise M3LError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
    refused = getattr(net, "not_exportable", {}).get(format)  # a net's own word on a format it cannot take
    if refused:
        raise M3LError(f"cannot export {type(net).__name__} with format={format}: {refused}; use format=export")
    if format == "torchscript":
        image_only(net)
    if format == "onnx":  # before the export: a missing package is one line, not a half-done job
        from m3l.run.extras import require

        for module in ("onnx", "onnxruntime", "onnxscript"):
            require(module, "onnx", "format=onnx")
    path = Path(path)
    net = net.cpu().eval()
    frames = getattr(net, "frames", None)  # video nets: a window of frames in, its centre frame out
    shape = (channels, *example_size) if frames is None else (frames, channels, *example_size)
    example = torch.rand(2, *shape)
    smallest = min_size(net)
    if min(check_size) < smallest or min(example_size) < smallest:  # (SCUNet pads to 64: from 65 on)
        key, size = ("check_size", check_size) if min(check_size) < smallest else ("example_size", example_size)
        up = smallest - 1
        raise M3LError(f"{key}: {list(size)} is smaller than {type(net).__name__} takes ({smallest}): pass "
                       f"example_size=[{64 + up},{64 + up}] check_size=[{45 + up},{77 + up}]")
    side = [] if format == "torchscript" else side_inputs(net, example)
    wrapped = Exported(net, side).eval()
    layout = "(N, C, H, W)" if frames is None else f"(N, {frames}, C, H, W), {frames} consecutive frames"
    info = {"format": format, "channels": channels, "input": f"float32 {layout} in [0, 1]", "frames": frames,
            "inputs": ["image", *side], "side": {name: f"float32 (N,), {SIDE[name]}" for name in side},
            "min_size": smallest,
            "output": "float32 (N, C, H, W), clamp to [0, 1]", "torch": torch.__version__, **(metadata or {})}
    text = json.dumps(info, sort_keys=True)
    try:
        with warnings.catch_warnings():  # FBCNN keeps its predicted quality in an attribute: harmless here
            warnings.filterwarnings("ignore", message=".*was assigned during export")
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch's own deprecations, inside the exporters
            if format == "torchscript":
                scripted = torch.jit.script(net)
                with atomic_write(path) as f:
                    torch.jit.save(scripted, f, _extra_files={METADATA: text})
            else:
                program = _export_program(wrapped, example, side, frames is not None, smallest)
                if format == "export":
                    with atomic_write(path) as f:
                        torch.export.save(program, f, extra_files={METADATA: text})
                else:
                    _write_onnx(program, path, side, text)
    except M3LError:
        raise
    except Exception as error:  # torch.export / TorchScript raise many types for unsupported code
        hint = "format=export exports every zoo net; " if format == "torchscript" else ""
        raise M3LError(f"cannot export {type(net).__name__} with format={format}: {str(error).strip().splitlines()[0]}"
                       f" ({hint}M3L_DEBUG=1 for the traceback)") from None

    probe = (torch.rand(1, *shape[:-2], *check_size),
             *(torch.full((1,), {"sigma": 25 / 255, "quality": 0.3}[name]) for name in side))
    with torch.no_grad():
        expected = wrapped(*probe)
        got = load_exported(path)[0](*probe)
    difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not difference <= tolerance:
        path.unlink(missing_ok=True)
        raise M3LError(f"the exported {format} file gives another output than the net on a {check_size[0]}x"
                       f"{check_size[1]} image (max difference {difference:.3g} > tolerance {tolerance}); not written")
    return difference


def _export_program(wrapped: Exported, example: torch.Tensor, side: list[str], video: bool, smallest: int):
    """:func:`torch.export.export` of ``wrapped`` with batch, height and width dynamic (from ``smallest`` on)."""
    batch = torch.export.Dim("batch", min=1)
    height, width = torch.export.Dim("height", min=smallest), torch.export.Dim("width", min=smallest)
    image = {0: batch, 3: height, 4: width} if video else {0: batch, 2: height, 3: width}
    values = tuple(torch.rand(len(example)) for _ in side)
    dynamic = (image, tuple({0: batch} for _ in side)) if side else (image,)
    return torch.export.export(wrapped, (example, *values), dynamic_shapes=dynamic)


def _write_onnx(program, path: Path, side: list[str], text: str) -> None:
    """``program`` as an ONNX model (inputs ``image`` and the side names, output ``output``), ``m3l.json`` in its
    metadata, written through a temporary file and a rename."""
    from m3l.run.extras import require

    onnx = require("onnx", "onnx", "format=onnx")

    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in chatty]
    for logger in chatty:  # their INFO lines (one per optimization pass) would bury the result line
        logger.setLevel(logging.ERROR)
    try:
        onnx_program = torch.onnx.export(program, input_names=["image", *side], output_names=["output"],
                                         dynamo=True, external_data=False, verbose=False)
    finally:
        for logger, level in zip(chatty, levels):
            logger.setLevel(level)
    model = onnx_program.model_proto
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA, value=text))
    with atomic_write(path) as f:
        onnx.save_model(model, f)
