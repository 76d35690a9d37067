"""torch.hub entry points for m3l's models with their pretrained weights: one per model family.

    import torch
    net = torch.hub.load("m3l/m3l", "dncnn", pretrained=True)             # from GitHub
    net = torch.hub.load("/path/to/m3l", "dncnn", source="local", pretrained=True)
    torch.hub.list("m3l/m3l")                                             # every family

The entry points are made from the registry of families (:mod:`m3l.models._registry`): each family's
``m3l/models/<family>.py`` holds its net, its weights entries (URL, sha256, known results) and the entry point's
docstring. Weights download into torch.hub's cache, are checked against their sha256 and load with
``weights_only=True``. ``pretrained`` may also be the path of a weights file or of an m3l checkpoint: the class is
the entry point's, the file's architecture arguments are checked (see :func:`m3l.hub.check_net_args`) and the net
is built on the ``meta`` device and checked against the file before it is built. Nets are returned in eval mode.
"""

dependencies = ["torch", "omegaconf"]  # omegaconf: importing m3l registers its config resolvers


def _build(family: str, pretrained, variant: str | None, **kwargs):
    from m3l import hub
    from m3l.models._registry import family as family_named

    entry = hub.find(family, variant) if pretrained is True or variant else None
    target = family_named(family).target  # the class: m3l's registry, never the file
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


def _entry_point(name: str, doc: str):
    def entry_point(pretrained=False, variant: str | None = None, **kwargs):
        return _build(name, pretrained, variant, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__doc__ = doc
    return entry_point


def _entry_points() -> dict:
    from m3l.models._registry import families

    return {name: _entry_point(name, family.doc) for name, family in families().items()}


globals().update(_entry_points())
