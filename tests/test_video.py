"""Video: clip reading / writing, the H.264 degradation, synthetic clips, the video nets, and the sliding window."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import perturbed
from m3l.data.degradations import GaussianNoise
from m3l.io.clips import Clip, frame_rate, list_clips, read_clip, write_clip
from m3l.data.video import H264, degrade_clip, moving_crops, reflect_index
from m3l.data.video_folders import StreamedClips, collate_chunk
from m3l.models.dncnn import DnCNN
from m3l.models.video import FastDVDnet, PerFrame
from m3l.engine.video_restoration import VideoRestorationModule


def random_clip(frames=6, channels=1, height=20, width=24, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (frames, channels, height, width)).astype(np.float32) / 255)


def test_fastdvdnet_has_the_published_parameter_count():
    count = sum(p.numel() for p in FastDVDnet(channels=3).parameters())
    assert round(count / 1e4) == 248  # 2.48M in the paper (2,479,096)


def test_fastdvdnet_restores_the_centre_frame_of_any_size():
    net = FastDVDnet(channels=1, widths=(4, 8, 8), per_frame=2).eval()
    x = torch.rand(2, 5, 1, 13, 18)
    with torch.no_grad():
        out = net(x, torch.tensor([0.1, 0.2]))
        assert out.shape == (2, 1, 13, 18)
        assert not torch.equal(out, net(x, torch.tensor([0.3, 0.2])))  # the noise map is used
    with pytest.raises(ValueError, match="5 frames"):
        net(x[:, :3], torch.tensor(0.1))


def test_per_frame_runs_the_image_net_on_the_centre_frame_with_its_side_information():
    image_net = perturbed(DnCNN(channels=1, depth=3, width=4)).eval()
    net = PerFrame(image_net)
    x = torch.rand(2, 1, 1, 16, 16)
    assert torch.equal(net(x, sigma=torch.ones(2)), image_net(x[:, 0]))  # DnCNN takes no sigma: dropped


def test_frame_folders_and_lossless_videos_round_trip(tmp_path):
    clip = random_clip(channels=3)
    write_clip(clip, tmp_path / "set" / "a", names=[f"f{i:02d}.png" for i in range(6)])
    write_clip(clip[:, :1], tmp_path / "set" / "b" / "gray.mkv", fps=Fraction(30000, 1001))
    write_clip(clip, tmp_path / "set" / "rgb.mkv", fps=24)
    assert [c.name for c in list_clips(tmp_path / "set")] == ["a", "b/gray.mkv", "rgb.mkv"]
    assert sorted(p.name for p in (tmp_path / "set" / "a").iterdir()) == [f"f{i:02d}.png" for i in range(6)]
    assert not list((tmp_path / "set").rglob(".*"))  # no temporary names left
    for name, channels in (("a", 3), ("b/gray.mkv", 1), ("rgb.mkv", 3)):
        assert torch.equal(read_clip(tmp_path / "set" / name, channels), clip[:, :channels]), name
    assert frame_rate(Clip(tmp_path / "set" / "b" / "gray.mkv", "g")) == Fraction(30000, 1001)
    assert list_clips(tmp_path / "set" / "a") == [Clip(tmp_path / "set" / "a", "a")]  # one frame folder


def test_h264_degrades_whole_clips_reproducibly_and_keeps_odd_sizes():
    clip = moving_crops(torch.rand(1, 64, 64).cumsum(2) / 64, 6, 31, 27, np.random.RandomState(0))
    degraded, side = H264(crf=35)(clip, np.random.RandomState(0))
    assert degraded.shape == clip.shape and side["crf"].shape == (6,)
    assert torch.equal(degraded, H264(crf=35)(clip, np.random.RandomState(0))[0])
    mild = H264(crf=10)(clip, np.random.RandomState(0))[0]
    assert 0 < (mild - clip).abs().mean() < (degraded - clip).abs().mean() < 0.2
    assert H264([20, 30]).name == "h264crf20-30"


def test_blind_parameters_are_drawn_per_clip_or_per_frame_and_noise_per_frame():
    clip = torch.full((4, 1, 8, 8), 0.5)
    degraded, side = degrade_clip(GaussianNoise([5, 50]), clip, np.random.RandomState(0), per_clip=True)
    assert len(set(side["sigma"].tolist())) == 1 and not torch.equal(degraded[0], degraded[1])
    _, side = degrade_clip(GaussianNoise([5, 50]), clip, np.random.RandomState(0), per_clip=False)
    assert len(set(side["sigma"].tolist())) == 4


def test_moving_crops_pan_over_the_image():
    image = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 64, 64)
    clip = moving_crops(image, 8, 16, 16, np.random.RandomState(3), max_speed=2)
    starts = [(int(f[0, 0, 0]) // 64, int(f[0, 0, 0]) % 64) for f in clip]
    for frame, (top, left) in zip(clip, starts):
        assert torch.equal(frame, image[:, top:top + 16, left:left + 16])
    assert len(set(starts)) > 1 and all(abs(a - c) <= 2 and abs(b - d) <= 2 for (a, b), (c, d) in zip(starts, starts[1:]))


def test_reflect_index_mirrors_the_clip_ends():
    assert [reflect_index(i, 5) for i in range(-2, 7)] == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert [reflect_index(i, 2) for i in range(-2, 4)] == [0, 1, 0, 1, 0, 0]


@pytest.mark.parametrize("length, chunk", [(11, 3), (4, 8), (2, 1)])
def test_sliding_window_equals_a_whole_clip_pass(tmp_path, length, chunk):
    torch.manual_seed(0)
    module = VideoRestorationModule(FastDVDnet(channels=1, widths=(4, 8, 8), per_frame=2)).eval()
    clip = random_clip(length, height=12, width=16)
    write_clip(clip, tmp_path / "clip")
    sigma = torch.tensor(25 / 255)
    with torch.no_grad():
        whole = module.restore({"input": clip[None], "side": {"sigma": sigma.expand(1, length)}})[0]
        items = list(StreamedClips(list_clips(tmp_path), 1, chunk=chunk, radius=2, side={"sigma": sigma}))
        assert all(len(item["input"]) == item["count"] + 4 <= chunk + 4 for item in items)  # bounded by the chunk
        streamed = torch.cat([module.predict_step(collate_chunk(item), 0)[0] for item in items])
    assert [item["last"] for item in items] == [False] * (len(items) - 1) + [True]
    assert sum(len(item["frame_names"]) for item in items) == length
    torch.testing.assert_close(streamed, whole.clamp(0, 1), rtol=0, atol=1e-6)


def test_a_broken_video_is_one_error_item(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    items = list(StreamedClips(list_clips(tmp_path)))
    assert len(items) == 1 and items[0]["path"] == "bad.mp4" and "error" in items[0]
    with pytest.warns(UserWarning, match="skipping bad.mp4"):
        assert collate_chunk(items[0])["skipped"] == ["bad.mp4"]


@pytest.mark.parametrize("model, small", [("fastdvdnet", ["net.widths=[4,8,8]", "net.per_frame=2"]),
                                          ("per_frame_dncnn", ["net.net.depth=3", "net.net.width=4"])])
def test_video_model_configs_train_a_step_on_the_embedded_clips(model, small, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from m3l.run.common import build_module, register_search_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("M3L_CACHE", str(tmp_path / "cache"))
    register_search_path()
    overrides = [f"model={model}", *small, "data.synthetic.count=2", "data.synthetic.size=64",
                 "data.crops_per_epoch=2", "data.train_batch_size=2", "data.num_workers=0"]
    with initialize_config_module("m3l.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    module, data = build_module(cfg), instantiate(cfg.data, _convert_="all")
    assert isinstance(module, VideoRestorationModule) and module.window == data.frames
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input"].shape == (2, data.frames, 1, data.patch_size, data.patch_size)
    assert batch["side"]["sigma"].shape == (2, data.frames)
    module.log = lambda *a, **k: None
    module.training_step(batch, 0).backward()
    assert all(p.grad is not None for p in module.parameters())


def test_a_clip_that_breaks_midway_leaves_no_output(tmp_path):
    from m3l.io.video_serializer import VideoSerializer

    write_clip(random_clip(9), tmp_path / "in" / "good")
    write_clip(random_clip(9), tmp_path / "in" / "torn")
    (tmp_path / "in" / "torn" / "00006.png").write_bytes(b"truncated")
    module = VideoRestorationModule(PerFrame(DnCNN(channels=1, depth=2, width=4))).eval()
    serializer = VideoSerializer(str(tmp_path / "out"))
    serializer.on_predict_start(None, module)
    with pytest.warns(UserWarning, match="skipping torn"), torch.no_grad():
        for item in StreamedClips(list_clips(tmp_path / "in"), chunk=2, radius=0):
            batch = collate_chunk(item)
            serializer.write_on_batch_end(None, module, module.predict_step(batch, 0), None, batch, 0)
    serializer.on_predict_end(None, module)
    assert serializer.skipped == ["torn"] and [p.name for p in serializer.written] == ["good"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good"]  # no partial clip, no temporary folder
    assert len(list((tmp_path / "out" / "good").iterdir())) == 9


def _with_running_stats(net):
    """``net`` in eval mode with non-trivial BatchNorm statistics (as after training)."""
    generator = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=generator) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return net.eval()


@pytest.mark.parametrize("channels, step", [(1, 1), (1, 3), (3, 8), (1, 100)])
def test_fastdvdnet_forward_clip_equals_the_net_on_each_window(channels, step):
    torch.manual_seed(0)
    net = _with_running_stats(FastDVDnet(channels=channels, widths=(4, 8, 8), per_frame=2))
    x, sigma = torch.rand(2, 11, channels, 13, 18), torch.tensor([0.1, 0.2])
    with torch.no_grad():
        windows = torch.stack([net(x[:, t - 2:t + 3], sigma) for t in range(2, 9)], 1)
        torch.testing.assert_close(net.forward_clip(x, sigma, step=step), windows, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 5 frames"):
        net.forward_clip(x[:, :4], sigma)


def _stage1_items(net):
    """A counter of the frame triples FastDVDnet's stage 1 is run on."""
    count = [0]
    net.stage1.register_forward_hook(lambda module, args, out: count.__setitem__(0, count[0] + out.shape[0]))
    return count


