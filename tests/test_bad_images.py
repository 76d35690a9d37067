"""A folder of awkward files to correct: each is corrected correctly or skipped with one warning that
names it, and everything else is written, inside serializer.root_dir, under its own name."""

import numpy as np
import pytest
from PIL import Image

from conftest import write_images

pytestmark = pytest.mark.slow


def awkward_folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(root / "sixteen bit.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(root / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert("CMYK").save(root / "cmyk.jpg")
    rotated = Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    rotated.save(root / "exif.jpg", exif=exif)
    write_images(root, {"é ü/naïve name.png": (17, 11), "dots..in..name.png": (9, 9)})
    good = root / "ok.png"
    write_images(root, {"ok.png": (16, 12)})
    (root / "truncated.png").write_bytes(good.read_bytes()[:60])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "fake.jpg").write_text("not a jpeg either")


def test_awkward_folder(run_m3l, tmp_path, tiny_checkpoint):
    awkward_folder(tmp_path / "in")
    result = run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}",
                     "data.correct_dir=in", "serializer.root_dir=out", "data.num_workers=0")
    out = tmp_path / "out"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and p.name != ".m3l_correct.yaml")  # what corrected them: m3l/run/correct.py
    assert written == ["alpha.png", "cmyk.png", "dots..in..name.png", "exif.png", "ok.png", "sixteen bit.png",
                       "é ü/naïve name.png"]
    assert Image.open(out / "exif.png").size == (20, 30)  # EXIF orientation applied: 30x20 shown as 20x30
    assert Image.open(out / "sixteen bit.png").mode == "L" and Image.open(out / "sixteen bit.png").size == (30, 20)
    for bad in ("truncated.png", "empty.png", "fake.jpg"):
        assert sum(f"skipping {bad}" in line for line in result.stderr.splitlines()) == 1, result.stderr
    assert "skipped 3 unreadable" in result.stdout
    assert not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in out.rglob("*"))


def test_outputs_never_leave_root_dir(tmp_path):
    from m3l.io.serializer import ImageSerializer

    serializer = ImageSerializer(str(tmp_path / "root"))
    for name in ("../escape.png", "/etc/passwd.png", "a/../../b.png", "ok/ünï code.jpg"):
        path = serializer.output_path(name).resolve()
        assert path.is_relative_to((tmp_path / "root").resolve()), name
    assert serializer.output_path("ok/ünï code.jpg") == tmp_path / "root" / "ok" / "ünï code.png"
