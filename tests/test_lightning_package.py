"""m3l.engine.lightning_package: a ``lightning.pytorch`` module or data module, given a class that is also
``pytorch_lightning``'s (the own-model route runs it end to end: tests/test_own_model.py)."""

import copy
import pickle

import pytest
import pytorch_lightning as pl
import torch

from m3l.engine.lightning_package import as_pytorch_lightning

L = pytest.importorskip("lightning.pytorch")


class Net(L.LightningModule):
    def __init__(self, width: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, width)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()


class Data(L.LightningDataModule):
    def __init__(self, size: int = 5):
        super().__init__()
        self.size = size


@pytest.mark.parametrize("copier", [lambda obj: pickle.loads(pickle.dumps(obj)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_a_lightning_object_pickles_and_copies_as_the_same_twin(copier):
    """strategy=ddp_spawn and spawned workers pickle the module and data module: the copy is the same twin."""
    net, data = as_pytorch_lightning(Net(width=4)), as_pytorch_lightning(Data(size=7))
    assert isinstance(net, pl.LightningModule) and isinstance(net, L.LightningModule) and type(net).__name__ == "Net"
    assert isinstance(data, pl.LightningDataModule) and isinstance(data, L.LightningDataModule)
    net_copy, data_copy = copier(net), copier(data)
    assert type(net_copy) is type(net) and type(data_copy) is type(data)
    assert net_copy.hparams["width"] == 4 and torch.equal(net_copy.layer.weight, net.layer.weight)
    assert data_copy.size == 7


def test_a_pytorch_lightning_object_is_left_as_it_is():
    class Plain(pl.LightningModule):
        pass

    net = Plain()
    assert as_pytorch_lightning(net) is net and type(net) is Plain
