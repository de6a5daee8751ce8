"""BENCHMARKS.md's and README.md's tables, rendered from `benchmarks/results/`.

    python -m benchmarks.report           # rewrite the generated tables in both files
    python -m benchmarks.report --check   # exit 1 if either differs from the result files

Each generated table sits in BENCHMARKS.md (or README.md) between two markers:

    <!-- report: NAME -->
    ...
    <!-- end: NAME -->

and NAME is one of `TABLES` below: a function of the committed result files
(JSON written by the benchmark scripts) that returns the markdown. Text
outside the markers is written by hand. Numbers in the tables come from the
files only: a table that the files no longer support fails `--check`.
"""

import argparse
import decimal
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BENCHMARKS = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
README = os.path.join(os.path.dirname(HERE), "README.md")


def _load(name):
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def _pct(values):
    """`mean ± std %` of accuracies in [0, 1] (population std, as the scripts print)."""
    values = 100.0 * np.asarray(values, dtype="float64")
    return f"{values.mean():.2f} ± {values.std():.2f} %"


def _per_seed(values, percent=True):
    """Per-seed accuracies: percent with 2 decimals, or fractions with 3."""
    return " / ".join(f"{100.0 * v:.2f}" if percent else f"{v:.3f}" for v in values)


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


def _cli_folders_rows(labels, row):
    """`row(method, label, runs)` for SSL, supervised at equal time and at equal steps."""
    runs = _by(_load("cli_folders_15min.json")["runs"], "method")
    methods = ("ssl", "supervised", "supervised_equal_steps")
    return [row(method, label, runs[method]) for method, label in zip(methods, labels)]


def cli_folders_15min():
    """`keras-ssl train` on CIFAR-10 as files: SSL, supervised at equal wall time and steps."""
    labels = ("`keras-ssl train LAB --unlabeled UNL --minutes 15` (the default)",
              "the same without `--unlabeled` (equal wall time)",
              "the same without `--unlabeled`, about the SSL run's steps")

    def row(method, label, group):
        acc = [r["test_accuracy"] for r in group]
        return [label, _pct(acc), _per_seed(acc),
                " / ".join(f"{r['steps']:,}" for r in group),
                " / ".join(f"{r['seconds']:.0f}" for r in group),
                " / ".join(f"{r['budget_seconds']:.0f}" for r in group)]
    return _table(["run", "test accuracy (3 seeds)", "seed 0 / 1 / 2", "steps",
                   "wall time (s)", "budget (s)"], _cli_folders_rows(labels, row))


def cli_folders_readme():
    """README's summary of `cli_folders_15min`: mean ± std, step and wall-time ranges."""
    labels = ("**`keras-ssl train labeled --unlabeled unlabeled --minutes 15`**",
              "supervised: the same command without `--unlabeled` (same wall time)",
              "supervised, about the same steps (fewer minutes)")

    def row(method, label, group):
        accuracy = _pct([r["test_accuracy"] for r in group])
        steps = [r["steps"] for r in group]
        seconds = [r["seconds"] for r in group]
        return [label, f"**{accuracy}**" if method == "ssl" else accuracy,
                f"{min(steps):,}-{max(steps):,}", f"{min(seconds):.0f}-{max(seconds):.0f} s"]
    return _table(["run", "test accuracy", "steps", "wall time"], _cli_folders_rows(labels, row))


NO_WARMUP = "the default without its warm-up (first table at step 0)"


def digits_demo():
    """The digits demo over seeds 0-7: the default against supervised at equal steps and time."""
    main = _load("digits_demo_seeds0-7.json")
    longer = _load("digits_demo_supervised_6600_seeds0-7.json")
    warm = _load("digits_demo_default_seeds0-7_2026-12-05.json")
    rows = []
    for source, method, label in ((warm, "default", "`keras-ssl demo`: the default"),
                                  (main, "default", NO_WARMUP),
                                  (main, "supervised", "supervised, equal steps"),
                                  (longer, "supervised", "supervised, about equal wall time")):
        runs = [r for r in source["runs"] if r["method"] == method]
        acc = [r["accuracy"] for r in runs]
        rows.append([label, f"{np.mean(acc):.3f} ± {np.std(acc):.3f}",
                     f"{runs[0]['steps']:,}", f"{np.mean([r['seconds'] for r in runs]):.1f}"])
    return _table(["method", "test accuracy (8 seeds)", "steps", "seconds per run"], rows)


