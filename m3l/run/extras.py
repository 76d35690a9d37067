"""Optional dependencies: m3l's core trains, tests and corrects; the rest come as pip extras.

===============  ============================================  ========================================
extra            what it brings                                what needs it
===============  ============================================  ========================================
``workflow``     snakemake, matplotlib                         ``snakemake ...`` (workflow/), plots
``slurm``        workflow + snakemake-executor-plugin-slurm,   ``snakemake --profile vulcan``,
                 hydra-submitit-launcher                       ``cluster=NAME``
``wandb``        wandb                                         ``logger=wandb``
``tensorboard``  tensorboard                                   ``logger=tensorboard``
``optuna``       hydra-optuna-sweeper, optuna 2                ``hparams_search=NAME``
``video``        av (PyAV)                                     video files (clips as frame folders
                                                               need nothing)
``onnx``         onnx, onnxruntime, onnxscript                 ``python -m m3l.run.export format=onnx``
``all``          every extra above
``dev``          all + pytest, snakefmt, lightning             the test suite
===============  ============================================  ========================================

Code that needs an extra imports it through :func:`require`, so a missing one is a single line naming the
``pip install`` to run instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from m3l.errors import M3LError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`M3LError` saying ``purpose needs MODULE: pip install "m3l[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        parts = module.split(".")
        name = parts[1] if parts[0] == "hydra_plugins" and len(parts) > 1 else parts[0]  # a Hydra plugin's own name
        raise M3LError(f'{purpose} needs {name}, which is not installed: pip install "m3l[{extra}]"') from None
