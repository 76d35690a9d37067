"""Correction throughput per CPU core: GFLOP per CPU-second of DnCNN-17 on BSD68-sized (481x321) gray images,
through each of m3l's evaluation paths, beside the practical peak of this core (a plain loop of one 64->64 3x3
convolution), all in one run and pinned to one thread (``torch.set_num_threads(1)``; m3l runs with ``threads=1``).

Two tables, one CSV (``benchmarks/results/correct_throughput.csv``):

- ``net``: the restoration step of :class:`m3l.engine.restoration.RestorationModule` alone (in this process, timed with
  the process's CPU time, the first image of each path as warm-up: compile and export times are the ``setup_s``
  column): ``today`` (the plain net: eager, NCHW, batch norm unfused, what test / correct ran before m3l.engine.fuse),
  ``folded`` (batch norm folded), ``folded+channels_last`` (the default on the CPU), ``compile``
  (``compile=true``), ``backend=onnxruntime``; beside them ``onnxruntime`` (a plain onnxruntime session on m3l's
  ONNX export of the net) and ``peak`` (the plain convolution loop); ``max_diff`` is the largest difference from
  today's output (goal ≤ 1e-5).
- ``correct``: ``python -m m3l.run.correct threads=1 data.num_workers=0`` end to end (PNG decoding and writing
  included; the rate its serializer reports, wall clock), with today's settings (``fold_batch_norm=false
  channels_last=false``), the default and ``backend=onnxruntime``, and a plain loop ``Image.open -> tensor -> net
  -> save`` in this process; ``max_levels`` is the largest difference from today's PNGs in 8-bit levels.

Goals: default ≥ 1.6x today, ``backend=onnxruntime`` ≥ 0.9x the plain onnxruntime session (``net`` rows). The
``correct`` rates include the one-off setup (the ONNX export of ``backend=onnxruntime``: its ``setup_s`` above).
The BSD68 images when ../shared/data/bsd68 is beside the checkout, else dead-leaves images of their size; the net
has random weights with batch-norm statistics drawn as after training (folding is then not a no-op).

    python benchmarks/correct_throughput.py [--images 12] [--repeats 2]
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import correct_args, device_name, median, report, run_m3l

SHARED_BSD68 = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsd68"


def make_images(folder: Path, count: int) -> list[Path]:
    """BSD68 itself when ../shared/data is beside the checkout, else dead-leaves images of its size."""
    folder.mkdir(parents=True)
    sources = sorted(SHARED_BSD68.glob("*.png"))[:count] if SHARED_BSD68.is_dir() else []
    for i in range(count):
        if i < len(sources):
            Image.open(sources[i]).save(folder / sources[i].name)
        else:
            from m3l.data.deadleaves import dead_leaves

            array = dead_leaves(481, np.random.default_rng(i))[0, :321]
            Image.fromarray((array * 255).round().astype(np.uint8)).save(folder / f"synthetic{i:03d}.png")
    return sorted(folder.glob("*.png"))


def as_trained(net: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm statistics and affine terms away from their initial values, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.05)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.01)
    return net


def flops(net, images: list[torch.Tensor]) -> float:
    """GFLOP of ``net`` over ``images`` (torch.utils.flop_counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()  # (in training mode, batch norm would update its statistics)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        for image in images:
            net(image)
    return counter.get_total_flops() / 1e9


def net_path(module, images: list[torch.Tensor], fast: bool) -> tuple[float, float, list[torch.Tensor]]:
    """(setup CPU-seconds: the first image, CPU-seconds of the rest, outputs) of the module's evaluation step."""
    module.eval()
    outputs = []
    with torch.inference_mode():
        if fast:
            module.on_predict_start()
        start = time.process_time()
        outputs.append(module.restore({"input": images[0]}))
        middle = time.process_time()
        outputs += [module.restore({"input": image}) for image in images[1:]]
        end = time.process_time()
        if fast:
            module.on_predict_end()
    return middle - start, end - middle, outputs


def peak(images: list[torch.Tensor], repeats: int = 3) -> float:
    """GFLOP per CPU-second of a plain loop of one 64->64 3x3 convolution (channels-last) on an image's size."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last).eval()
    x = torch.rand(1, 64, *images[0].shape[-2:]).contiguous(memory_format=torch.channels_last)
    gflop = flops(conv, [x])
    with torch.inference_mode():
        conv(x)
        start = time.process_time()
        for _ in range(repeats):
            conv(x)
        return gflop * repeats / (time.process_time() - start)


NET_PATHS = {  # name: (config overrides of m3l.run.correct, through the inference copy)
    "today": (["fold_batch_norm=false", "channels_last=false"], False),
    "folded": (["channels_last=false"], True),
    "folded+channels_last": ([], True),
    "compile": (["compile=true"], True),
    "backend=onnxruntime": (["backend=onnxruntime"], True),
}


def onnxruntime_session(net: torch.nn.Module, tmp: Path):
    """``run(image)``: a plain onnxruntime session (one thread) on m3l's ONNX export of ``net``."""
    import onnxruntime

    from m3l.io.export import export_net

    export_net(net, tmp / "dncnn.onnx", format="onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(tmp / "dncnn.onnx"), options, providers=["CPUExecutionProvider"])
    return lambda image: torch.from_numpy(session.run(None, {"image": image.numpy()})[0])


def plain_path(run, images: list[torch.Tensor]) -> tuple[float, float, list[torch.Tensor]]:
    """What :func:`net_path` measures, for a plain callable."""
    start = time.process_time()
    outputs = [run(images[0])]
    middle = time.process_time()
    outputs += [run(image) for image in images[1:]]
    return middle - start, time.process_time() - middle, outputs


def net_rows(files: list[Path], tmp: Path, repeats: int) -> list[dict]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_configs import compose_m3l

    from m3l.io.images import read_image
    from m3l.run.common import build_module

    images = [read_image(path)[None] for path in files]
    modules, state = {}, None
    for name, (overrides, _) in NET_PATHS.items():
        module = build_module(compose_m3l("correct", ["model=dncnn", "threads=1", *overrides]))
        if state is None:
            torch.manual_seed(0)
            state = as_trained(module.net).state_dict()
        module.net.load_state_dict(state)
        modules[name] = module
    gflop = flops(modules["today"].net, images[1:])
    session = onnxruntime_session(modules["today"].net, tmp)
    rows, reference = {name: [] for name in NET_PATHS}, None
    for repeat in range(repeats):  # interleaved, so that a busy moment of a shared machine hits every path
        for name, (_, fast) in NET_PATHS.items():
            setup, seconds, outputs = net_path(modules[name], images, fast)
            reference = outputs if name == "today" and reference is None else reference
            diff = max(float((o - r).abs().max()) for o, r in zip(outputs, reference))
            rows[name].append({"gflop_per_cpu_s": gflop / seconds, "setup_s": setup, "max_diff": diff})
        setup, seconds, outputs = plain_path(session, images)
        diff = max(float((o - r).abs().max()) for o, r in zip(outputs, reference))
        rows.setdefault("onnxruntime", []).append({"gflop_per_cpu_s": gflop / seconds, "setup_s": setup,
                                                   "max_diff": diff})
        rows.setdefault("peak", []).append({"gflop_per_cpu_s": peak(images), "setup_s": 0.0, "max_diff": 0.0})
    return [{"table": "net", "path": name, "gflop_per_cpu_s": median([r["gflop_per_cpu_s"] for r in runs]),
             "setup_s": median([r["setup_s"] for r in runs]), "max_diff": f"{max(r['max_diff'] for r in runs):.1e}"}
            for name, runs in rows.items()]


def plain_loop(files: list[Path], net: torch.nn.Module, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.inference_mode():
        for path in files:
            x = torch.from_numpy(np.array(Image.open(path).convert("L"), dtype=np.float32) / 255)[None, None]
            y = net(x).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()[0, 0]
            Image.fromarray(y).save(out / path.name)
    return len(files) / (time.perf_counter() - start)


CORRECT_RUNS = {"correct today": ["fold_batch_norm=false", "channels_last=false"], "correct default": [],
                "correct onnxruntime": ["backend=onnxruntime"]}


def correct_rows(files: list[Path], tmp: Path, repeats: int) -> list[dict]:
    from m3l.models.dncnn import DnCNN

    torch.manual_seed(0)
    net = as_trained(DnCNN()).eval()
    torch.save(net.state_dict(), tmp / "dncnn.pth")
    rates = {name: [] for name in ["plain loop", *CORRECT_RUNS]}
    for repeat in range(repeats):
        rates["plain loop"].append(plain_loop(files, net, tmp / f"plain loop{repeat}"))
        for name, overrides in CORRECT_RUNS.items():
            result = run_m3l("correct", "model=dncnn", f"checkpoint={tmp / 'dncnn.pth'}", f"data.correct_dir={tmp / 'in'}",
                             f"serializer.root_dir={tmp / f'{name}{repeat}'}", "threads=1", "data.num_workers=0",
                             "trainer.accelerator=cpu", f"hydra.run.dir={tmp / f'run {name}{repeat}'}", *overrides,
                             cwd=tmp)
            written = re.search(r"wrote (\d+) images .* in ([\d.]+) s", result.stdout)
            rates[name].append(int(written.group(1)) / float(written.group(2)))

    def levels(name: str) -> int:
        return max(int(np.abs(np.array(Image.open(tmp / f"{name}0" / f.name), dtype=int)
                              - np.array(Image.open(tmp / "correct today0" / f.name), dtype=int)).max()) for f in files)

    return [{"table": "correct", "path": name, "images_per_s": median(values), "max_levels": levels(name)}
            for name, values in rates.items()]


def main() -> None:
    args = correct_args(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = make_images(tmp / "in", args.images)
        rows = net_rows(files, tmp, args.repeats) + correct_rows(files, tmp, args.repeats)
    net = {row["path"]: row["gflop_per_cpu_s"] for row in rows if row["table"] == "net"}
    correct = {row["path"]: row["images_per_s"] for row in rows if row["table"] == "correct"}
    from m3l.models.dncnn import DnCNN

    gflop_per_image = flops(DnCNN().eval(), [torch.rand(1, 1, 321, 481)])
    for row in rows:
        if row["table"] == "correct":
            row["gflop_per_cpu_s"] = row["images_per_s"] * gflop_per_image  # one thread: wall ~ CPU of one core
        rate = row["gflop_per_cpu_s"]
        row.update(vs_today=rate / (net["today"] if row["table"] == "net" else correct["correct today"] * gflop_per_image),
                   vs_peak=rate / net["peak"], vs_onnxruntime=rate / net["onnxruntime"],
                   device=device_name(), images=args.images, load_1min=load[0])
    report(rows, "correct_throughput")
    export_s = next(row["setup_s"] for row in rows if row["path"] == "backend=onnxruntime")
    print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"per core, net: default / today {net['folded+channels_last'] / net['today']:.2f} (goal >= 1.6), "
          f"compile / today {net['compile'] / net['today']:.2f}, onnxruntime / today {net['onnxruntime'] / net['today']:.2f}, "
          f"default / onnxruntime {net['folded+channels_last'] / net['onnxruntime']:.2f}, "
          f"backend=onnxruntime / onnxruntime {net['backend=onnxruntime'] / net['onnxruntime']:.2f} (goal >= 0.9), "
          f"default / peak {net['folded+channels_last'] / net['peak']:.2f}")
    print(f"per core, m3l.run.correct: default / today {correct['correct default'] / correct['correct today']:.2f}, "
          f"backend=onnxruntime / today {correct['correct onnxruntime'] / correct['correct today']:.2f} (its ONNX "
          f"export, {export_s:.0f} CPU-s, counted in), default / plain loop "
          f"{correct['correct default'] / correct['plain loop']:.2f}")


if __name__ == "__main__":
    main()
