"""ensemble=x8: the geometric self-ensemble of m3l.engine.ensemble, in RestorationModule and through m3l.run.test."""

import pandas as pd
import pytest
import torch
from torch import nn

from m3l.engine.ensemble import ensembled, parse
from m3l.errors import M3LError
from m3l.engine.restoration import RestorationModule

# The dihedral group of the square written out by hand: (transform, its inverse).
D4 = [
    (lambda x: x, lambda y: y),
    (lambda x: torch.rot90(x, 1, (-2, -1)), lambda y: torch.rot90(y, -1, (-2, -1))),
    (lambda x: torch.rot90(x, 2, (-2, -1)), lambda y: torch.rot90(y, 2, (-2, -1))),
    (lambda x: torch.rot90(x, 3, (-2, -1)), lambda y: torch.rot90(y, 1, (-2, -1))),
    (lambda x: x.flip(-1), lambda y: y.flip(-1)),
    (lambda x: x.flip(-2), lambda y: y.flip(-2)),
    (lambda x: x.transpose(-2, -1), lambda y: y.transpose(-2, -1)),
    (lambda x: x.flip(-2, -1).transpose(-2, -1), lambda y: y.flip(-2, -1).transpose(-2, -1)),
]


class Skewed(nn.Module):
    """A small random conv net, far from flip / rotation equivariant (asymmetric kernels, a position ramp)."""

    def __init__(self, ramp: bool = True):
        super().__init__()
        self.ramp = ramp
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, (1, 5), padding=(0, 2)))

    def forward(self, x):
        ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x) if self.ramp else 0
        return self.body(x) + ramp


@torch.no_grad()
def test_x8_of_a_random_net_is_the_mean_of_the_8_hand_transformed_passes():
    net = Skewed().eval()
    x = torch.rand(2, 1, 12, 17)  # not square: rotated passes see 17 x 12 images
    expected = torch.stack([inverse(net(forward(x))) for forward, inverse in D4]).mean(0)
    module = RestorationModule(net).eval()
    module.ensemble = "x8"
    output = module.restore({"input": x, "side": {}})
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    assert (output - net(x)).abs().max() > 1e-3  # the ensemble is not the plain pass


@torch.no_grad()
def test_x8_of_an_equivariant_op_is_the_op():
    box = lambda x: nn.functional.avg_pool2d(x, 3, stride=1, padding=1) * 2 + x**2  # noqa: E731
    x = torch.rand(1, 3, 9, 14)
    torch.testing.assert_close(ensembled(box, x), box(x), atol=1e-6, rtol=0)
    assert ensembled(lambda t: (t * 0.3).bfloat16(), x).dtype == torch.float32  # bf16 outputs: a float32 mean
    shift = lambda x: torch.roll(x, 1, -1)  # noqa: E731  (not equivariant: the test can fail)
    assert (ensembled(shift, x) - shift(x)).abs().max() > 1e-2


@torch.no_grad()
def test_spatial_side_maps_turn_with_the_image_and_scalars_stay():
    x, level = torch.rand(2, 1, 6, 11), torch.rand(2, 1, 6, 11)
    quality = torch.tensor([0.1, 0.9])
    times = lambda x, level, quality: x * level + quality.view(-1, 1, 1, 1)  # noqa: E731
    torch.testing.assert_close(ensembled(times, x, {"level": level, "quality": quality}),
                               times(x, level, quality), atol=1e-6, rtol=0)


@torch.no_grad()
def test_ensemble_composes_with_tiling():
    net = Skewed(ramp=False).eval()  # translation invariant: tiles can be exact
    x = torch.rand(1, 1, 30, 26)
    module = RestorationModule(net).eval()
    module.ensemble = "x8"
    whole = module.restore({"input": x, "side": {}})
    module.tiling = (8, 4)  # overlap >= the net's receptive-field radius (3): tiles are exact
    torch.testing.assert_close(module.restore({"input": x, "side": {}}), whole, atol=1e-5, rtol=0)


@torch.no_grad()
def test_video_nets_turn_every_frame_in_both_clip_paths():
    """FastDVDnet on a clip with ensemble=x8: every frame flipped / rotated, in the clip path (forward_clip, one
    sigma a clip) and window by window alike, and equal to the mean of 8 hand-transformed plain passes."""
    from m3l.models.video import FastDVDnet
    from m3l.engine.video_restoration import VideoRestorationModule

    torch.manual_seed(0)
    module = VideoRestorationModule(FastDVDnet(channels=1, widths=(4, 8, 8), per_frame=2), windows_per_step=3).eval()
    clip, sigma = torch.rand(1, 6, 1, 8, 12), torch.full((1, 6), 0.1)
    expected = torch.stack([inverse(module.restore({"input": forward(clip), "side": {"sigma": sigma}}))
                            for forward, inverse in D4]).mean(0)
    module.ensemble = "x8"
    reused = module.restore({"input": clip, "side": {"sigma": sigma}})
    module.reuse = False
    torch.testing.assert_close(reused, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(module.restore({"input": clip, "side": {"sigma": sigma}}), expected, atol=1e-5, rtol=0)


def test_unknown_value_names_the_key_and_the_allowed_ones():
    assert parse(None) is None and parse("none") is None and parse("x8") == "x8"
    with pytest.raises(M3LError, match=r"^ensemble: unknown value 'x4'; allowed: x8"):
        parse("x4")


@pytest.mark.slow
def test_run_test_with_x8_writes_metrics(run_m3l, tmp_path, tiny_checkpoint):
    from conftest import write_images

    write_images(tmp_path / "set", {"a.png": (30, 22), "b.png": (21, 21)})
    common = ["model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}", "data.num_workers=0",
              "data.test_sets={s: set}"]
    run_m3l("test", *common, "hydra.run.dir=plain")
    run_m3l("test", *common, "hydra.run.dir=x8", "ensemble=x8", "tile=16", "tile_overlap=4")
    plain, x8 = (pd.read_csv(tmp_path / d / "per_image.csv") for d in ("plain", "x8"))
    assert len(x8) == 2 and x8.psnr.notna().all()
    assert (x8.psnr - plain.psnr).abs().max() > 1e-4  # the ensemble ran: other outputs, other numbers
    assert (x8.psnr_input == plain.psnr_input).all()
    summary = pd.read_csv(tmp_path / "x8" / "metrics.csv")
    assert summary.n_images.tolist() == [2]
    bad = run_m3l("test", *common, "ensemble=x4", check=False)
    assert bad.returncode == 2 and "ensemble: unknown value 'x4'; allowed: x8" in bad.stderr
