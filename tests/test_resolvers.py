import pytest
from omegaconf import OmegaConf

import m3l  # noqa: F401  (registers the resolvers)


@pytest.mark.parametrize("expression, value", [
    ("${m3l.mul:4,32}", 128), ("${m3l.mul:2,3,4}", 24), ("${m3l.add:1,2,3}", 6), ("${m3l.sub:10,3}", 7),
    ("${m3l.div:10,4}", 2.5), ("${m3l.floordiv:10,4}", 2), ("${m3l.max:1,5}", 5), ("${m3l.min:1,5}", 1),
])
def test_arithmetic(expression, value):
    assert OmegaConf.create({"x": expression}).x == value


def test_relative_interpolation_as_in_the_cluster_example():
    cfg = OmegaConf.create({"launcher": {"tasks_per_node": 4, "mem_gb": "${m3l.mul:${.tasks_per_node},32}"}})
    assert cfg.launcher.mem_gb == 128
