"""BENCHMARKS.md's generated tables are what the committed result files say."""

import json
import shutil

from benchmarks import report


def test_benchmarks_md_matches_the_result_files():
    assert report.main(["--check"]) == 0


def test_a_changed_result_file_fails_the_check(tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    path = results / "cli_folders_15min.json"
    data = json.loads(path.read_text())
    data["runs"][0]["test_accuracy"] += 0.01
    path.write_text(json.dumps(data))
    monkeypatch.setattr(report, "RESULTS", str(results))
    copy = tmp_path / "BENCHMARKS.md"
    shutil.copy(report.BENCHMARKS, copy)
    assert report.main(["--check", "--path", str(copy)]) == 1
    assert report.main(["--path", str(copy)]) == 0  # rewrite the tables
    assert report.main(["--check", "--path", str(copy)]) == 0
    moved = f"{100 * data['runs'][0]['test_accuracy']:.2f} / "  # seed 0, one point up
    assert moved in copy.read_text()