def _shown_mean(values):
    """`(mean, std)` of accuracies as shown (percent, 2 decimals), rounded half up.

    For a mean row under per-seed rows: it agrees with the rows above it, where the
    mean of the unrounded accuracies can round the other way at a tie.
    """
    shown = [decimal.Decimal(f"{100.0 * v:.2f}") for v in values]
    mean = sum(shown) / len(shown)
    std = (sum((v - mean) ** 2 for v in shown) / len(shown)).sqrt()
    cent = decimal.Decimal("0.01")
    return (mean.quantize(cent, decimal.ROUND_HALF_UP),
            std.quantize(cent, decimal.ROUND_HALF_UP))


def _pct_of(mean, std):
    """`mean ± std %` of a stored summary (accuracies in [0, 1])."""
    return f"{100.0 * mean:.2f} ± {100.0 * std:.2f} %"


ZIPPED = ("one zipped dataset "
          "(`zip((labeled.repeat(), unlabeled.shuffle().repeat().batch()))`)")
HAND_WRITTEN = ("hand-written `tf.function` step (same model, concatenated forward pass, "
                "losses), batches in RAM")


def digits_sources():
    """The digits demo with the images passed four ways (3 seeds each, 1,000 steps)."""
    rows = []
    for name, method, label in (
            ("digits_demo_array.json", "default", "numpy arrays"),
            ("digits_demo_tfdata.json", "default",
             "`tf.data` datasets (labeled batched, unlabeled batched)"),
            ("digits_demo_generator.json", "default", "a generator of unlabeled batches"),
            ("digits_demo_zipped.json", "default", ZIPPED),
            ("digits_demo_array.json", "supervised", "supervised (arrays), same steps")):
        runs = sorted((r for r in _load(name)["runs"] if r["method"] == method),
                      key=lambda r: r["seed"])
        acc = [r["accuracy"] for r in runs]
        rows.append([label, _per_seed(acc, percent=False), f"{np.mean(acc):.3f} ± {np.std(acc):.3f}",
                     f"{np.mean([r['seconds'] for r in runs]):.1f}"])
    return _table(["how `fit` gets the images", "per seed (0 / 1 / 2)", "mean ± std",
                   "seconds per run"], rows)


CIFAR_DEFAULT = "default:warmup=600;balance_classes=True"


def cifar10_protocol():
    """The CIFAR-10 CPU protocol: the default of 2026-11-29 and both baselines, seeds 0-2."""
    data = _load("cifar10_protocol_2026-11-29.json")
    runs = _by([r for r in data["runs"] if r["seed"] in (0, 1, 2)], "method")
    summaries = {s["method"]: s for s in data["summaries"]}
    rows = []
    for method, label in (
            ("supervised", "supervised, equal steps"),
            ("supervised_strong", "supervised + strong view, at least equal wall time"),
            (CIFAR_DEFAULT, "**the default of 2026-11-29** (`SelfTraining`, balanced draw)")):
        group, s = runs[method], summaries[method]
        acc = [r["accuracy"] for r in group]
        if "seconds_min" in s:
            seconds = f"{s['seconds_min']:,}-{s['seconds_max']:,}"
        elif "seconds_estimated" in s:
            seconds = f"about {s['seconds_estimated']:,} (estimated)"
        else:
            seconds = "not quoted"
        rows.append([label, f"{group[0]['steps']:,}", _per_seed(acc), _pct(acc),
                     _pct_of(s["ema_mean"], s["ema_std"]),
                     _pct_of(s["moving_mean"], s["moving_std"]), seconds])
    return _table(["method", "steps", "seed 0 / 1 / 2", "test accuracy (3 seeds)", "EMA",
                   "moving statistics", "wall time (s)"], rows)


