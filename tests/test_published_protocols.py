"""Every published number of the weights table names a row that its entry's test protocol writes.

An entry's ``metrics`` keys are ``"<test set>/<degradation>/<metric>"`` and its ``protocol`` the ``m3l.run.test``
overrides that measure them (``benchmarks/published.py`` and the published workflow run exactly those). A key
whose test set, degradation or metric the protocol does not produce is a number nothing ever compares with: the
benchmark would print "–" for it. The protocol is composed as ``m3l.run.test`` composes it and the rows it writes
are read off the config: the test sets (``data.test_sets``), the degradations (``data.test_degradations``, else
the fixed training one; real pairs: ``data.degradation``, the name in their rows; paired clips: ``real``) and the
metric columns.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from m3l.data.degradations import require_test_levels
from m3l.engine.metrics import METRICS
from m3l.hub import WEIGHTS
from m3l.run.common import open_mappings, register_search_path

PUBLISHED = sorted({(w.model, w.protocol) for w in WEIGHTS.values() if w.metrics})


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """{(model, protocol): (test sets, degradation names, metric names)} for every protocol of the table."""
    import os

    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("no_user_configs"))
    register_search_path()
    rows = {}
    with initialize_config_module("m3l.configs", version_base="1.3"):
        for model, protocol in PUBLISHED:
            overrides = open_mappings([o.replace("{data_root}", "/data") for o in protocol])
            if not any(o.startswith("data_root=") for o in overrides):
                overrides.append("++data_root=/data")
            cfg = compose("test", overrides=[f"model={model}", *overrides])
            data = cfg.data
            sets = set(data.test_sets) if data.get("test_sets") is not None else {"photos"}
            if str(data._target_).endswith("PairedFolderDataModule"):
                degradations = {data.degradation}
            elif str(data._target_).endswith("VideoFolderDataModule") and data.get("input"):
                degradations = {"real"}  # paired clips (video deblurring) are not degraded: their rows say "real"
            else:
                tests = [instantiate(d) for d in data.get("test_degradations") or []]
                degradations = {d.name for d in require_test_levels(instantiate(data.degradation), tests)}
            options = OmegaConf.to_container(cfg.metrics) if cfg.get("metrics") else {}
            metrics = {name for name, metric in METRICS.items() if metric.always or options.get(name)}
            rows[model, protocol] = sets, degradations, metrics
    return rows


@pytest.mark.parametrize("entry", [w for w in WEIGHTS.values() if w.metrics], ids=lambda w: w.name)
def test_each_published_number_is_a_row_its_protocol_writes(entry, composed):
    sets, degradations, metrics = composed[entry.model, entry.protocol]
    for key in entry.metrics:
        dataset, degradation, metric = key.split("/")
        assert dataset in sets, f"{entry.name}: {key}: its protocol tests {sorted(sets)}"
        assert degradation in degradations, f"{entry.name}: {key}: its protocol writes {sorted(degradations)}"
        assert metric in metrics, f"{entry.name}: {key}: its protocol measures {sorted(metrics)}"
