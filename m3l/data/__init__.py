"""Data modules, datasets and degradations (installed as ``m3l.data``)."""
