"""The command line's options: checked when parsed, one-line errors naming the flag,
exit code 2, and nothing written or overwritten on a refusal."""

import subprocess
import sys

import pytest

import keras_ssl_cli
from keras_ssl import cli
from keras_ssl.algorithms import names


def test_the_listed_algorithms_are_the_registered_ones():
    assert sorted(keras_ssl_cli.ALGORITHMS) == names()


def test_the_parser_imports_no_framework():
    code = ("import sys, keras_ssl_cli; keras_ssl_cli.build_parser().parse_args("
            "['train', 'x', '--out', 'y']); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'keras_ssl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv, flag, message", [
    (["--batch-size", "0"], "--batch-size", "must be >= 1; received 0"),
    (["--batch-size", "two"], "--batch-size", "expected an integer; received 'two'"),
    (["--image-size", "0"], "--image-size", "must be >= 8 and <= 4096 (pixels); received 0"),
    (["--epochs", "0"], "--epochs", "must be >= 1; received 0"),
    (["--minutes", "0"], "--minutes", "must be > 0 (minutes); received 0"),
    (["--minutes", "nan"], "--minutes", "must be > 0 (minutes); received nan"),
    (["--validation-split", "1"], "--validation-split", "must be > 0 and < 1; received 1"),
    (["--unlabeled-ratio", "-1"], "--unlabeled-ratio", "must be >= 1; received -1"),
    (["--algorithm", "fixmach"], "--algorithm", "invalid choice: 'fixmach'"),
    (["--minutes", "5", "--epochs", "3"], "--epochs", "not allowed with argument --minutes"),
])
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, argv, flag, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", str(tmp_path), "--out", str(out), *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"keras-ssl train: error: argument {flag}")
    assert message in error
    assert not out.exists()


def test_demo_lists_are_checked():
    parser = keras_ssl_cli.build_parser()
    assert parser.parse_args(["demo", "--seeds", "3,4"]).seeds == [3, 4]
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--methods", "supervised,fixmach"])
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--seeds", "a"])


def test_an_out_folder_with_files_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.md").write_text("an earlier run")
    assert cli.main(["train", str(tmp_path / "missing"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "already holds files" in error and "--overwrite" in error
    assert (out / "report.md").read_text() == "an earlier run"
    # With --overwrite the command goes on (and here stops at the missing folder).
    assert cli.main(["train", str(tmp_path / "missing"), "--out", str(out),
                     "--overwrite"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_command_prints_no_framework_start_up_lines(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_ssl_cli", "predict", str(tmp_path / "none.keras"),
         str(tmp_path)], check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"keras-ssl predict: error: The model file '{tmp_path / 'none.keras'}' does not exist."]
    assert result.stdout == ""
