"""Bad input: one line naming the thing and what to do, exit status 2, no traceback."""

import pytest

from conftest import write_images

pytestmark = pytest.mark.slow

NET = ["net.depth=3", "net.width=8", "data.num_workers=0"]


def assert_one_line(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("m3l ")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_checkpoint(run_m3l):
    result = run_m3l("test", "model=dncnn", *NET, "checkpoint=nowhere/model.ckpt", check=False)
    assert_one_line(result, "checkpoint not found: nowhere/model.ckpt", "checkpoint=PATH")


def test_checkpoint_left_unset(run_m3l):
    result = run_m3l("test", "model=dncnn", *NET, check=False)
    assert_one_line(result, "checkpoint is required", "checkpoint=")


def test_missing_correct_dir(run_m3l, tiny_checkpoint):
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "data.correct_dir=nope",
                     "serializer.root_dir=out", check=False)
    assert_one_line(result, "data.correct_dir: nope does not exist")


def test_empty_correct_dir(run_m3l, tmp_path, tiny_checkpoint):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "data.correct_dir=empty",
                     "serializer.root_dir=out", check=False)
    assert_one_line(result, "no images", "empty")


def test_correct_dir_and_root_dir_required(run_m3l, tiny_checkpoint):
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "serializer.root_dir=out",
                     check=False)
    assert_one_line(result, "data.correct_dir is required")
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "data.correct_dir=.",
                     check=False)
    assert_one_line(result, "serializer.root_dir is required")


def test_unreadable_single_image(run_m3l, tmp_path, tiny_checkpoint):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}",
                     "data.correct_dir=broken.png", "serializer.root_dir=out", check=False)
    assert_one_line(result, "could not be read")
    assert "broken.png" in result.stderr


def test_unreadable_image_in_a_folder_is_skipped_and_named(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "in", {"good.png": (16, 16)})
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "data.correct_dir=in",
                     "serializer.root_dir=out")
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()
    assert "skipping bad.png" in result.stderr and "skipped 1 unreadable: bad.png" in result.stdout


def test_unknown_model_lists_the_valid_ones(run_m3l):
    result = run_m3l("train", "model=dcnn", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Could not find 'model/dcnn'" in result.stderr and "dncnn" in result.stderr


def test_model_not_given(run_m3l):
    assert_one_line(run_m3l("train", check=False), "no model chosen: pass model=NAME, one of: ", "dncnn, ", "dncnn_color")


def test_help_lists_the_groups(run_m3l):
    result = run_m3l("train", "--help")
    assert "python -m m3l.run.train model=NAME" in result.stdout
    models = next(line for line in result.stdout.splitlines() if line.startswith("model: "))
    assert {"dncnn", "dncnn_color", "ffdnet", "identity"} <= set(models.removeprefix("model: ").split(", "))


def test_checkpoint_of_another_architecture(run_m3l, tiny_checkpoint):
    result = run_m3l("test", "model=dncnn", "net.depth=3", "net.width=16", f"checkpoint={tiny_checkpoint}",
                     check=False)
    assert_one_line(result, "net.width=16 on the command line", "trained with net.width=8", "does not fit")


def test_nan_loss_stops_with_the_step_and_last_good_checkpoint(run_m3l, tmp_path):
    from conftest import TINY

    tiny = [o for o in TINY if not o.startswith("trainer.max_epochs")]
    # a sane first epoch (checkpointed), then a learning rate of 1e27 that blows the weights up
    result = run_m3l("train", "model=dncnn", *tiny, "hydra.run.dir=run", "trainer.max_epochs=3",
                     "scheduler.milestones=[1]", "scheduler.gamma=1e30", check=False)
    assert_one_line(result, "training stopped: the loss is", "at step", "last good checkpoint: ",
                    "checkpoints/last.ckpt")


def test_unwritable_output_folder_is_named(run_m3l, tmp_path, tiny_checkpoint):
    write_images(tmp_path / "in", {"a.png": (16, 16)})
    (tmp_path / "afile").write_text("a file where a folder should be")
    result = run_m3l("correct", "model=dncnn", *NET, f"checkpoint={tiny_checkpoint}", "data.correct_dir=in",
                     "serializer.root_dir=afile/out", check=False)
    assert_one_line(result, "serializer.root_dir: cannot create afile/out")
    assert (tmp_path / "afile").read_text() == "a file where a folder should be"


def test_wrong_trainer_argument_names_the_cause(run_m3l):
    result = run_m3l("train", "model=dncnn", *NET, "+trainer.max_epochz=3", check=False)
    assert_one_line(result, "Trainer", "unexpected keyword argument 'max_epochz'")
    assert "PYTHONPATH" not in result.stderr


def test_unknown_option_of_another_group_lists_its_options(run_m3l):
    result = run_m3l("train", "model=dncnn", "logger=wandbb", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Could not find 'logger/wandbb'" in result.stderr
    assert "Available options in 'logger':\n\tcsv\n\ttensorboard\n\twandb" in result.stderr


def test_misspelt_key_lists_the_valid_keys(run_m3l):
    result = run_m3l("train", "model=dncnn", "trainer.max_epochz=3", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Key 'max_epochz' is not in struct" in result.stderr  # Hydra's message
    hint = result.stderr.splitlines()[-1]
    assert hint.startswith("m3l train: trainer.max_epochz: no such key in 'trainer' (did you mean trainer.max_epochs")
    assert "its keys: _target_, " in hint and ", max_epochs, " in hint and "'+trainer.max_epochz=...' adds" in hint


def test_value_of_the_wrong_type_says_what_is_expected(run_m3l):
    result = run_m3l("train", "model=dncnn", "seed=abc", "hydra.run.dir=run", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("m3l train: error: seed=abc: a number is expected here "
                                              "(the config's value is 0)")


def test_override_hints_for_keys_and_types():
    from m3l.run.confighints import override_hints

    hints = override_hints("test", ["model=dncnn", "net.widht=3", "data.augment=maybe", "net.width=32", "+x=1",
                                    "hydra.run.dir=x", "nett.width=3"])
    assert hints[0].startswith("net.widht: no such key in 'net' (did you mean net.width?); its keys: _target_, ")
    assert hints[1] == "data.augment=maybe: true or false is expected here (the config's value is True)"
    assert hints[2].startswith("nett: no such key in the config (did you mean net?)")
    assert len(hints) == 3
    assert override_hints("test", ["model=dcnn", "net.widht=3"]) == []  # Hydra lists the models itself
    # keys left ??? in the config exist: only the typo is named
    assert override_hints("score", ["clean_dirr=a", "restored_dir=b"]) == [override_hints("score", ["clean_dirr=a"])[0]]
    assert override_hints("score", ["restored_dir=b"]) == override_hints("test", ["model=dncnn", "checkpoint=c"]) == []
