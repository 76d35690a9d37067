"""What a new user types on the first try works (issue "First try works")."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image, ImageOps

from conftest import write_images


def test_a_weights_path_holding_equals_signs_works_unquoted(run_m3l, tmp_path, tiny_checkpoint):
    """Lightning names checkpoints epoch=3-step=100.ckpt, the DnCNN authors sigma=25.mat: typed as they are,
    Hydra's grammar would stop at the second '='."""
    named = tmp_path / "runs" / "epoch=0-step=4.ckpt"
    named.parent.mkdir()
    shutil.copy(tiny_checkpoint, named)
    write_images(tmp_path / "in=put", {"a.png": (24, 20)})
    run_m3l("correct", "model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={named}",
            f"data.correct_dir={tmp_path}/in=put", "serializer.root_dir=out", "data.num_workers=0")
    assert np.array(Image.open(tmp_path / "out" / "a.png")).shape == (20, 24)


def photo_with_exif_and_icc(path, size=(40, 24)):
    """A colour JPEG stored sideways (EXIF orientation 6: rotate 90 degrees clockwise to view) with an ICC profile."""
    from PIL import ImageCms

    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "m3l test camera"  # Make
    Image.fromarray(pixels, "RGB").save(path, format="JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc)
    return icc


def test_a_colour_photo_through_a_gray_net_comes_out_in_colour_upright_with_its_profile(run_m3l, tmp_path):
    (tmp_path / "in").mkdir()
    icc = photo_with_exif_and_icc(tmp_path / "in" / "photo.jpg")
    source = (tmp_path / "in" / "photo.jpg").read_bytes()
    result = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out",
                     "data.num_workers=0")
    with Image.open(tmp_path / "in" / "photo.jpg") as photo:
        upright = np.asarray(ImageOps.exif_transpose(photo).convert("RGB"), dtype=int)
    with Image.open(tmp_path / "out" / "photo.png") as out:
        assert out.mode == "RGB" and out.size == (24, 40)  # in colour, the EXIF rotation applied
        assert out.info.get("icc_profile") == icc
        exif = out.getexif()
        assert exif.get(0x010F) == "m3l test camera" and exif.get(0x0112) in (None, 1)
        # the identity net restores the luminance to itself: the colours come back within a level
        assert np.abs(np.asarray(out, dtype=int) - upright).max() <= 1
    assert "1 colour images (photo.jpg) restored on their luminance" in result.stdout + result.stderr
    assert (tmp_path / "in" / "photo.jpg").read_bytes() == source
    refused = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out2",
                      "data.num_workers=0", "data.color_input=refuse", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "photo.jpg is a colour image and this net restores gray ones: use a colour model" in refused.stderr


def test_output_formats_keep_the_bits_asked_for(run_m3l, tmp_path):
    import tifffile

    gray = (np.arange(30 * 20).reshape(20, 30) % 256).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(gray).save(tmp_path / "in" / "g.png")
    common = ["model=identity", "data.correct_dir=in", "data.num_workers=0"]
    for fmt, name in (("png16", "g.png"), ("tiff", "g.tif"), ("jpeg", "g.jpg")):
        run_m3l("correct", *common, f"serializer.root_dir={fmt}", f"serializer.format={fmt}",
                "serializer.quality=100")
        path = tmp_path / fmt / name
        if fmt == "tiff":
            assert tifffile.imread(path).dtype == np.uint16
            assert np.array_equal(tifffile.imread(path), gray.astype(np.uint16) * 257)
        else:
            with Image.open(path) as out:
                assert out.format == {"png16": "PNG", "jpeg": "JPEG"}[fmt]
                values = np.asarray(out, dtype=int)
                if fmt == "png16":
                    assert out.mode.startswith("I") and np.array_equal(values, gray.astype(int) * 257)
                else:
                    assert np.abs(values - gray).max() <= 3
    bad = run_m3l("correct", *common, "serializer.root_dir=x", "serializer.format=webp", check=False)
    assert bad.returncode == 2 and "serializer.format: 'webp' is not one of png, png16, tiff, jpeg" in bad.stderr


def test_outputs_made_with_other_weights_are_not_taken_as_done(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "in", {"a.png": (24, 20)})
    common = ["data.correct_dir=in", "serializer.root_dir=out", "data.num_workers=0"]
    run_m3l("correct", "model=identity", *common)
    again = run_m3l("correct", "model=identity", *common)
    assert "skipped 1 already done" in again.stdout + again.stderr  # the same settings: a rerun resumes
    dncnn = ["model=dncnn", "net.depth=3", "net.width=8", f"checkpoint={tiny_checkpoint}"]
    other = run_m3l("correct", *dncnn, *common, check=False)
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
    assert "holds images corrected with other model, weights (see" in other.stderr
    before = (tmp_path / "out" / "a.png").read_bytes()
    run_m3l("correct", *dncnn, *common, "serializer.overwrite=true")
    assert (tmp_path / "out" / "a.png").read_bytes() != before
    run_m3l("correct", *dncnn, *common)  # recorded: now these are the settings of the folder


def test_correct_on_several_processes_is_one_line(run_m3l, tmp_path):
    write_images(tmp_path / "in", {"a.png": (24, 20)})
    result = run_m3l("correct", "model=identity", "data.correct_dir=in", "serializer.root_dir=out",
                     "data.num_workers=0", "trainer.devices=2", "trainer.accelerator=cpu", "+trainer.strategy=ddp",
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "correct runs on one device, not 2 processes" in result.stderr
    assert not (tmp_path / "out" / "a.png").exists()
