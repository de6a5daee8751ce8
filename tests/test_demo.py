"""The demo and the command line, at a few steps (the real-data numbers are in
test_digits.py, marked slow)."""

import json

from keras_ssl import cli


def test_cli_demo_writes_the_table_chart_and_json(tmp_path, capsys):
    code = cli.main(["demo", "--seeds", "0", "--steps", "20", "--methods",
                     "supervised,fixmatch,softmatch", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| supervised |" in printed and "| softmatch |" in printed
    report = json.loads((tmp_path / "demo_digits.json").read_text())
    assert [row["method"] for row in report["table"]] == ["supervised", "fixmatch", "softmatch"]
    for run in report["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["steps"] == 20
    assert (tmp_path / "demo_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
