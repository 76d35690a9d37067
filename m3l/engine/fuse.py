"""The fast exact path of evaluation (``m3l.run.test``, ``m3l.run.correct``): the net, rewritten for inference.

:class:`m3l.engine.restoration.RestorationModule` restores test and correction images with an *inference copy* of its
net, built from the weights it holds when testing or predicting starts (after the checkpoint is loaded), and
dropped when it ends; the module's own net and weights are never changed, so training, validation and the
checkpoints it writes are those of the plain net. The copy:

- has every batch norm that directly follows a convolution in an ``nn.Sequential`` folded into that convolution
  (``fold_batch_norm``, on by default: DnCNN, FFDNet and the other Conv+BN+ReLU bodies). In evaluation, batch
  norm is an affine map per channel, ``y = (x - mean) * gamma / sqrt(var + eps) + beta``, so the convolution's
  weights times the scale and its bias moved by the shift compute the same image in one pass; the fold is done
  in float64, so outputs stay within ~1e-7 of the unfolded net's;
- is in the channels-last (NHWC) memory layout where that helps (``channels_last=auto``: on the CPU, where
  oneDNN's convolutions run NHWC natively and an NCHW net pays a reorder around every convolution; measured by
  ``benchmarks/correct_throughput.py``);
- is compiled with :func:`torch.compile` (``compile=true``), after the weights are loaded;
- or runs in onnxruntime (``backend=onnxruntime``): m3l's own ONNX export (:func:`m3l.io.export.export_net`) of
  the folded copy, in a temporary file, run by onnxruntime's CPU provider with as many threads as torch has
  (``m3l.run.common.compute_threads``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from m3l.errors import M3LError

BACKENDS = ("torch", "onnxruntime")
CHANNELS_LAST = (True, False, "auto")
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def plain_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode without gradients, made outside inference mode (so that its weights
    are ordinary tensors, which :func:`torch.export.export` needs), without the in-place compilation of
    ``nn.Module.compile`` (a copied one would still call the original's modules)."""
    compiled = {module: module.__dict__.get("_compiled_call_impl") for module in net.modules()}
    try:
        for module in compiled:
            module._compiled_call_impl = None
        with torch.inference_mode(False), torch.no_grad():
            copied = copy.deepcopy(net)
    finally:
        for module, call in compiled.items():
            module._compiled_call_impl = call
    return copied.eval().requires_grad_(False)


def foldable(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether batch norm ``norm`` right after convolution ``conv`` folds into it exactly in evaluation."""
    from torch.nn.utils import parametrize

    return (type(conv) in CONVOLUTIONS and isinstance(norm, BATCH_NORMS)
            and norm.running_mean is not None and norm.running_var is not None
            and norm.num_features == conv.out_channels and not parametrize.is_parametrized(conv)
            and not conv._forward_hooks and not conv._forward_pre_hooks and not norm._forward_hooks
            and not norm._forward_pre_hooks)


def folded_convolution(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """``norm(conv(x))`` (``norm`` in evaluation) as one convolution, with a bias; computed in float64."""
    with torch.inference_mode(False), torch.no_grad():
        scale = norm.running_var.double().add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        bias = shift if conv.bias is None else conv.bias.double() * scale + shift
        weight = conv.weight.double() * scale.reshape(-1, *[1] * (conv.weight.dim() - 1))
        fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                           padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused.eval().requires_grad_(False)


def fold_batch_norm(net: nn.Module) -> int:
    """Fold, in place, each batch norm that directly follows a convolution in an ``nn.Sequential`` of ``net``
    (anywhere in it) into that convolution, the batch norm becoming an ``nn.Identity``; returns how many.

    Exact in evaluation only (batch norm then uses its running statistics): call it on an inference copy
    (:func:`plain_copy`), never on a net that is being trained."""
    folded = 0
    for sequence in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequence._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = sequence._modules[first], sequence._modules[second]
            if foldable(conv, norm):
                sequence._modules[first] = folded_convolution(conv, norm)
                sequence._modules[second] = nn.Identity()
                folded += 1
    return folded


def use_channels_last(setting, device: torch.device) -> bool:
    """``channels_last``: ``true`` / ``false`` as given; ``auto``: on the CPU only (measured there: about 1.3x
    for DnCNN on one core; on GPUs NCHW stays, pass ``channels_last=true`` to try NHWC)."""
    if setting == "auto":
        return device.type == "cpu"
    return bool(setting)


def check_options(channels_last, backend: str) -> None:
    """One line for a ``channels_last`` or ``backend`` value m3l does not know."""
    if channels_last not in CHANNELS_LAST:
        raise M3LError(f"channels_last: {channels_last!r} is not one of true, false, auto")
    if backend not in BACKENDS:
        raise M3LError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")


def inference_copy(net: nn.Module, device: torch.device, fold: bool = True, channels_last=False,
                   compile: bool = False) -> nn.Module:
    """The net that evaluation runs: a copy of ``net`` (:func:`plain_copy`), batch norm folded (``fold``), in the
    channels-last layout (:func:`use_channels_last`), compiled (``compile``)."""
    inference = plain_copy(net)
    if fold:
        fold_batch_norm(inference)
    if use_channels_last(channels_last, device):
        inference = inference.to(memory_format=torch.channels_last)
    if compile:
        inference = torch.compile(inference)
    return inference


def torch_runner(net: nn.Module, channels_last: bool) -> Callable[..., torch.Tensor]:
    """``run(image, **side)`` with ``net``; images go in channels-last when the net is (outputs come back NCHW)."""
    def run(image: torch.Tensor, **side) -> torch.Tensor:
        if channels_last and image.dim() == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        return net(image, **side).contiguous()

    return run


def onnx_runner(net: nn.Module, image: torch.Tensor, side: dict, threads: int) -> Callable[..., torch.Tensor]:
    """``run(image, **side)`` with onnxruntime (CPU provider, ``threads`` threads) on m3l's ONNX export of ``net``
    (an inference copy) for images like ``image`` (its channels); side information by name (``sigma``, ...)."""
    import tempfile
    from pathlib import Path

    from m3l.io.export import export_net
    from m3l.run.extras import require

    onnxruntime = require("onnxruntime", "onnx", "backend=onnxruntime")
    if getattr(net, "frames", None) is not None:
        raise M3LError("backend=onnxruntime runs image nets; video nets need backend=torch")
    with tempfile.TemporaryDirectory(prefix="m3l-onnx-") as folder, torch.inference_mode(False):
        path = Path(folder) / "net.onnx"
        export_net(net, path, format="onnx", channels=int(image.shape[-3]))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = max(1, int(threads)), 1
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(image: torch.Tensor, **side) -> torch.Tensor:
        feed = {"image": image.detach().to("cpu", torch.float32).contiguous().numpy()}
        for name in names[1:]:
            if name not in side:
                raise M3LError(f"backend=onnxruntime: the exported net takes `{name}`, which the data does not give "
                               f"(pass data.correct_side.{name}=VALUE)")
            value = torch.as_tensor(side[name], dtype=torch.float32).detach().cpu().reshape(-1)
            feed[name] = (value.expand(len(image)) if value.numel() == 1 else value).contiguous().numpy()
        output = session.run(None, feed)[0]
        return torch.from_numpy(output).to(image.device)

    return run
