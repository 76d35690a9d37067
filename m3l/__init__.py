"""m3l: MultiMedia and Machine Learning.

Train, test, correct and deploy image restoration models with PyTorch Lightning, configured by Hydra::

    python -m m3l.run.train model=dncnn
    python -m m3l.run.test model=dncnn checkpoint=PATH
    python -m m3l.run.correct model=dncnn checkpoint=PATH data.correct_dir=IN serializer.root_dir=OUT

Importing m3l is cheap (no torch): it only registers the ``m3l.*`` OmegaConf resolvers.
"""

from m3l.run import resolvers as _resolvers

_resolvers.register()

__version__ = "0.1.0.dev0"
