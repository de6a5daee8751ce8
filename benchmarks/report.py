"""BENCHMARKS.md's tables, rendered from the result files in `benchmarks/results/`.

    python -m benchmarks.report           # rewrite the generated tables in BENCHMARKS.md
    python -m benchmarks.report --check   # exit 1 if BENCHMARKS.md differs from the files

Each generated table sits in BENCHMARKS.md between two markers:

    <!-- report: NAME -->
    ...
    <!-- end: NAME -->

and NAME is one of `TABLES` below: a function of the committed result files
(JSON written by the benchmark scripts) that returns the markdown. Text
outside the markers is written by hand. Numbers in the tables come from the
files only: a table that the files no longer support fails `--check`.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BENCHMARKS = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")


def _load(name):
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def _pct(values):
    """`mean ± std %` of accuracies in [0, 1] (population std, as the scripts print)."""
    values = 100.0 * np.asarray(values, dtype="float64")
    return f"{values.mean():.2f} ± {values.std():.2f} %"


def _per_seed(values):
    return " / ".join(f"{100.0 * v:.2f}" for v in values)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _by(runs, key):
    groups = {}
    for run in runs:
        groups.setdefault(run[key], []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
    return groups


def cli_folders_15min():
    """`keras-ssl train` on CIFAR-10 as files: SSL, supervised at equal wall time and steps."""
    runs = _by(_load("cli_folders_15min.json")["runs"], "method")
    names = {
        "ssl": "`keras-ssl train LAB --unlabeled UNL --minutes 15` (the default)",
        "supervised": "the same without `--unlabeled` (equal wall time)",
        "supervised_equal_steps": "the same without `--unlabeled`, about the SSL run's steps",
    }
    rows = []
    for method, label in names.items():
        group = runs[method]
        acc = [r["test_accuracy"] for r in group]
        rows.append([label, _pct(acc), _per_seed(acc),
                     " / ".join(f"{r['steps']:,}" for r in group),
                     " / ".join(f"{r['seconds']:.0f}" for r in group),
                     " / ".join(f"{r['budget_seconds']:.0f}" for r in group)])
    return _table(["run", "test accuracy (3 seeds)", "seed 0 / 1 / 2", "steps",
                   "wall time (s)", "budget (s)"], rows)


def digits_demo():
    """The digits demo over seeds 0-7: the default against supervised at equal steps and time."""
    main = _load("digits_demo_seeds0-7.json")
    longer = _load("digits_demo_supervised_6600_seeds0-7.json")
    rows = []
    for source, method, label in ((main, "default", "`keras-ssl demo`: the default"),
                                  (main, "supervised", "supervised, equal steps"),
                                  (longer, "supervised", "supervised, about equal wall time")):
        runs = [r for r in source["runs"] if r["method"] == method]
        acc = [r["accuracy"] for r in runs]
        rows.append([label, f"{np.mean(acc):.3f} ± {np.std(acc):.3f}",
                     f"{runs[0]['steps']:,}", f"{np.mean([r['seconds'] for r in runs]):.1f}"])
    return _table(["method", "test accuracy (8 seeds)", "steps", "seconds per run"], rows)


ALGORITHMS = (("fixmatch_da", "FixMatch with distribution alignment"),
              ("flexmatch", "FlexMatch"), ("freematch", "FreeMatch"),
              ("softmatch", "SoftMatch"))


def algorithms_digits():
    """The four changed algorithms on the digits demo, previous and published forms."""
    rows = []
    for key, label in ALGORITHMS:
        before = _load(f"algorithms_digits_before_{key}.json")["runs"]
        after = _load(f"algorithms_digits_after_{key}.json")["runs"]
        b = [r["accuracy"] for r in sorted(before, key=lambda r: r["seed"])]
        a = [r["accuracy"] for r in sorted(after, key=lambda r: r["seed"])]
        rows.append([label, f"{np.mean(b):.3f} ± {np.std(b):.3f}", _per_seed3(b),
                     f"{np.mean(a):.3f} ± {np.std(a):.3f}", _per_seed3(a),
                     f"{np.mean(a) - np.mean(b):+.3f}"])
    return _table(["algorithm", "previous (3 seeds)", "per seed", "published form",
                   "per seed", "change"], rows)


def _per_seed3(values):
    return " / ".join(f"{v:.3f}" for v in values)


def algorithms_transfer():
    """The four changed algorithms on the transfer benchmark, previous and published forms."""
    before = _by(_load("algorithms_transfer_before.json")["runs"], "method")
    after = _by(_load("algorithms_transfer_after.json")["runs"], "method")
    specs = {"fixmatch_da": "fixmatch:distribution_alignment=True", "flexmatch": "flexmatch",
             "freematch": "freematch", "softmatch": "softmatch"}
    baseline = "pretrained, supervised fine-tuning"
    rows = []
    sup = [r["accuracy"] for r in after[baseline]]
    rows.append([baseline + " (reference)", _pct(sup), _per_seed(sup), "", "", ""])
    for key, label in ALGORITHMS:
        name = f"pretrained + {specs[key]}"
        b = [r["accuracy"] for r in before[name]]
        a = [r["accuracy"] for r in after[name]]
        rows.append([label, _pct(b), _per_seed(b), _pct(a), _per_seed(a),
                     f"{100 * (np.mean(a) - np.mean(b)):+.2f}"])
    return _table(["method", "previous (3 seeds)", "per seed", "published form", "per seed",
                   "change (points)"], rows)


TABLES = {
    "cli_folders_15min": cli_folders_15min,
    "digits_demo": digits_demo,
    "algorithms_digits": algorithms_digits,
    "algorithms_transfer": algorithms_transfer,
}

_BLOCK = re.compile(r"(<!-- report: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.DOTALL)


def render(text):
    """`text` with every generated block replaced by its table from the result files."""
    unknown = [m.group(2) for m in _BLOCK.finditer(text) if m.group(2) not in TABLES]
    if unknown:
        raise SystemExit(f"BENCHMARKS.md names unknown tables {unknown}; known: {sorted(TABLES)}")
    return _BLOCK.sub(lambda m: f"{m.group(1)}{TABLES[m.group(2)]()}\n{m.group(4)}", text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 if BENCHMARKS.md differs from the result files")
    p.add_argument("--path", default=BENCHMARKS)
    args = p.parse_args(argv)
    with open(args.path) as f:
        text = f.read()
    rendered = render(text)
    blocks = len(_BLOCK.findall(text))
    if args.check:
        if rendered != text:
            print(f"{args.path} differs from what `python -m benchmarks.report` renders from "
                  "benchmarks/results/: run it and commit the result.", file=sys.stderr)
            return 1
        print(f"{args.path}: {blocks} generated tables match the result files.")
        return 0
    with open(args.path, "w") as f:
        f.write(rendered)
    print(f"rendered {blocks} tables into {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
