"""Real photo folders: every file accounted for (formats, EXIF, hidden files,
unreadable files), no leakage between the labeled and the unlabeled set."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from keras_ssl import cli, folders
from keras_ssl.checks import InputError


def _image(path, size=(8, 8), mode="RGB", color=None, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2 ** 32)
    if color is None and mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (size[1], size[0])).astype("uint16"))
    elif color is None:
        rgb = rng.integers(0, 256, (size[1], size[0], 3)).astype("uint8")
        image = Image.fromarray(rgb).convert(mode)
    else:
        image = Image.new(mode, size, color)
    image.save(path, **save)
    return path


def _two_classes(root, per_class=6, **kwargs):
    for name in ("cats", "dogs"):
        for index in range(per_class):
            _image(root / name / f"{index}.png", **kwargs)
    return root


def test_every_pillow_format_is_read(tmp_path):
    labeled = _two_classes(tmp_path / "labeled")
    for kind, save in (("webp", {}), ("tiff", {}), ("bmp", {}), ("gif", {}), ("jpg", {})):
        _image(labeled / "cats" / f"extra.{kind}", **save)
    _image(labeled / "dogs" / "rgba.png", mode="RGBA")
    _image(labeled / "dogs" / "cmyk.jpg", mode="CMYK")
    _image(labeled / "dogs" / "deep.png", mode="I;16")
    _image(labeled / "dogs" / "palette.png", mode="P", color=3)
    data = folders.from_folders(labeled, validation_split=0)
    assert data.counts["train"] == 12 + 5 + 4  # nothing dropped
    assert {"WEBP", "TIFF", "BMP", "GIF", "JPEG", "PNG"} <= set(data.labeled_scan.formats)
    assert data.x_train.shape == (21, 8, 8, 3) and data.x_train.dtype == np.uint8


def test_a_16_bit_image_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, "uint16")).save(path)
    assert folders.load_image(path, (4, 4), channels=1).max() == 127  # 32768 / 257


def test_exif_orientation_is_applied(tmp_path):
    # A phone photo: stored 8 wide x 4 high, EXIF says "rotate 90" (orientation 6).
    array = np.zeros((4, 8, 3), "uint8")
    array[:, :4] = 255  # left half white
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=100)
    scan = folders.scan(tmp_path, labeled=False)
    assert scan.size == (8, 4)  # height 8, width 4: as the photo is shown
    loaded = folders.load_image(path, (8, 4), channels=3)
    assert loaded[:4].mean() > 200 and loaded[4:].mean() < 50  # the white half is on top


def test_hidden_files_and_folders_and_other_files_are_skipped_and_listed(tmp_path):
    labeled = _two_classes(tmp_path / "labeled")
    _image(labeled / ".ipynb_checkpoints" / "0-checkpoint.png")  # a hidden "class"
    _image(labeled / "cats" / "@eaDir" / "thumb.png")
    _image(labeled / "cats" / ".hidden.png")
    (labeled / "dogs" / "notes.txt").write_text("not an image")
    (labeled / "dogs" / ".DS_Store").write_bytes(b"\0\0")
    scan = folders.scan(labeled)
    assert scan.class_names == ["cats", "dogs"] and len(scan.files) == 12
    assert len(scan.skipped["hidden"]) == 4
    assert [p.endswith("notes.txt") for p in scan.skipped["not images"]] == [True]


def test_every_unreadable_file_is_named_at_once(tmp_path):
    labeled = _two_classes(tmp_path / "labeled")
    for index in range(3):
        (labeled / "cats" / f"broken{index}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"3 image file\(s\) cannot be read") as error:
        folders.scan(labeled)
    assert all(f"broken{index}.jpg" in str(error.value) for index in range(3))


def test_unlabeled_copies_of_labeled_images_are_dropped(tmp_path):
    labeled = _two_classes(tmp_path / "labeled")
    unlabeled = tmp_path / "unlabeled"
    for index in range(10):
        _image(unlabeled / f"u{index}.png")
    for index in range(3):  # copies of labeled images
        (unlabeled / f"copy{index}.png").write_bytes((labeled / "cats" / f"{index}.png")
                                                      .read_bytes())
    data = folders.from_folders(labeled, unlabeled, validation_split=0.25)
    assert data.duplicates == 3 and data.counts["unlabeled"] == 10
    assert "3 unlabeled images are also labeled images" in data.summary()


def test_an_unlabeled_folder_that_holds_the_labeled_one_is_read_without_it(tmp_path):
    photos = tmp_path / "photos"
    labeled = _two_classes(photos / "labeled")
    for index in range(7):
        _image(photos / "new" / f"{index}.png")
    data = folders.from_folders(labeled, photos, validation_split=0.25)
    assert data.counts["unlabeled"] == 7 and data.unlabeled_scan.excluded
    assert "was not read as unlabeled images" in data.summary()
    with pytest.raises(InputError, match="the same folder"):
        folders.from_folders(labeled, labeled)


def test_a_class_with_few_images_gets_a_warning(tmp_path):
    labeled = _two_classes(tmp_path / "labeled")
    _image(labeled / "owl" / "only.png")
    data = folders.from_folders(labeled, validation_split=0)
    assert "owl (1)" in data.warnings()[0]


@pytest.mark.slow
def test_train_accounts_for_every_file_in_run_json(tmp_path, capsys):
    labeled = _two_classes(tmp_path / "labeled", per_class=10)
    _image(labeled / "cats" / "photo.webp")
    _image(labeled / "dogs" / ".hidden.png")
    unlabeled = tmp_path / "unlabeled"
    for index in range(20):
        _image(unlabeled / f"u{index}.tiff")
    (unlabeled / "copy.png").write_bytes((labeled / "dogs" / "0.png").read_bytes())
    out = tmp_path / "run"
    assert cli.main(["train", str(labeled), "--unlabeled", str(unlabeled), "--epochs", "2",
                     "--verbose", "0", "--baseline", "--out", str(out)]) == 0
    # Two epochs are too few for the plateau rule (5 epochs): the report does not
    # credit the unlabeled images with the noise between two supervised runs.
    report = (out / "report.md").read_text()
    assert "**The unlabeled images were not used**" in report and "helped" not in report
    run = json.loads((out / "run.json").read_text())
    assert run["results"]["ssl"]["phase1_epochs"] is None
    settings = run["settings"]
    assert settings["train_images"] + settings["validation_images"] == 21
    assert settings["unlabeled_images"] == 20 and settings["duplicates_dropped"] == 1
    assert settings["files"]["labeled"]["skipped"] == {"hidden": 1, "not images": 0}
    assert settings["files"]["labeled"]["formats"] == {"PNG": 20, "WEBP": 1}


def _saved_model(path, input_shape=(8, 8, 3), outputs=3):
    import keras

    net = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                            keras.layers.Dense(outputs)])
    net.save(path)
    return path


@pytest.mark.parametrize("shape, outputs, message", [
    ((8, 8, 3), 3, r"has 3 outputs, but the labeled folder has 2 classes"),
    ((16, 16, 3), 2, r"takes images of shape \(16, 16, 3\).*--image-size 16"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_training(
        tmp_path, capsys, shape, outputs, message):
    labeled = _two_classes(tmp_path / "labeled")
    model = _saved_model(tmp_path / "net.keras", shape, outputs)
    out = tmp_path / "run"
    assert cli.main(["train", str(labeled), "--model", str(model), "--out", str(out),
                     "--epochs", "1", "--verbose", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert re.search(message, error), error
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_a_run_without_unlabeled_images_is_reported_as_supervised(tmp_path, capsys):
    labeled = _two_classes(tmp_path / "labeled")
    out = tmp_path / "run"
    assert cli.main(["train", str(labeled), "--out", str(out), "--epochs", "2",
                     "--batch-size", "4", "--image-size", "16", "--verbose", "0"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["algorithm"] == "none (no unlabeled images)"
    assert run["settings"]["unlabeled_dir"] is None and run["results"]["ssl"]["epochs"] == 2
    report = (out / "report.md").read_text()
    assert "supervised (no unlabeled images)" in report and "two-phase" not in report


def test_predict_a_single_file_top_k_to_standard_output(tmp_path, capsys):
    import csv
    import io

    model = _saved_model(tmp_path / "net.keras", outputs=3)
    (tmp_path / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    image = _image(tmp_path / "photos" / "one.webp")
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(image), "--top-k", "2", "--out", "-"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2"]
    assert len(rows) == 2 and rows[1][0] == str(image)
    assert float(rows[1][2]) >= float(rows[1][4]) and {rows[1][1], rows[1][3]} <= {"a", "b", "c"}
    # A class list of the wrong length is refused, not mislabelled.
    assert cli.main(["predict", str(model), str(image), "--classes", "x,y",
                     "--out", "-"]) == 2
    assert "has 3 outputs, but 2 class names were given; pass 3 names" in capsys.readouterr().err


def test_images_over_the_memory_budget_are_refused_with_the_fix(tmp_path):
    paths = [_image(tmp_path / f"{index}.png") for index in range(3)]
    with pytest.raises(InputError, match=r"3 images of 512x512x3 take .*--image-size"):
        folders.load_images(paths, (512, 512), 3, memory_gb=1e-3)


def _train_command(labeled, unlabeled, out, *extra):
    return ["train", str(labeled), "--unlabeled", str(unlabeled), "--out", str(out),
            "--epochs", "10", "--batch-size", "4", "--image-size", "16", "--seed", "0",
            *extra]


def test_resume_and_overwrite_are_checked_before_training(tmp_path, capsys):
    labeled = _two_classes(tmp_path / "labeled")
    unlabeled = tmp_path / "unlabeled"
    for index in range(8):
        _image(unlabeled / f"u{index}.png")
    out = tmp_path / "run"
    # --resume with nothing to resume, and --resume with --overwrite.
    assert cli.main(_train_command(labeled, unlabeled, out, "--resume")) == 2
    assert "holds no interrupted run" in capsys.readouterr().err
    assert cli.main(_train_command(labeled, unlabeled, out, "--resume", "--overwrite")) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert not out.exists()
    # An interrupted run with other options is not continued with these.
    (out / ".checkpoint").mkdir(parents=True)
    saved = {"labeled_dir": str(labeled.resolve()), "seed": 1}
    (out / ".checkpoint" / "command.json").write_text(json.dumps(saved))
    assert cli.main(_train_command(labeled, unlabeled, out, "--verbose", "0")) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "holds an interrupted run with other options" in error
    assert "seed: 1 there, 0 now" in error and "--overwrite to start over" in error
    assert json.loads((out / ".checkpoint" / "command.json").read_text()) == saved


@pytest.mark.slow
def test_ctrl_c_mid_epoch_then_the_same_command_finishes_the_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    labeled = _two_classes(tmp_path / "labeled", per_class=10)
    unlabeled = tmp_path / "unlabeled"
    for index in range(40):
        _image(unlabeled / f"u{index}.png", size=(16, 16))
    command = [sys.executable, "-m", "keras_ssl_cli"]  # the `keras-ssl` entry point
    # The run: 10 epochs of 20 steps (a plateau cannot end phase 2 within 10
    # epochs: each phase waits 5 epochs), so 200 steps once it is finished.
    steps = 200
    out = tmp_path / "run"
    # Ctrl-C as at a terminal, even where this test runs in a background job
    # (whose children start with SIGINT ignored): the handler is set again.
    at_terminal = [sys.executable, "-c",
                   ("import runpy, signal, sys; "
                    "signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "sys.argv = ['keras-ssl'] + sys.argv[1:]; "
                    "runpy.run_module('keras_ssl_cli', run_name='__main__')")]
    process = subprocess.Popen(at_terminal + _train_command(labeled, unlabeled, out,
                                                            "--verbose", "0"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / ".checkpoint" / "ssl" / "two_phase.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            if json.loads(state.read_text())["epochs"] >= 4:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    message = error.strip().splitlines()[-1]
    assert re.search(r"interrupted; epoch \d+ of the run is saved in .*\.checkpoint\. Run "
                     r"the same command again \(or add --resume\) to continue", message)
    assert not (out / "model.keras").exists()
    saved_epochs = json.loads(state.read_text())["epochs"]
    assert 4 <= saved_epochs < 10

    # The same command again continues from the saved epoch, to the same end.
    finished = subprocess.run(command + _train_command(labeled, unlabeled, out, "--verbose",
                                                       "0"),
                              check=False, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert f"resuming the interrupted run in {out} (epoch {saved_epochs} of the run)" in (
        finished.stdout)
    run = json.loads((out / "run.json").read_text())
    assert run["results"]["ssl"]["steps"] == steps
    assert run["results"]["ssl"]["epochs"] == 10
    assert run["settings"]["resumed_from"] == f"epoch {saved_epochs} of the run"
    assert not (out / ".checkpoint").exists() and (out / "model.keras").exists()
    assert os.path.exists(out / "report.md")
