"""Pretrained weights: torch.hub entry points, the weights table, checksums, and net.pretrained in configs.

Nothing is downloaded from the internet: the tests write weights files and serve them as file:// URLs
through the real download path (torch.hub.download_url_to_file) into a private TORCH_HOME.
"""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module

from conftest import REPO
from m3l import hub
from m3l.errors import M3LError
from m3l.models._registry import families
from m3l.models.dncnn import DnCNN
from m3l.run.common import build_module, register_search_path

class Payload:  # any object a pickle could carry: weights_only must refuse it
    pass


ARCH = {"channels": 1, "depth": 3, "width": 4, "batch_norm": False}


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A tiny DnCNN stored as its authors would (KAIR's model.<i>.* keys), in a table of its own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    torch.manual_seed(0)
    net = DnCNN(**ARCH).eval()
    path = tmp_path / "server" / "dncnn_tiny.pth"
    path.parent.mkdir()
    torch.save({k.replace("body.", "model.", 1): v for k, v in net.state_dict().items()}, path)
    entry = hub.Weights(model="dncnn", variant="tiny", url=path.as_uri(), sha256=hub.sha256(path),
                        target="m3l.models.dncnn.DnCNN", net=ARCH, layout="kair_dncnn",
                        metrics={"set12/gaussian_25/psnr": 0.0}, source="this test")
    monkeypatch.setattr(hub, "WEIGHTS", {entry.name: entry})
    return net, entry


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_torch_hub_load_local_downloads_converts_and_caches(published, tmp_path):
    net, entry = published
    loaded = torch.hub.load(str(REPO), "dncnn", source="local", pretrained=True)
    assert isinstance(loaded, torch.nn.Module) and not loaded.training
    assert same_weights(loaded, net)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / f"dncnn_tiny-{entry.sha256[:8]}.pth"
    assert cached.is_file()
    x = torch.rand(1, 1, 19, 23)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # Served from the cache afterwards: the "server" file can go.
    (tmp_path / "server" / "dncnn_tiny.pth").unlink()
    assert same_weights(torch.hub.load(str(REPO), "dncnn", source="local", pretrained=True, variant="tiny"), net)


def test_torch_hub_load_without_weights_and_from_a_file(published, tmp_path):
    net, _ = published
    plain = torch.hub.load(str(REPO), "dncnn", source="local")
    assert sum(p.numel() for p in plain.parameters()) == 556_097  # the paper's DnCNN-S, untrained
    torch.save(net.state_dict(), tmp_path / "mine.pth")
    mine = torch.hub.load(str(REPO), "dncnn", source="local", pretrained=str(tmp_path / "mine.pth"), **ARCH)
    assert same_weights(mine, net)


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(published, tmp_path, monkeypatch):
    _, entry = published
    wrong = hub.Weights(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setattr(hub, "WEIGHTS", {wrong.name: wrong})
    with pytest.raises(M3LError, match="does not have the expected sha256"):
        torch.hub.load(str(REPO), "dncnn", source="local", pretrained=True)
    assert not list((tmp_path / "torch_home" / "hub" / "checkpoints").glob("*.pth"))


def test_a_corrupted_cache_file_is_downloaded_again(published, tmp_path):
    net, entry = published
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / entry.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert same_weights(hub.load_pretrained(DnCNN(**ARCH), entry.name), net)
    assert hub.sha256(cached) == entry.sha256


def test_unreachable_url_and_unsafe_files_are_one_line_errors(published, tmp_path, monkeypatch):
    _, entry = published
    gone = hub.Weights(**{**entry.__dict__, "url": (tmp_path / "nowhere.pth").as_uri()})
    with pytest.raises(M3LError, match="cannot download"):
        hub.load_pretrained(DnCNN(**ARCH), gone)

    torch.save({"weights": Payload()}, tmp_path / "pickled.pth")
    with pytest.raises(M3LError, match="refused"):
        hub.load_pretrained(DnCNN(**ARCH), tmp_path / "pickled.pth")
    with pytest.raises(M3LError, match="does not fit DnCNN"):
        hub.load_pretrained(DnCNN(channels=1, depth=3, width=8, batch_norm=False), entry.name)


def test_an_entry_shared_in_a_folder_asks_for_a_download_by_hand(published, tmp_path, monkeypatch):
    """A Drive / SharePoint folder link is a web page: downloading it would record the page's sha256 as the file's."""
    _, entry = published
    folder = hub.Weights(**{**entry.__dict__, "url": "https://drive.google.com/drive/folders/abc", "file": "x.pth"})
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded a folder page"))
    with pytest.raises(M3LError) as error:
        hub.download(folder)
    message = str(error.value)
    assert "\n" not in message and "x.pth" in message and "by hand" in message and "net.pretrained=PATH" in message
    from m3l.models._registry import families

    manual = {w.name for family in families().values() for w in family.weights if w.manual}
    assert {"retinexformer_lol_v1", "kbnet_sidd"} <= manual and "dncnn_sigma25" not in manual


def test_the_table_is_complete():
    from importlib.resources import files

    from m3l.models._layouts import all_layouts
    from m3l.models._registry import families

    known = all_layouts()
    models = {p.name[:-5] for p in (files("m3l.configs") / "model").iterdir()}
    for name, entry in hub.WEIGHTS.items():
        assert name == f"{entry.model}_{entry.variant}" and entry.model in models
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert entry.url.startswith("https://") and entry.layout in known and entry.source
        assert known[entry.layout].target == entry.target  # the layout converts to the entry's net
        assert not entry.protocol or entry.metrics  # a protocol measures published numbers
        assert all(len(key.split("/")) == 3 for key in entry.metrics)
    # every family with weights is a hubconf entry point, and the table is the registry's (no entry elsewhere)
    assert {entry.family for entry in hub.WEIGHTS.values()} <= set(families())
    assert [w.name for f in families().values() for w in f.weights] == list(hub.WEIGHTS)
    hubconf = __import__("hubconf")
    assert all(callable(getattr(hubconf, family)) and getattr(hubconf, family).__doc__ == families()[family].doc
               for family in families())


def test_an_unchecked_entry_records_its_first_download_and_checks_later_ones(published, tmp_path, capsys):
    net, entry = published
    unchecked = hub.Weights(**{**entry.__dict__, "sha256": None})
    assert same_weights(hub.load_pretrained(DnCNN(**ARCH), unchecked), net)
    record = tmp_path / "torch_home" / "hub" / "checkpoints" / hub.RECORDED
    assert json.loads(record.read_text()) == {entry.url: entry.sha256}
    assert f"recorded {entry.sha256}" in capsys.readouterr().out
    cached = record.parent / "dncnn_tiny.pth"
    cached.write_bytes(b"truncated")  # a damaged cache is downloaded again and checked against the record
    assert same_weights(hub.load_pretrained(DnCNN(**ARCH), unchecked), net)
    cached.unlink()
    torch.save(DnCNN(**ARCH).state_dict(), tmp_path / "server" / "dncnn_tiny.pth")  # the server's file changed
    with pytest.raises(M3LError, match="does not have the recorded .* sha256"):
        hub.load_pretrained(DnCNN(**ARCH), unchecked)
    assert not cached.exists()


FAMILIES = families()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_torch_hub_load_every_family(family, tmp_path, monkeypatch):
    """Each family of the registry is a torch.hub entry point that loads its weights entry and a weights file
    (its tiny settings: a new family is tested here without editing this test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    found = FAMILIES[family]
    arch = {"channels": 1, **found.tiny}
    torch.manual_seed(0)
    net = found.net(**arch).eval()
    path = tmp_path / f"{family}.pth"
    hub.write(hub.Converted("", "m3l", found.target, net.state_dict(), arch), path)
    entry = hub.Weights(model=family, variant="tiny", url=path.as_uri(), sha256=None, target=found.target, net=arch)
    monkeypatch.setattr(hub, "WEIGHTS", {entry.name: entry})
    loaded = torch.hub.load(str(REPO), family, source="local", pretrained=True)
    assert type(loaded) is type(net) and not loaded.training and same_weights(loaded, net)
    assert same_weights(torch.hub.load(str(REPO), family, source="local", pretrained=str(path)), net)


def compose_train(overrides):
    register_search_path()
    with initialize_config_module("m3l.configs", version_base="1.3"):
        return compose("train", overrides=["model=dncnn", *overrides])


@pytest.mark.parametrize("pretrained", ["true", "dncnn_tiny"])
def test_net_config_starts_from_table_weights(published, pretrained):
    net, _ = published
    # The entry's architecture replaces the config's (batch_norm, depth, width): one override is enough.
    module = build_module(compose_train([f"net.pretrained={pretrained}"]))
    assert same_weights(module.net, net)


def test_net_config_starts_from_a_weights_file(published, tmp_path):
    net, _ = published
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "run.ckpt")
    module = build_module(compose_train([f"net.pretrained={tmp_path / 'run.ckpt'}", "net.depth=3", "net.width=4",
                                         "net.batch_norm=false"]))
    assert same_weights(module.net, net)
    with pytest.raises(M3LError, match="does not fit DnCNN"):
        build_module(compose_train([f"net.pretrained={tmp_path / 'run.ckpt'}"]))


@pytest.mark.slow
def test_pretrained_weights_are_one_override_for_test_and_export(run_m3l, tmp_path):
    torch.manual_seed(0)
    net = DnCNN(**ARCH).eval()
    torch.save(net.state_dict(), tmp_path / "published.pth")
    arch = ["net.depth=3", "net.width=4", "net.batch_norm=false", f"net.pretrained={tmp_path / 'published.pth'}"]
    result = run_m3l("test", "model=dncnn", *arch, "data.num_workers=0", "trainer.enable_progress_bar=false",
                     "hydra.run.dir=test_run")
    assert (tmp_path / "test_run" / "metrics.csv").is_file() and "pretrained" in result.stdout
    run_m3l("export", "model=dncnn", *arch, "out=net.pt2", "hydra.run.dir=export_run")
    program = torch.export.load(str(tmp_path / "net.pt2")).module()
    x = torch.rand(1, 1, 30, 41)
    with torch.no_grad():
        assert torch.allclose(program(x), net(x), atol=1e-6)


def test_release_writes_the_net_weights_alone(published, tmp_path, capsys):
    net, _ = published
    checkpoint = {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "epoch": 3,
                  "optimizer_states": [{"lr": 0.1}],
                  "m3l_config": {"name": "dncnn", "net": {"_target_": "m3l.models.dncnn.DnCNN", **ARCH, "pretrained": None}}}
    torch.save(checkpoint, tmp_path / "best.ckpt")
    assert hub.main([str(tmp_path / "best.ckpt"), str(tmp_path / "release" / "w.pth")]) == 0
    weights = torch.load(tmp_path / "release" / "w.pth", weights_only=True)
    assert weights["state_dict"].keys() == net.state_dict().keys() and weights["m3l_layout"] == 1
    assert weights["m3l_target"] == "m3l.models.dncnn.DnCNN" and weights["m3l_net_args"]["depth"] == 3
    assert f"sha256: {hub.sha256(tmp_path / 'release' / 'w.pth')}" in capsys.readouterr().out
    assert same_weights(hub.load_pretrained(DnCNN(**ARCH), tmp_path / "release" / "w.pth"), net)
    assert hub.main([str(tmp_path / "missing.ckpt"), str(tmp_path / "x.pth")]) == 2


def test_entries_released_under_one_name_cache_apart_and_an_unpinned_entry_refuses_another_file(tmp_path, monkeypatch):
    """Two entries whose files are both released as model.pth (FastDVDnet's habit) each cache under a name of
    their own (<entry>.<ext>, <entry>-<sha8>.<ext> when pinned) and each loads its own weights; an entry without a
    pinned sha256 keeps the hash of its first download and refuses a different file later, in one line."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    nets, entries = [], []
    for i in range(2):
        torch.manual_seed(i)
        nets.append(DnCNN(**ARCH).eval())
        path = tmp_path / f"server{i}" / "model.pth"
        path.parent.mkdir()
        torch.save(nets[i].state_dict(), path)
        entries.append(hub.Weights(model="dncnn", variant=f"release{i}", url=path.as_uri(),
                                   sha256=hub.sha256(path) if i else None, target="m3l.models.dncnn.DnCNN", net=ARCH))
    for net, entry in zip(nets, entries):
        assert same_weights(hub.load_pretrained(DnCNN(**ARCH), entry), net)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert sorted(p.name for p in cache.glob("*.pth")) == [
        "dncnn_release0.pth", f"dncnn_release1-{entries[1].sha256[:8]}.pth"]
    assert not (cache / "model.pth").exists()

    (cache / "dncnn_release0.pth").unlink()
    torch.save(nets[1].state_dict(), tmp_path / "server0" / "model.pth")  # the server's file changed
    with pytest.raises(M3LError, match=r"^pretrained dncnn_release0: .* does not have the recorded .* sha256"):
        hub.load_pretrained(DnCNN(**ARCH), entries[0])
    assert not (cache / "dncnn_release0.pth").exists()