def cifar10_tfdata():
    """The CIFAR-10 protocol's default through `tf.data` and as arrays: one version, same day."""
    keys = ("student_accuracy", "ema_accuracy", "moving_accuracy")
    paths = {kind: [_load(f"cifar10_{kind}_seed{seed}.json")["runs"][0] for seed in (0, 1, 2)]
             for kind in ("array", "tfdata")}
    rows = []
    for kind, label in (("array", "numpy arrays"), ("tfdata", "`tf.data` datasets")):
        runs = paths[kind]
        acc = [r["student_accuracy"] for r in runs]
        mean, std = _shown_mean(acc)
        rows.append([label, _per_seed(acc), f"**{mean} ± {std} %**"]
                    + [f"{_shown_mean([r[k] for r in runs])[0]} %" for k in keys[1:]]
                    + [" / ".join(f"{r['seconds']:,.0f}" for r in runs),
                       f"{np.mean([r['steps_per_second'] for r in runs]):.2f}"])
    diff = [100.0 * (t["student_accuracy"] - a["student_accuracy"])
            for t, a in zip(paths["tfdata"], paths["array"])]
    ratio = [t["seconds"] / a["seconds"] for t, a in zip(paths["tfdata"], paths["array"])]
    rows.append(["`tf.data` minus arrays", " / ".join(f"{d:+.2f}" for d in diff),
                 f"{np.mean(diff):+.2f} points", "", "",
                 " / ".join(f"{r - 1:+.1%}" for r in ratio), ""])
    return _table(["input", "seed 0 / 1 / 2", "student (recomputed statistics, 3 seeds)",
                   "EMA", "moving statistics", "wall time per seed (s)", "steps/s"], rows)


def transfer_4per_class():
    """Transfer from classes 0-4 to 5-9 of CIFAR-10, 4 labels per class, seeds 0-2."""
    data = _load("transfer_4per_class_2026-11-28.json")
    runs = _by(data["runs"], "method")
    summaries = {s["method"]: s for s in data["summaries"]}
    rows = []
    for method, label in (
            ("from scratch, supervised", "from scratch, supervised"),
            ("pretrained, supervised fine-tuning", "pretrained, supervised fine-tuning"),
            ("pretrained + fixmatch:threshold=0.8 (default)",
             "pretrained + FixMatch(0.8) (the default of 2026-11-28)"),
            ("pretrained + flexmatch", "**pretrained + FlexMatch**"),
            ("pretrained, supervised fine-tuning, equal wall time",
             "pretrained, supervised fine-tuning, equal wall time")):
        acc = [r["accuracy"] for r in runs[method]]
        s = summaries[method]
        rows.append([label, _pct(acc), _per_seed(acc),
                     _pct_of(s["student_mean"], s["student_std"]), f"{s['steps']:,}",
                     f"{s['seconds_per_run']:,}"])
    return _table(["method", "EMA test accuracy (3 seeds)", "seed 0 / 1 / 2", "student",
                   "steps", "wall time per run (s)"], rows)


