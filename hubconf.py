"""torch.hub entry points for m3l's models with their pretrained weights.

    import torch
    net = torch.hub.load("m3l/m3l", "dncnn", pretrained=True)             # from GitHub
    net = torch.hub.load("/path/to/m3l", "dncnn", source="local", pretrained=True)

Weights come from the table in ``m3l/hub.py`` (URL, sha256, known results), download into torch.hub's
cache, are checked against their sha256 and load with ``weights_only=True``. ``pretrained`` may also be
the path of a weights file or of an m3l checkpoint: the class is the entry point's, the file's architecture
arguments are checked (see :func:`m3l.hub.check_net_args`) and the net is built on the ``meta`` device and
checked against the file before it is built. Nets are returned in eval mode.
"""

dependencies = ["torch", "omegaconf"]  # omegaconf: importing m3l registers its config resolvers


def _build(family: str, pretrained, variant: str | None, **kwargs):
    from m3l import hub

    entry = hub.find(family, variant) if pretrained is True or variant else None
    target = entry.target if entry else hub.find(family).target  # the class: m3l's table, never the file
    args = dict(entry.net) if entry else {}
    converted = None
    if pretrained not in (None, False, True) and not entry:  # a weights file: its layout gives the architecture
        converted = hub.convert_file(pretrained, target)
        if converted.target and converted.target != target:
            raise hub.M3LError(f"pretrained {pretrained} holds weights of {converted.target}, not of {target}: "
                               f"use the entry point of that net")
        args = converted.net_args
    cls = hub.net_class(target, f"{family}", trusted=target)
    arguments = {**args, **kwargs}
    net = hub.build_checked(lambda: cls(**arguments), converted.state if converted else None,
                            str(pretrained), arguments)
    if entry or converted:
        hub.load_pretrained(net, entry or converted)
    return net.eval()


def dncnn(pretrained=False, variant: str | None = None, **kwargs):
    """DnCNN (Zhang et al. 2017). ``pretrained=True``: KAIR's copy of the authors' gray sigma-25 DnCNN-S
    (Set12 30.44 dB, BSD68 29.23 dB); ``variant``: ``sigma15`` / ``sigma25`` / ``sigma50`` (the authors'
    MatConvNet files), ``dncnn_b_gray_blind``, ``dncnn_color_blind``, ``dncnn3_matconvnet``, ... (m3l/hub.py);
    or a weights file's path (its layout gives the architecture). ``kwargs`` go to
    ``m3l.models.dncnn.DnCNN`` (channels, depth, width, batch_norm)."""
    return _build("dncnn", pretrained, variant, **kwargs)


def ffdnet(pretrained=False, variant: str | None = None, **kwargs):
    """FFDNet (Zhang et al. 2018), ``net(x, sigma)`` with sigma on the [0, 1] scale. ``pretrained=True``: the
    authors' gray MatConvNet file (Set12 32.75 / 30.43 / 27.32 dB at sigma 15 / 25 / 50); ``variant="color"``."""
    return _build("ffdnet", pretrained, variant, **kwargs)


def drunet(pretrained=False, variant: str | None = None, **kwargs):
    """DRUNet (Zhang et al. 2021, DPIR), ``net(x, sigma)``. ``pretrained=True``: KAIR's ``drunet_gray.pth``
    (Set12 33.25 / 30.94 / 27.90 dB); ``variant="color"``."""
    return _build("drunet", pretrained, variant, **kwargs)


def fbcnn(pretrained=False, variant: str | None = None, **kwargs):
    """FBCNN (Jiang et al. 2021), blind JPEG artifact removal. ``pretrained=True``: ``fbcnn_gray.pth``;
    ``variant="color"`` or ``"gray_double"``."""
    return _build("fbcnn", pretrained, variant, **kwargs)


def nafnet(pretrained=False, variant: str | None = None, **kwargs):
    """NAFNet (Chen et al. 2022). ``pretrained=True``: NAFNet-GoPro-width32 (deblurring, GoPro 32.87 dB);
    ``variant``: ``gopro_width64``, ``sidd_width32``, ``sidd_width64`` (denoising)."""
    return _build("nafnet", pretrained, variant, **kwargs)


def restormer(pretrained=False, variant: str | None = None, **kwargs):
    """Restormer (Zamir et al. 2022). ``pretrained=True``: motion deblurring (GoPro 32.92 dB); ``variant``:
    ``real_denoising``, ``gaussian_gray_blind``, ``gaussian_color_blind``."""
    return _build("restormer", pretrained, variant, **kwargs)


def fastdvdnet(pretrained=False, variant: str | None = None, **kwargs):
    """FastDVDnet (Tassano et al. 2020), video denoising over 5 frames with a noise map. ``pretrained=True``:
    the authors' ``model.pth`` (DAVIS 38.71 ... 31.86 dB at sigma 10 ... 50)."""
    return _build("fastdvdnet", pretrained, variant, **kwargs)
