"""Restoration architectures: plain ``nn.Module``s, loadable and exportable without Lightning or Hydra.

Installed as ``m3l.models``; each family lives in its own file and has a ``net`` config in
``configs/net/`` and a ``model`` config (its training protocol) in ``configs/model/``.
"""
