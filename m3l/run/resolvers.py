"""OmegaConf resolvers registered when m3l is imported.

Arithmetic for configs such as the cluster example ``mem_gb: ${m3l.mul:${.tasks_per_node},32}``:

===============  ==========================  ==============
resolver         example                     value
===============  ==========================  ==============
``m3l.mul``      ``${m3l.mul:4,32}``         ``128``
``m3l.add``      ``${m3l.add:1,2,3}``        ``6``
``m3l.sub``      ``${m3l.sub:10,3}``         ``7``
``m3l.div``      ``${m3l.div:10,4}``         ``2.5``
``m3l.floordiv`` ``${m3l.floordiv:10,4}``    ``2``
``m3l.max``      ``${m3l.max:1,5}``          ``5``
``m3l.min``      ``${m3l.min:1,5}``          ``1``
===============  ==========================  ==============
"""

from __future__ import annotations

import functools
import math
import operator

from omegaconf import OmegaConf


def _fold(op):
    def resolve(*args):
        return functools.reduce(op, args)

    return resolve


RESOLVERS = {
    "m3l.mul": lambda *args: math.prod(args),
    "m3l.add": lambda *args: sum(args),
    "m3l.sub": _fold(operator.sub),
    "m3l.div": _fold(operator.truediv),
    "m3l.floordiv": _fold(operator.floordiv),
    "m3l.max": lambda *args: max(args),
    "m3l.min": lambda *args: min(args),
}


def register() -> None:
    """Register every m3l resolver once (safe to call again)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
