#!/usr/bin/env python3
"""Correct images with a model exported by ``python -m m3l.run.export``, using only torch and Pillow.

    python -m m3l.deploy MODEL_FILE IN OUT [--sigma S] [--quality Q] [--device cpu|cuda] [--threads N]
    python deploy.py MODEL_FILE IN OUT ...      # this file copied next to the model: torch and Pillow only

``MODEL_FILE`` is a ``torch.export`` archive (``format=export``) or a TorchScript file
(``format=torchscript``); which one is read from the file itself. ``IN`` is an image or a folder
(searched recursively); each corrected image is written under ``OUT`` as an 8-bit PNG with the input's
relative path and name, through a temporary file and a rename. Unreadable files are skipped with a
warning, and so are images under the model's minimum size (``min_size``: the U-Nets take from their
padding multiple + 1 pixels on). A model that takes the noise level (FFDNet, DRUNet) needs ``--sigma``
(0-255), a non-blind FBCNN ``--quality`` (1-100). This file imports nothing from m3l, Lightning or Hydra
(a test holds it to that): copy it next to the model on a machine with torch and Pillow alone. m3l's own
export checks (:mod:`m3l.io.export`) import its :func:`archive_problem`, so there is one copy of the check.
(Video models and ONNX files: run them yourself, see docs/export.md.)

A ``.pt2`` file is checked before torch reads it (:func:`archive_problem`): one holding pickled weights,
constants or sample inputs, custom objects, operators other than torch's, or guards and symbolic shapes
that are not plain arithmetic is refused (``torch.export.load`` would run them). A TorchScript file is a
program: load one only from a source you trust. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import pickle
import re
import sys
import tempfile
import time
import tokenize
import zipfile
from pathlib import Path

import torch
from PIL import Image, ImageOps

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
METADATA = "m3l.json"


# ---- the archive check (m3l.io.export imports it) ----
# torch.export.load() unpickles whatever an archive marks as pickled (weights, constants, custom and opaque
# objects, the sample inputs when they do not load with weights_only), parses symbolic shapes with sympy
# (which evaluates Python) and compiles the guards it records into Python code. A .pt2 is data only when it
# holds none of these: archive_problem() reads the archive's index and configs first and says what is wrong.
PT2_FILES = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|"
                       r"models/model\.json|data/weights/model_weights_config\.json|data/weights/weight_\d{1,9}|"
                       r"data/constants/model_constants_config\.json|data/constants/tensor_\d{1,9}|"
                       r"data/sample_inputs/model\.pt|extra/[A-Za-z0-9_.-]{1,64})")
PT2_MAX_BYTES = 8 << 30      # what all the archive's files may declare together
PT2_MAX_JSON = 256 << 20     # the program and its configs
PT2_TARGET = re.compile(r"torch\.ops\.(aten|prims)\.\w+\.\w+|_operator\.\w+|math\.\w+|torch\.sym_\w+")
PT2_EXPR_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge",
    "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not",
    "True", "False", "true", "false", "oo", "nan", "positive", "negative", "nonnegative", "nonpositive", "integer",
    "real", "finite", "zero", "nonzero", "even", "odd", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod",
    "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator"}
PT2_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def _expression_problem(text: str) -> str | None:
    """Why the symbolic expression ``text`` (evaluated by sympy when torch loads it) is not plain arithmetic."""
    if len(text) > 20000:
        return "a symbolic expression of more than 20000 characters"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return f"the symbolic expression {text[:60]!r} does not parse"
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
            continue
        if token.type == tokenize.NAME and token.string in PT2_EXPR_NAMES:
            continue
        if token.type == tokenize.NUMBER and len(token.string) <= 24 and "j" not in token.string.lower():
            continue
        if token.type == tokenize.STRING and PT2_IDENTIFIER.fullmatch(token.string[1:-1]) and token.string[0] in "'\"":
            continue
        if token.type == tokenize.OP and token.string in ("(", ")", ",", "=", "+", "-", "*", "/"):
            continue
        return f"the symbolic expression {text[:60]!r} holds {token.string[:30]!r}, not plain arithmetic"
    return None


def _guard_problem(text: str) -> str | None:
    """Why the guard ``text`` (compiled into Python code by torch) is not a comparison of input sizes."""
    if len(text) > 20000:
        return "a guard of more than 20000 characters"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"the guard {text[:60]!r} does not parse"
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
               ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Div, ast.Compare, ast.Eq, ast.NotEq, ast.Lt,
               ast.LtE, ast.Gt, ast.GtE, ast.Load, ast.Subscript, ast.Call, ast.Attribute, ast.Name, ast.Constant)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            return f"the guard {text[:60]!r} holds a {type(node).__name__}"
        if isinstance(node, ast.Name) and node.id not in ("L", "max", "min"):
            return f"the guard {text[:60]!r} names {node.id[:30]!r}"
        if isinstance(node, ast.Attribute) and node.attr not in ("size", "stride", "storage_offset", "dim",
                                                                 "numel"):
            return f"the guard {text[:60]!r} reads the attribute {node.attr[:30]!r}"
        if isinstance(node, ast.Call) and (node.keywords or not (
                isinstance(node.func, ast.Name) and node.func.id in ("max", "min")
                or isinstance(node.func, ast.Attribute) and not node.args)):
            return f"the guard {text[:60]!r} calls something else than a size or max/min"
        if isinstance(node, ast.Constant) and not (
                isinstance(node.value, (bool, int, float)) and abs(node.value) < 2 ** 63
                or isinstance(node.value, str) and PT2_IDENTIFIER.fullmatch(node.value)):
            return f"the guard {text[:60]!r} holds the constant {str(node.value)[:30]!r}"
    return None


def _program_problem(value, key: str = "") -> str | None:
    """Why the serialized program (model.json) could run code when torch loads or runs it; None if it cannot."""
    stack = [(key, value)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                if name in ("as_custom_obj", "class_fqn", "custom_obj") or name == "custom_obj_values" and item:
                    return f"a custom object ({name})"
                if name == "range_constraints" and isinstance(item, dict) and not all(
                        PT2_IDENTIFIER.fullmatch(str(symbol)) for symbol in item):
                    return "a range constraint on something else than a symbol"
                if name == "guards_code":
                    for guard in item if isinstance(item, list) else [item]:
                        problem = _guard_problem(guard) if isinstance(guard, str) else "a guard that is not text"
                        if problem:
                            return problem
                    continue
                stack.append((name, item))
            if {"tensor_meta"} <= set(value) and value.get("use_pickle"):
                return "a pickled payload"
        elif isinstance(value, list):
            stack.extend((key, item) for item in value)
        elif isinstance(value, str):
            if any(c in value for c in "\r\x00\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029"):
                return f"a text with control characters ({key})"
            if key == "expr_str":
                problem = _expression_problem(value)
                if problem:
                    return problem
            if key == "target" and not PT2_TARGET.fullmatch(value):
                return f"the operator {value[:80]!r} (programs call torch's aten operators only)"
    return None


def archive_problem(data: bytes) -> str | None:
    """Why the ``torch.export`` archive ``data`` is not data alone (see above); None when torch may load it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return f"not a readable archive ({error})"
    names = [info.filename for info in infos]
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or not PT2_IDENTIFIER.fullmatch(next(iter(roots))) or len(set(names)) != len(names):
        return "not a torch.export archive (one folder, each file once)"
    root = next(iter(roots)) + "/"
    files = {name[len(root):]: info for name, info in zip(names, infos)}
    strange = sorted(name for name in files if not PT2_FILES.fullmatch(name))
    if strange:
        return (f"it holds {strange[0][:80]!r}, which is not a weight, constant, program or extra file of a "
                f"torch.export archive (pickled objects, compiled code and older formats are refused)")
    if "models/model.json" not in files or sum(info.file_size for info in infos) > PT2_MAX_BYTES:
        return "no program models/model.json, or more than 8 GiB of files"
    if any(info.compress_type != zipfile.ZIP_STORED for info in infos):  # torch never compresses: a bomb would
        return "compressed files (torch.export.save stores them as they are)"

    def read_json(name: str):
        info = files.get(name)
        if info is None:
            return None
        if info.file_size > PT2_MAX_JSON:
            raise ValueError(f"{name} declares {info.file_size} bytes")
        return json.loads(archive.read(info).decode("utf-8"))

    try:
        for kind, prefix in (("weights", "data/weights/"), ("constants", "data/constants/")):
            config = read_json(f"{prefix}model_{kind}_config.json")
            if config is None:
                return f"no {kind} config"
            entries = config.get("config") if isinstance(config, dict) else None
            if not isinstance(entries, dict):
                return f"its {kind} config is not a mapping"
            for fqn, meta in entries.items():
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    return f"{kind} {str(fqn)[:80]} is pickled (use_pickle), or not described; loading it would run code"
                path = meta.get("path_name")
                if not isinstance(path, str) or prefix + path not in files or not isinstance(meta.get("tensor_meta"), dict):
                    return f"{kind} {str(fqn)[:80]} is not a raw tensor of the archive (custom or opaque object?)"
        program = read_json("models/model.json")
        problem = _program_problem(program)
        if problem:
            return f"its program holds {problem}"
        if "data/sample_inputs/model.pt" in files:  # torch retries it with weights_only=False when it fails
            torch.load(io.BytesIO(archive.read(files["data/sample_inputs/model.pt"])), weights_only=True)
    except pickle.UnpicklingError:
        return "its sample inputs hold pickled objects"
    except (ValueError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        return f"a damaged archive ({type(error).__name__}: {str(error).strip()[:120]})"
    return None


class BadModel(Exception):
    """A model file this runner refuses; its message is the one line printed."""


def load_model(path: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The exported module (on ``device``) and its ``m3l.json`` metadata (channels, ...), checked."""
    extra = {METADATA: ""}
    data = path.read_bytes()  # read once: the bytes checked are the bytes loaded
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise BadModel(f"model {path} is not a file written by m3l.run.export ({error})") from None
    try:
        if any(name.endswith("/archive_format") for name in names):
            problem = archive_problem(data)
            if problem:
                raise BadModel(f"model {path}: {problem}; refused (a .pt2 file must be data)")
            stored = [name for name in names if name.endswith(f"/extra/{METADATA}")]
            info = metadata(path, zipfile.ZipFile(io.BytesIO(data)).read(stored[0]).decode("utf-8", "replace")
                            if stored else "")  # checked before the program is loaded
            program = torch.export.load(io.BytesIO(data))
            if torch.device(device).type != "cpu":  # the devices recorded at export (the CPU's) become this one
                program = torch.export.passes.move_to_device_pass(program, device)
            return program.module(), info
        else:  # TorchScript: a program, from a source the user trusts (see the module's docstring)
            model = torch.jit.load(io.BytesIO(data), map_location=device, _extra_files=extra).eval()
    except BadModel:
        raise
    except Exception as error:  # torch raises many types for damaged archives
        raise BadModel(f"model {path} does not load ({type(error).__name__}: "
                       f"{(str(error).strip().splitlines() or [''])[0][:200]})") from None
    text = extra[METADATA]
    return model, metadata(path, text.decode("utf-8", "replace") if isinstance(text, bytes) else text)


def metadata(path: Path, text: str) -> dict:
    """The ``m3l.json`` of the model at ``path``, its values checked (one line naming the key when one is wrong)."""
    try:
        info = json.loads(text or "{}")
    except ValueError as error:
        raise BadModel(f"model {path}: its {METADATA} is not JSON ({error})") from None
    if not isinstance(info, dict):
        raise BadModel(f"model {path}: its {METADATA} is a {type(info).__name__}, not a mapping")
    checks = {"channels": lambda v: type(v) is int and v in (1, 3), "min_size": lambda v: type(v) is int and 1 <= v <= 4096,
              "frames": lambda v: v is None or type(v) is int and 1 <= v <= 64,
              "inputs": lambda v: isinstance(v, list) and v[:1] == ["image"] and len(v) <= 3
              and all(name in SCALES for name in v[1:]) and len(set(v)) == len(v)}
    for key, ok in checks.items():
        if key in info and not ok(info[key]):
            raise BadModel(f"model {path}: {METADATA} key {key} is {str(info[key])[:60]!r}, which this runner "
                           f"does not know; not a file written by m3l.run.export?")
    return info


def list_images(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not p.name.startswith("."))


def read_image(path: Path, channels: int) -> torch.Tensor:
    """``(channels, H, W)`` float in [0, 1]; 16-bit gray PNGs keep their precision."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        width, height = img.size
        if img.mode == "I;16" and channels == 1:
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.int16).to(torch.int32) & 0xFFFF
            return data.view(1, height, width).float().div_(65535.0)
        img = img.convert("L" if channels == 1 else "RGB")
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(height, width, channels).permute(2, 0, 1).float().div_(255.0)


def write_png(image: torch.Tensor, path: Path) -> None:
    """``(C, H, W)`` in [0, 1] to an 8-bit PNG (rounded), through a temporary file and a rename."""
    channels, height, width = image.shape
    pixels = image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).reshape(-1).cpu()
    buffer = bytearray(pixels.numel())
    torch.frombuffer(buffer, dtype=torch.uint8).copy_(pixels)
    picture = Image.frombytes("L" if channels == 1 else "RGB", (width, height), bytes(buffer))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            picture.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


