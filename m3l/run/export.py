"""Export a trained model for deployment: ``python -m m3l.run.export model=NAME checkpoint=PATH out=FILE
[format=export|onnx|torchscript]``.

Builds ``net`` from the config (so ``net.*`` overrides apply), loads the checkpoint's weights and writes
one file that runs without m3l (see :mod:`m3l.io.export`): ``format=export`` (the default, ``torch.export``,
a ``.pt2`` archive), ``format=onnx`` (an ONNX model, checked with onnxruntime) or ``format=torchscript``
(deprecated since torch 2.13). Height, width and batch stay dynamic; the file is checked against the
checkpoint on another image size before it is kept. ``python -m m3l.deploy`` (or the file ``m3l/deploy.py``
copied alone) corrects a folder with a ``.pt2`` or TorchScript file using torch and Pillow only.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from m3l.run.common import build_module, entry, load_checkpoint, require


def weights_record(cfg: DictConfig, weights: str) -> str:
    """Where the exported weights came from, for the file's metadata: a weights file by its name and sha256
    (never its absolute path, which would tell the exporting machine's folders to whoever gets the file), a
    table entry by its name."""
    from m3l.hub import WEIGHTS, sha256

    checkpoint = OmegaConf.select(cfg, "checkpoint", default=None, throw_on_missing=False)
    pretrained = OmegaConf.select(cfg, "net.pretrained", default=None, throw_on_missing=False)
    source = checkpoint if checkpoint not in (None, "???") else pretrained
    if isinstance(source, str) and source not in WEIGHTS and Path(source).is_file():
        return f"{'' if source == checkpoint else 'pretrained '}{Path(source).name} (sha256 {sha256(source)})"
    return weights


def export(cfg: DictConfig) -> str:
    import m3l
    from m3l.io.export import export_net
    from m3l.engine.restoration import RestorationModule

    require(cfg, "out")
    module = build_module(cfg)
    weights = load_checkpoint(module, cfg)  # checkpoint=PATH, or the net's pretrained weights
    net = module.net if isinstance(module, RestorationModule) else module
    difference = export_net(net, cfg.out, cfg.format, channels=cfg.channels, example_size=tuple(cfg.example_size),
                            check_size=tuple(cfg.check_size), tolerance=cfg.tolerance,
                            metadata={"name": cfg.name, "m3l": m3l.__version__,
                                      "weights": weights_record(cfg, weights)})
    size = Path(cfg.out).stat().st_size
    print(f"wrote {cfg.out} ({cfg.format}, {size / 2**20:.2f} MiB); checked on a {cfg.check_size[0]}x"
          f"{cfg.check_size[1]} image: max difference {difference:.2g}")
    return str(cfg.out)


main = entry(export, "export")

if __name__ == "__main__":
    main()
