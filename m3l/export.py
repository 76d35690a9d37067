"""Export a restoration net to one file that runs with PyTorch alone (no m3l, Lightning or Hydra).

Two formats:

- ``export``: :func:`torch.export.export` with dynamic batch, height and width, saved with
  :func:`torch.export.save` (a ``.pt2`` archive; load with ``torch.export.load(path).module()``).
  The preferred format: TorchScript is deprecated since torch 2.13 in favour of it.
- ``torchscript``: :func:`torch.jit.script`, saved with :func:`torch.jit.save` (load with
  ``torch.jit.load``), for runtimes that still need TorchScript (older LibTorch C++ programs).

Both files carry ``m3l.json`` (an extra file: channels, value range, the exporting versions) that the
torch-only runner ``deploy/correct_exported.py`` reads. Every export is checked: the saved file is
loaded back and compared with the net on an input of another size than the example it was exported
with, so a file whose height or width got fixed at export time is never written silently.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from m3l.errors import M3LError

FORMATS = ("export", "torchscript")
METADATA = "m3l.json"  # the extra file inside the exported archive


def image_only(net: nn.Module) -> None:
    """Refuse nets whose ``forward`` needs more than the image (side inputs such as a noise level)."""
    params = list(inspect.signature(net.forward).parameters.values())[1:]
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise M3LError(f"{type(net).__name__}.forward needs {', '.join(required)} besides the image; only nets "
                       f"that take the image alone can be exported")


def _save(write, path: Path) -> None:
    """Call ``write(tmp)`` on a temporary name in ``path``'s folder, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_program(program, tmp: str, extra: dict) -> None:
    with open(tmp, "wb") as f:  # a file object: torch.export.save warns on names not ending in .pt2
        torch.export.save(program, f, extra_files=extra)


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """The callable module and the ``m3l.json`` metadata of a file written by :func:`export_net`.

    ``deploy/correct_exported.py`` does the same with torch alone; this one is for m3l's own checks.
    """
    import zipfile

    extra = {METADATA: ""}
    if any(name.endswith("/archive_format") for name in zipfile.ZipFile(path).namelist()):
        with open(path, "rb") as f:
            module = torch.export.load(f, extra_files=extra).module()
    else:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    text = extra[METADATA]
    return module, json.loads(text.decode() if isinstance(text, bytes) else text or "{}")


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
    image_only(net)
    path = Path(path)
    net = net.cpu().eval()
    example = torch.rand(2, channels, *example_size)
    info = {"format": format, "channels": channels, "input": "float32 (N, C, H, W) in [0, 1]",
            "output": "float32 (N, C, H, W), clamp to [0, 1]", "torch": torch.__version__, **(metadata or {})}
    extra = {METADATA: json.dumps(info, sort_keys=True)}
    try:
        if format == "export":
            dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=1),
                    3: torch.export.Dim("width", min=1)}
            program = torch.export.export(net, (example,), dynamic_shapes=(dims,))
            _save(lambda tmp: _write_program(program, tmp, extra), path)
        else:
            scripted = torch.jit.script(net)
            _save(lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra), path)
    except M3LError:
        raise
    except Exception as error:  # torch.export / TorchScript raise many types for unsupported code
        other = "torchscript" if format == "export" else "export"
        raise M3LError(f"cannot export {type(net).__name__} with format={format}: {str(error).strip().splitlines()[0]}"
                       f" (try format={other}, or M3L_DEBUG=1 for the traceback)") from None

    probe = torch.rand(1, channels, *check_size)
    with torch.no_grad():
        expected = net(probe)
        got = load_exported(path)[0](probe)
    difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not difference <= tolerance:
        path.unlink(missing_ok=True)
        raise M3LError(f"the exported {format} file gives another output than the net on a {check_size[0]}x"
                       f"{check_size[1]} image (max difference {difference:.3g} > tolerance {tolerance}); not written")
    return difference
