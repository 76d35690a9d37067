"""``RestorationModule``: the LightningModule that turns any image-to-image ``nn.Module`` into a model.

It owns what every restoration net needs and none should rewrite: the loss, the optimizer and
scheduler (built from Hydra ``_partial_`` configs), validation PSNR / SSIM, the per-image test table,
and the predict step that ``m3l.run.correct`` uses. A plain ``nn.Module`` given as ``net`` in a config
is wrapped in it automatically.

Batches are dicts (see :mod:`m3l.data.datasets`); entries of ``batch["side"]`` (noise level, quality
factor, ...) are passed to the net's ``forward`` when it takes an argument of that name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import pytorch_lightning as pl
import torch
from torch import nn

from m3l.engine import metrics
from m3l.engine.metrics import DEFAULT_METRICS
from m3l.engine.metrics import protocol as metric_protocol
from m3l.engine.ensemble import ensembled
from m3l.errors import M3LError
from m3l.engine.tiling import tiled


def required_arguments(net: nn.Module) -> frozenset[str]:
    """Names of the side arguments ``net.forward`` cannot do without (no default value)."""
    params = list(inspect.signature(net.forward).parameters.values())[1:]
    return frozenset(p.name for p in params if p.default is p.empty
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def forward_arguments(net: nn.Module) -> frozenset[str] | None:
    """Names of the keyword arguments ``net.forward`` takes; ``None`` when it takes ``**kwargs``."""
    params = list(inspect.signature(net.forward).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _plain_keys(module: nn.Module, state: dict, prefix: str, *args) -> None:
    """Load weights saved from a net wrapped by ``torch.compile`` (keys ``net._orig_mod.*``: what ``compile=true``
    training wrote before m3l compiled the net in place) into the plain net: ``_orig_mod.`` is dropped."""
    for key in [k for k in state if k.startswith(prefix) and "_orig_mod." in k]:
        state[key.replace("_orig_mod.", "")] = state.pop(key)


class RestorationModule(pl.LightningModule):
    """Train, validate, test and predict with ``net``.

    Args:
        net: maps a degraded ``(N, C, H, W)`` batch in [0, 1] to the restored one.
        loss: training loss ``loss(output, target)`` (default: MSE, as in DnCNN).
        optimizer: ``optimizer(params)`` factory, e.g. a Hydra ``_partial_`` of ``torch.optim.Adam``.
        scheduler: ``scheduler(optimizer)`` factory or ``None``; stepped every ``scheduler_interval``.
        metrics: how test rows are measured (config key ``metrics``): ``psnrb`` (add ``psnrb`` and
            ``psnrb_input`` columns), ``y_channel`` (RGB measured on BT.601 luma), ``crop_border`` (pixels).
    """

    def __init__(self, net: nn.Module, loss: nn.Module | None = None, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, scheduler_interval: str = "epoch", metrics: Mapping | None = None):
        super().__init__()
        self.net = net
        self.loss = loss if loss is not None else nn.MSELoss()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.side_arguments = forward_arguments(net)
        self.required_side = required_arguments(net)
        self.metric_names, self.metric_options = metric_protocol(metrics)
        self.tiling: tuple[int, int] | None = None  # (tile, overlap) for evaluation; set from the config's `tile`
        self.ensemble: str | None = None  # evaluation's self-ensemble (m3l.engine.ensemble: x8); the config's `ensemble`
        # testing and predicting run an inference copy of the net (m3l.engine.fuse); the config's speed keys set these
        self.fold_batch_norm: bool = True  # batch norm folded into the conv before it (exact)
        self.inference_channels_last: bool | str = False  # True, False or "auto" (the CPU: on)
        self.compile_inference: bool = False  # torch.compile the copy
        self.backend: str = "torch"  # or "onnxruntime"
        self.inference_threads: int | None = None  # onnxruntime's threads (None: torch's)
        self._inference: Callable[..., torch.Tensor] | None = None  # built on the first image, per test / predict
        self._fast_inference = False  # between the start and end of a test or predict run
        self.register_load_state_dict_pre_hook(_plain_keys)
        self.test_rows: list[dict] = []

    def forward(self, x: torch.Tensor, **side) -> torch.Tensor:
        return self.net(x, **side)

    def net_side(self, side: dict) -> dict:
        """The entries of ``side`` the net's ``forward`` takes; one line if it needs one that is missing."""
        missing = self.required_side - set(side)
        if missing:
            name = sorted(missing)[0]
            raise M3LError(f"net {type(self.net).__name__} needs side information `{name}` that the data does not "
                           f"give: use a degradation that produces it, or pass data.correct_side.{name}=VALUE "
                           f"(or write '{name}: VALUE' in a side.yaml beside the images)")
        if self.side_arguments is None:
            return dict(side)
        return {k: v for k, v in side.items() if k in self.side_arguments}

    def restore(self, batch: dict) -> torch.Tensor:
        side = self.net_side(batch.get("side", {}))
        if self.training:
            return self(batch["input"], **side)
        return self.evaluate(self, batch["input"], side)

    def evaluate(self, run: Callable[..., torch.Tensor], x: torch.Tensor, side: dict) -> torch.Tensor:
        """``run(x, **side)`` in evaluation, with the config's ``ensemble`` and ``tile``: the self-ensemble is
        outermost (each of its flipped / rotated images is restored tile by tile). While testing or predicting,
        ``run`` = the module itself goes through the inference copy of the net (:meth:`inference_runner`)."""
        if run is self and self._fast_inference:
            run = self.inference_runner(x, side)
        if self.tiling is not None:
            plain, tiling = run, self.tiling
            run = lambda image, **given: tiled(lambda t: plain(t, **given), image, *tiling)  # noqa: E731
        if self.ensemble is not None:
            return ensembled(run, x, side, self.ensemble)
        return run(x, **side)

    def inference_runner(self, x: torch.Tensor, side: dict) -> Callable[..., torch.Tensor]:
        """``run(image, **side)`` with the inference copy of the net (see :mod:`m3l.engine.fuse`), built from the
        current weights on the first image of a test or predict run (``x``: its device, channels and side)."""
        if self._inference is None:
            from m3l.engine import fuse

            fuse.check_options(self.inference_channels_last, self.backend)
            onnx = self.backend == "onnxruntime"
            channels_last = not onnx and fuse.use_channels_last(self.inference_channels_last, x.device)
            net = fuse.inference_copy(self.net, x.device, fold=self.fold_batch_norm, channels_last=channels_last,
                                      compile=self.compile_inference and not onnx)
            if onnx:
                threads = self.inference_threads or torch.get_num_threads()
                self._inference = fuse.onnx_runner(net, x, side, threads)
            else:
                self._inference = fuse.torch_runner(net, channels_last)
        return self._inference

    def _start_inference(self) -> None:
        self._inference, self._fast_inference = None, True

    def _end_inference(self) -> None:
        self._inference, self._fast_inference = None, False

    def on_test_start(self) -> None:
        self._start_inference()

    def on_test_end(self) -> None:
        self._end_inference()

    def on_predict_start(self) -> None:
        self._start_inference()

    def on_predict_end(self) -> None:
        self._end_inference()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.restore(batch), batch["target"])
        for stage in getattr(self.net, "stage_outputs", None) or ():  # a multi-stage net's earlier images (MPRNet)
            loss = loss + self.loss(stage, batch["target"])
        extra = getattr(self.net, "extra_loss", None)  # a net's own auxiliary term (FBCNN's quality factor)
        if extra is not None:
            loss = loss + extra
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # images (B, C, H, W); clips (B, T, C, H, W) are measured frame by frame
        output, target = self.restore(batch).flatten(0, -4), batch["target"].flatten(0, -4)
        n = len(output)
        # sync_dist: on several ranks (DDP), the mean over every rank's share, which the best checkpoint follows
        self.log("val/psnr", metrics.psnr(output, target).mean(), prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/ssim", metrics.ssim(output, target).mean(), batch_size=n, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self.test_rows = []

    def measure(self, output: torch.Tensor, degraded: torch.Tensor, target: torch.Tensor) -> dict:
        """The test columns, one value per image: the metrics of ``output`` and, as ``<name>_input``, of
        ``degraded`` against ``target``."""
        measured = metrics.evaluate(output, target, self.metric_names, **self.metric_options)
        inputs = metrics.evaluate(degraded, target, self.metric_names, **self.metric_options)
        return {**measured, **{f"{name}_input": values for name, values in inputs.items()}}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        output, target = self.restore(batch), batch["target"]
        columns = self.measure(output, batch["input"], target)
        for i in range(len(output)):
            self.test_rows.append({
                "dataset": batch["dataset"][i], "degradation": batch["degradation"][i], "image": batch["path"][i],
                "height": target.shape[-2], "width": target.shape[-1],
                **{name: float(values[i]) for name, values in columns.items()},
            })

    def on_test_epoch_end(self) -> None:
        from m3l.engine.distributed import gather_rows
        from m3l.io.tables import summarize

        # several ranks: every rank's rows, each image once (the sampler repeats some), in one process's order
        self.test_rows = gather_rows(self.test_rows)
        if isinstance(getattr(self, "frame_rows", None), list):  # a video module's per-frame rows, clip by clip
            self.frame_rows = gather_rows(self.frame_rows, order_of=self.test_rows)
        summary = summarize(self.test_rows)
        for row in summary.itertuples():
            for metric in DEFAULT_METRICS:
                self.log(f"test/{row.dataset}/{row.degradation}/{metric}", getattr(row, metric),
                         add_dataloader_idx=False)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor | None:
        if "input" not in batch:  # every image of the batch failed to load (see CorrectDataset)
            return None
        return self.restore(batch).clamp(0, 1)

    def configure_optimizers(self):
        factory = self.optimizer_factory or (lambda params: torch.optim.Adam(params, lr=1e-3))
        optimizer = factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