@pytest.mark.parametrize("tile", [None, 8])
def test_clip_restoration_computes_each_stage_one_output_once_and_equals_the_per_window_pass(tile):
    """Whole clips (ends mirrored), sigma as side input: the clip path equals window-by-window to 1e-6 and runs
    stage 1 once per frame triple (T + 2 of them with the mirrored ends) instead of 3 times per frame."""
    torch.manual_seed(0)
    net = _with_running_stats(FastDVDnet(channels=1, widths=(4, 8, 8), per_frame=2))
    module = VideoRestorationModule(net, windows_per_step=3).eval()
    module.tiling = None if tile is None else (tile, 8)
    batch = {"input": torch.rand(2, 9, 1, 12, 16), "side": {"sigma": torch.tensor([[0.1], [0.2]]).expand(2, 9)}}
    count = _stage1_items(net)
    with torch.no_grad():
        reused = module.restore(batch)
        reused_items, count[0] = count[0], 0
        module.reuse = False
        windows = module.restore(batch)
    assert reused.shape == (2, 9, 1, 12, 16)
    torch.testing.assert_close(reused, windows, rtol=0, atol=1e-6)
    tiles = 1 if tile is None else 4
    assert reused_items == 2 * (9 + 2) * tiles and count[0] == 3 * 2 * 9 * tiles


def test_per_frame_noise_levels_keep_the_per_window_pass():
    """A noise level that changes along the clip: each window keeps its centre frame's (no reuse, same output)."""
    torch.manual_seed(0)
    net = _with_running_stats(FastDVDnet(channels=1, widths=(4, 8, 8), per_frame=2))
    module = VideoRestorationModule(net).eval()
    batch = {"input": torch.rand(1, 6, 1, 8, 8), "side": {"sigma": torch.linspace(0.05, 0.2, 6)[None]}}
    count = _stage1_items(net)
    with torch.no_grad():
        out = module.restore(batch)
        assert count[0] == 3 * 6
        clip, sigma = batch["input"][0], batch["side"]["sigma"][0]
        centre = torch.stack([net(clip[[reflect_index(i, 6) for i in range(t - 2, t + 3)]][None], sigma[t:t + 1])
                              for t in range(6)], 1)
    torch.testing.assert_close(out, centre, rtol=0, atol=1e-6)
