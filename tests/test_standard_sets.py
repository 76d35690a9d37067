"""The standard data set registry, on local archives through file:// URLs (no network)."""

import tarfile
import zipfile

import pytest

from conftest import write_images
from m3l.data import standard_sets
from m3l.data.standard_sets import SETS, StandardSet, content_sha256, locate
from m3l.errors import M3LError


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registered toy set of 3 images in a zip archive (folder ``top/images`` inside), and an empty cache."""
    source = tmp_path / "src" / "top" / "images"
    write_images(source, {"a.png": (9, 8), "b.png": (8, 9), "sub/c.png": (8, 8)})
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "src").rglob("*"):
            z.write(f, f.relative_to(tmp_path / "src").as_posix())
    spec = StandardSet("toy", archive.as_uri(), "top/images", 3, content_sha256(source))
    monkeypatch.setitem(SETS, "toy", spec)
    monkeypatch.setenv("M3L_DATA", str(tmp_path / "cache"))
    return spec, source


# The fixed names of issue 21's paired test sets (protocols refer to them as {data_root}/<name>).
ISSUE_21_SETS = ["rain13k", "rain100l", "rain100h", "test100", "test1200", "test2800", "dpdd", "lol_v1", "lol_v2_real",
                 "lol_v2_synthetic", "sots_indoor", "sots_outdoor", "hide", "sidd"]


def test_every_set_has_a_url_a_count_and_a_subdir():
    for name in ["train400", "bsd68", "cbsd68", "set12", "kodak24", "mcmaster", "live1_gray", "live1_color",
                 "classic5", "div2k_train", "gopro", "dvd", "sidd_medium", "urban100", *ISSUE_21_SETS]:
        spec = SETS[name]
        assert spec.url.startswith("https://") and spec.files > 0 and spec.subdir
        assert spec.sha256 is None or len(spec.sha256) == 64


def test_downloads_unpacks_checks_and_reuses_the_cache(toy, tmp_path):
    spec, source = toy
    folder = locate("toy")
    assert folder == tmp_path / "cache" / "toy"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == ["a.png", "b.png", "sub/c.png"]
    assert content_sha256(folder) == spec.sha256
    (tmp_path / "toy.zip").unlink()  # the second call must not download
    assert locate("toy") == folder
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_archive_holding_several_sets_is_downloaded_once(tmp_path, monkeypatch):
    """DnCNN's archive holds Train400, Set12 and BSD68: the first set asked for downloads it, the other two
    come out of it into the cache at the same time (the archive was fetched once per set before)."""
    for folder, count in (("one", 3), ("two", 2), ("three", 1)):
        write_images(tmp_path / "src" / "repo" / folder, {f"{i}.png": (8, 8 + i) for i in range(count)})
    archive = tmp_path / "repo.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "src").rglob("*.png"):
            z.write(f, f.relative_to(tmp_path / "src").as_posix())
    for folder, count in (("one", 3), ("two", 2), ("three", 1)):
        source = tmp_path / "src" / "repo" / folder
        monkeypatch.setitem(SETS, f"toy_{folder}", StandardSet(f"toy_{folder}", archive.as_uri(), f"repo/{folder}",
                                                                count, content_sha256(source)))
    monkeypatch.setenv("M3L_DATA", str(tmp_path / "cache"))
    fetched = []
    real_fetch = standard_sets.fetch
    monkeypatch.setattr(standard_sets, "fetch", lambda url, target: (fetched.append(url), real_fetch(url, target)))
    assert locate("toy_two") == tmp_path / "cache" / "toy_two"
    archive.unlink()  # the other two sets must come from the first download
    for folder, count in (("one", 3), ("three", 1)):
        assert len(list((locate(f"toy_{folder}")).glob("*.png"))) == count
    assert fetched == [archive.as_uri()]
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temporary left


def test_tar_archives_work_too(toy, tmp_path, monkeypatch):
    spec, source = toy
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "src" / "top", arcname="top")
    monkeypatch.setitem(SETS, "toy", StandardSet("toy", archive.as_uri(), "top/images", 3, spec.sha256))
    assert content_sha256(locate("toy")) == spec.sha256


def test_a_download_with_other_content_is_refused_and_not_kept(toy, tmp_path, monkeypatch):
    spec, _ = toy
    monkeypatch.setitem(SETS, "toy", StandardSet("toy", spec.url, spec.subdir, 3, "0" * 64))
    with pytest.raises(M3LError, match="sha256 differs"):
        locate("toy")
    assert not (tmp_path / "cache" / "toy").exists()


def test_offline_is_one_message_naming_the_url_and_the_folder(toy, tmp_path, monkeypatch):
    missing = (tmp_path / "gone.zip").as_uri()
    monkeypatch.setitem(SETS, "toy", StandardSet("toy", missing, "top/images", 3))
    with pytest.raises(M3LError) as error:
        locate("toy")
    message = str(error.value)
    assert "\n" not in message and missing in message and str(tmp_path / "cache" / "toy") in message


def test_a_users_folder_is_checked(toy, tmp_path):
    spec, source = toy
    assert locate("toy", root=source) == source
    write_images(tmp_path / "wrong", {"a.png": (8, 8)})
    with pytest.raises(M3LError, match="has 1 images, toy has 3"):
        locate("toy", root=tmp_path / "wrong")


def test_manual_sets_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("M3L_DATA", str(tmp_path))
    with pytest.raises(M3LError, match="seungjunnah.github.io.*by hand.*" + str(tmp_path / "gopro")):
        locate("gopro")
    with pytest.raises(M3LError, match="1lCZS0mHJcnQutyupM62tNUJl8JIW8i3Q.*by hand.*" + str(tmp_path / "dvd")):
        locate("dvd")  # Shift-Net's DVD test clips (CDVD-TSP's copy, Google Drive)


def test_the_paired_test_sets_are_manual_and_name_their_pair_folders(monkeypatch, tmp_path, capsys):
    """Issue 21's sets come from Google Drive (no direct download): a missing one is one line naming the page and
    the folder; ``what`` names the pair folders the protocols pass as data.input / data.target."""
    monkeypatch.setenv("M3L_DATA", str(tmp_path))
    folders = {"rain100l": "input/ target/", "test2800": "input/ target/", "dpdd": "inputC/", "lol_v1": "low/ high/",
               "lol_v2_real": "Low/ Normal/", "lol_v2_synthetic": "Low/ Normal/", "sots_indoor": "hazy/ GT/",
               "sots_outdoor": "hazy/ GT/"}
    for name in ISSUE_21_SETS:
        spec = SETS[name]
        assert spec.manual and spec.sha256 is None and spec.files % 2 == 0
        assert folders.get(name, "input/ target/") in spec.what
        with pytest.raises(M3LError) as error:
            locate(name)
        assert "\n" not in str(error.value) and spec.url in str(error.value) and str(tmp_path / name) in str(error.value)
    assert standard_sets.main([]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n{name} " in "\n" + listing for name in ISSUE_21_SETS)


def test_command_line_prints_the_folder(toy, capsys):
    assert standard_sets.main(["toy"]) == 0
    assert capsys.readouterr().out.strip().endswith("toy")
    assert standard_sets.main(["nope"]) == 2
    assert "unknown standard set" in capsys.readouterr().err