def step_cost():
    """Milliseconds per training step, per method, on the CIFAR-10 protocol's model."""
    rows_in = _load("step_cost_2026-11-28.json")["rows"]
    base = next(r["ms_per_step"] for r in rows_in if r["method"] == "supervised")
    labels = {
        "supervised": "supervised",
        "supervised_strong": "supervised, strong view on labeled images",
        "fixmatch_joint": "FixMatch, weak view in the joint pass (its default)",
        "fixmatch_moving": "FixMatch, weak view forward-only, moving BatchNorm statistics",
        "fixmatch_batch": "FixMatch, weak view forward-only, its own batch statistics",
        "self_training": "SelfTraining, strong view on pseudo-labeled images (its default)",
        "self_training_weak": "SelfTraining, weak view on pseudo-labeled images",
    }
    rows = []
    for r in rows_in:
        ms = f"{r['ms_per_step']:.1f}" + (f" ({r['note']})" if "note" in r else "")
        rows.append([labels[r["method"]], ms, r["images_forward_backward"],
                     r["images_forward_only"], f"{r['ms_per_step'] / base:.2f}x",
                     f"{r['ms_per_step'] / r['images_forward_backward']:.2f}"])
    table = _table(["method", "ms / step", "images fwd+bwd", "images fwd only",
                    "cost vs supervised step", "ms per image fwd+bwd"], rows)
    refresh = next(r for r in rows_in if "table_refresh_s" in r)
    return (f"{table}\n\nOne refresh of the self-training table over "
            f"{refresh['table_images']:,} unlabeled images: {refresh['table_refresh_s']:.1f} s.")


def throughput():
    """keras-ssl's FixMatch step against a hand-written `tf.function` step."""
    data = _load("throughput_2026-11-27.json")
    ms = {r["measurement"]: r["ms_per_step"] for r in data["runs"]}
    hand, ram, piped = ms["hand_written"], ms["keras_ssl_in_ram"], ms["keras_ssl_tfdata"]
    rows = [
        [HAND_WRITTEN, f"{hand:.1f} ms/step"],
        ["keras-ssl (`fit` of `SemiSupervisedModel`), the same batches in RAM",
         f"{ram:.1f} ms/step"],
        ["keras-ssl `fit` on its `tf.data` source (views made in a parallel map, prefetch)",
         f"{piped:.1f} ms/step"],
        ["ratio keras-ssl / hand-written (in RAM)", f"{ram / hand:.2f}"],
        ["time blocked on input", f"{100.0 * data['input_blocked_share']:.1f} %"],
        ["`fit` on the `tf.data` source against in RAM",
         f"{100.0 * (1 - ram / piped):.1f} % slower"],
    ]
    return _table(["measurement", "value"], rows)


def gpu_tutorial():
    """The tutorial example on one GPU (JAX): the one stage that finished."""
    labels = {"two_phase": "keras-ssl two-phase", "supervised_equal_steps":
              "supervised, equal steps", "supervised_equal_time": "supervised, equal wall time"}
    rows = []
    for r in _load("gpu_tutorial_2026-11-28.json")["runs"]:
        if r["accuracy"] is None:
            rows.append([labels[r["method"]], r["note"], "", ""])
            continue
        label = (f"{labels[r['method']]} (supervised {r['supervised_steps']:,} steps, "
                 f"SSL {r['ssl_steps']:,})")
        rows.append([label, f"{100.0 * r['accuracy']:.2f} %", f"{r['steps']:,}",
                     f"{r['seconds']:,}"])
    return _table(["method", "test accuracy", "steps", "wall time (s)"], rows)


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
        rows.append([label, f"{np.mean(b):.3f} ± {np.std(b):.3f}", _per_seed(b, percent=False),
                     f"{np.mean(a):.3f} ± {np.std(a):.3f}", _per_seed(a, percent=False),
                     f"{np.mean(a) - np.mean(b):+.3f}"])
    return _table(["algorithm", "previous (3 seeds)", "per seed", "published form",
                   "per seed", "change"], rows)


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


TRANSFER_SPLITS = (("01234-56789", "0-4 → 5-9"), ("56789-01234", "5-9 → 0-4"))


