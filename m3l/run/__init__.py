"""Entry points: ``python -m m3l.run.train``, ``m3l.run.test`` and ``m3l.run.correct``."""
