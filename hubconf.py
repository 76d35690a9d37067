"""torch.hub entry points for m3l's models with their pretrained weights.

    import torch
    net = torch.hub.load("m3l/m3l", "dncnn", pretrained=True)             # from GitHub
    net = torch.hub.load("/path/to/m3l", "dncnn", source="local", pretrained=True)

Weights come from the table in ``m3l/hub.py`` (URL, sha256, known results), download into torch.hub's
cache, are checked against their sha256 and load with ``weights_only=True``. ``pretrained`` may also be
the path of a weights file or of an m3l checkpoint. Nets are returned in eval mode.
"""

dependencies = ["torch", "omegaconf"]  # omegaconf: importing m3l registers its config resolvers


def _build(model: str, pretrained, variant: str | None, **kwargs):
    import importlib

    from m3l import hub

    entry = hub.find(model, variant) if pretrained is True or variant else None
    target = entry.target if entry else hub.find(model).target
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:  # a checkout that is not pip-installed: m3l.models is the repository's models/
        cls = getattr(importlib.import_module(module.replace("m3l.models", "models", 1)), name)
    net = cls(**{**(entry.net if entry else {}), **kwargs})
    if pretrained is not False and pretrained is not None:
        hub.load_pretrained(net, entry if entry else pretrained)
    return net.eval()


def dncnn(pretrained=False, variant: str | None = None, **kwargs):
    """DnCNN (Zhang et al. 2017). ``pretrained=True``: the authors' gray sigma-25 weights (variant
    ``kair_sigma25``: Set12 30.44 dB, BSD68 29.23 dB); or a weights file's path. ``kwargs`` go to
    ``m3l.models.dncnn.DnCNN`` (channels, depth, width, batch_norm)."""
    return _build("dncnn", pretrained, variant, **kwargs)