def transfer_default():
    """The default on a pretrained backbone, two class splits, seeds 0-2, both baselines."""
    rows, gains_steps, gains_time = [], [], []
    for key, split in TRANSFER_SPLITS:
        runs = _by(_load(f"transfer_default_{key}.json")["runs"], "method")
        default = next(m for m in runs if m.endswith("(default)"))
        order = (("pretrained, supervised fine-tuning", "supervised fine-tuning, equal steps"),
                 ("pretrained, supervised fine-tuning, equal wall time",
                  "supervised fine-tuning, equal wall time"),
                 (default, "**the default** (`SelfTraining()`)"))
        acc = {}
        for method, label in order:
            group = runs[method]
            acc[method] = np.array([r["accuracy"] for r in group])
            made = [r.get("table_events") or [] for r in group]
            made = " / ".join(str(e[0][0]) if e else "-" for e in made) if method == default \
                else ""
            rows.append([split, label, _pct(acc[method]), _per_seed(acc[method]),
                         " / ".join(f"{r['steps']:,}" for r in group),
                         f"{np.mean([r['seconds'] for r in group]):,.0f}", made])
        path = os.path.join(RESULTS, f"transfer_default_no_warmup_{key}.json")
        if os.path.exists(path):  # the same runs without the warm-up, where measured
            group = _by(_load(os.path.basename(path))["runs"], "method")[
                "pretrained + default:min_labeled_accuracy=0"]
            plain = [r["accuracy"] for r in group]
            rows.append([split, "the default without its warm-up (`min_labeled_accuracy=0`)",
                         _pct(plain), _per_seed(plain),
                         " / ".join(f"{r['steps']:,}" for r in group), "not comparable", "0"])
        gains_steps.append(acc[default] - acc[order[0][0]])
        gains_time.append(acc[default] - acc[order[1][0]])
    steps, time = 100 * np.concatenate(gains_steps), 100 * np.concatenate(gains_time)
    label = "the default minus fine-tuning (equal steps / equal wall time)"
    rows.append(["both splits, 6 runs", label, f"{steps.mean():+.2f} / {time.mean():+.2f} points",
                 f"lowest run {steps.min():+.2f} / {time.min():+.2f}", "", "", ""])
    return _table(["split (pretrained → new)", "method", "EMA test accuracy (3 seeds)",
                   "seed 0 / 1 / 2", "steps", "wall time per run (s)",
                   "table made at step"], rows)


TABLES = {
    "cli_folders_15min": cli_folders_15min,
    "cli_folders_readme": cli_folders_readme,
    "digits_demo": digits_demo,
    "digits_sources": digits_sources,
    "cifar10_protocol": cifar10_protocol,
    "cifar10_tfdata": cifar10_tfdata,
    "transfer_4per_class": transfer_4per_class,
    "transfer_default": transfer_default,
    "step_cost": step_cost,
    "throughput": throughput,
    "gpu_tutorial": gpu_tutorial,
    "algorithms_digits": algorithms_digits,
    "algorithms_transfer": algorithms_transfer,
}

_BLOCK = re.compile(r"(<!-- report: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.DOTALL)


def render(text):
    """`text` with every generated block replaced by its table from the result files."""
    unknown = [m.group(2) for m in _BLOCK.finditer(text) if m.group(2) not in TABLES]
    if unknown:
        raise SystemExit(f"a generated block names unknown tables {unknown}; "
                         f"known: {sorted(TABLES)}")
    return _BLOCK.sub(lambda m: f"{m.group(1)}{TABLES[m.group(2)]()}\n{m.group(4)}", text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="do not write: exit 1 if a file differs from the result files")
    p.add_argument("--path", action="append",
                   help="a markdown file to render (repeatable); default BENCHMARKS.md and "
                        "README.md")
    args = p.parse_args(argv)
    status = 0
    for path in args.path or [BENCHMARKS, README]:
        with open(path) as f:
            text = f.read()
        rendered = render(text)
        blocks = len(_BLOCK.findall(text))
        if args.check:
            if rendered != text:
                print(f"{path} differs from what `python -m benchmarks.report` renders from "
                      "benchmarks/results/: run it and commit the result.", file=sys.stderr)
                status = 1
            else:
                print(f"{path}: {blocks} generated tables match the result files.")
            continue
        with open(path, "w") as f:
            f.write(rendered)
        print(f"rendered {blocks} tables into {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
