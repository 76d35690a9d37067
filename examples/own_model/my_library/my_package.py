"""A user's own restoration network and dataset, outside m3l: the README's "your own model" example.

m3l needs nothing from them but the Lightning contracts:
- the LightningModule logs ``val/psnr`` (m3l keeps the checkpoint with the best one), and its
  ``predict_step`` returns restored images in [0, 1];
- the LightningDataModule takes ``correct_dir`` and its ``predict_dataloader`` yields dicts with
  ``input`` (the image) and ``path`` (its name relative to ``correct_dir``), which m3l's image
  serializer uses to name the outputs.
"""

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


class MyRestorationNetwork(pl.LightningModule):
    """A small residual CNN denoiser: ``n_layers`` 3x3 convolutions of ``width`` channels."""

    def __init__(self, n_layers: int = 10, width: int = 50, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(n_layers - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x):
        return x - self.body(x)

    def training_step(self, batch, batch_idx):
        loss = F.mse_loss(self(batch["input"]), batch["target"])
        self.log("train/loss", loss)
        return loss

    def _psnr(self, batch):
        mse = F.mse_loss(self(batch["input"]).clamp(0, 1), batch["target"])
        return 10 * torch.log10(1 / mse)

    def validation_step(self, batch, batch_idx):
        self.log("val/psnr", self._psnr(batch), batch_size=1)

    def test_step(self, batch, batch_idx):
        self.log("test/psnr", self._psnr(batch), batch_size=1)

    def predict_step(self, batch, batch_idx):
        return self(batch["input"]).clamp(0, 1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def load_gray(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("L"), dtype=np.float32) / 255)[None]


class NoisyImages(Dataset):
    """Clean images with Gaussian noise (fixed per image for evaluation, fresh patches for training)."""

    def __init__(self, files, sigma, patch=None, length=None):
        self.files, self.sigma, self.patch = files, sigma / 255, patch
        self.length = length or len(files)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        clean = load_gray(self.files[i % len(self.files)])
        if self.patch:  # random crop for training
            top = np.random.randint(clean.shape[1] - self.patch + 1)
            left = np.random.randint(clean.shape[2] - self.patch + 1)
            clean = clean[:, top:top + self.patch, left:left + self.patch]
            noise = torch.randn_like(clean)
        else:
            noise = torch.from_numpy(np.random.RandomState(i).randn(*clean.shape).astype(np.float32))
        return {"input": clean + self.sigma * noise, "target": clean}


class ImagesToCorrect(Dataset):
    def __init__(self, files, root):
        self.files, self.root = files, Path(root)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        name = self.files[i].name if self.root.is_file() else str(self.files[i].relative_to(self.root))
        return {"input": load_gray(self.files[i]), "path": name}


# A first run needs no data of your own: scikit-image's sample photos (installed with m3l).
SAMPLE_PHOTOS = ["camera.png", "astronaut.png", "coffee.png", "chelsea.png", "brick.png", "grass.png"]


def images_in(folder, what="data.root_dir"):
    """The PNG images of ``folder`` (or the one image it names); ``None``: scikit-image's sample photos."""
    if folder is None:
        import skimage

        return [Path(skimage.data_dir) / name for name in SAMPLE_PHOTOS]
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.png"))
    if not files:  # m3l prints an M3LError as one line naming what to fix, and exits with status 2
        from m3l.errors import M3LError

        raise M3LError(f"{what}: no PNG images in {folder} (pass {what}=<folder of PNG images>)")
    return files


class MyDataset(pl.LightningDataModule):
    """PNG images in ``root_dir`` (``None``: scikit-image's sample photos): the first one validates and tests, the
    others train."""

    def __init__(self, root_dir=None, train_batch_size=32, num_workers=1, sigma=25, patch_size=32, correct_dir=None):
        super().__init__()
        self.root_dir, self.batch, self.workers = root_dir, train_batch_size, num_workers
        self.sigma, self.patch, self.correct_dir = sigma, patch_size, correct_dir

    def _loader(self, dataset, batch_size=1):
        return DataLoader(dataset, batch_size=batch_size, num_workers=self.workers)

    def train_dataloader(self):
        files = images_in(self.root_dir)
        return self._loader(NoisyImages(files[1:], self.sigma, self.patch, 8 * self.batch), self.batch)

    def val_dataloader(self):
        return self._loader(NoisyImages(images_in(self.root_dir)[:1], self.sigma))

    test_dataloader = val_dataloader

    def predict_dataloader(self):
        return self._loader(ImagesToCorrect(images_in(self.correct_dir, "data.correct_dir"), self.correct_dir))