SCALES = {"sigma": 255.0, "quality": 100.0}  # the side inputs' command-line units -> the model's [0, 1] scale


def correct(model: torch.nn.Module, channels: int, source: Path, out: Path, device: str = "cpu",
            side: tuple[float, ...] = (), min_size: int = 1) -> tuple[int, list[str]]:
    """Correct every image under ``source`` into ``out``, passing the ``side`` inputs (on the [0, 1] scale, in the
    model's order) after each image; returns (written, skipped names)."""
    written, skipped = 0, []
    extra = [torch.full((1,), value, device=device) for value in side]
    with torch.inference_mode():
        for path in list_images(source):
            name = path.name if source.is_file() else path.relative_to(source).as_posix()
            try:
                image = read_image(path, channels)
            except Exception as error:  # Pillow raises several types for bad files
                print(f"warning: skipping {name}: not a readable image ({type(error).__name__}: {error})",
                      file=sys.stderr)
                skipped.append(name)
                continue
            if min(image.shape[-2:]) < min_size:
                print(f"warning: skipping {name}: {image.shape[-1]}x{image.shape[-2]} is under the model's minimum "
                      f"size {min_size}", file=sys.stderr)
                skipped.append(name)
                continue
            output = model(image[None].to(device), *extra)[0]
            write_png(output, out / Path(name).with_suffix(".png"))
            written += 1
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="file written by python -m m3l.run.export")
    parser.add_argument("input", type=Path, help="an image or a folder of images")
    parser.add_argument("output", type=Path, help="folder for the corrected PNGs")
    parser.add_argument("--sigma", type=float, help="the noise level, 0-255 (models that take it: FFDNet, DRUNet)")
    parser.add_argument("--quality", type=float, help="the JPEG quality, 1-100 (a non-blind FBCNN)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    for what, path in (("model", args.model), ("input", args.input)):
        if not path.exists():
            print(f"error: {what} {path} does not exist", file=sys.stderr)
            return 2
    if not args.model.is_file() or not zipfile.is_zipfile(args.model):
        print(f"error: model {args.model} is not a file written by m3l.run.export", file=sys.stderr)
        return 2
    if not list_images(args.input):
        print(f"error: no images (png, jpg, bmp, tif, ...) in {args.input}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, info = load_model(args.model, args.device)
    except BadModel as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if info.get("frames"):
        print(f"error: model {args.model} is a video model ({info['frames']} frames in); this runner corrects images",
              file=sys.stderr)
        return 2
    names = info.get("inputs", ["image"])[1:]
    missing = [name for name in names if getattr(args, name, None) is None]
    if missing:
        print(f"error: model {args.model} takes {' and '.join(missing)}: pass "
              f"{' '.join(f'--{name} VALUE' for name in missing)}", file=sys.stderr)
        return 2
    side = tuple(getattr(args, name) / SCALES[name] for name in names)
    start = time.perf_counter()
    written, skipped = correct(model, int(info.get("channels", 1)), args.input, args.output, args.device, side,
                               int(info.get("min_size", 1)))
    seconds = time.perf_counter() - start
    message = f"wrote {written} images to {args.output} ({written / seconds:.3g} images/s)"
    print(message + (f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else ""))
    return 0 if written else 2


if __name__ == "__main__":
    sys.exit(main())
