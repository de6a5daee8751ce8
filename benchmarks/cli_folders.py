"""The command line on CIFAR-10 written as image files, as a user runs it.

    python -m benchmarks.cli_folders write --data cifar10.npz --root /tmp/cifar_files
    python -m benchmarks.cli_folders run --root /tmp/cifar_files --minutes 15 --seeds 0,1,2

`write` makes three folders from the CIFAR-10 protocol's split
(`benchmarks.datasets.cifar10_split`): `labeled/` (the 1,000 labeled images
as PNG files in one sub-folder per class), `unlabeled/` (the 20,000
unlabeled images as JPEG files, quality 95) and `test/` (the first 2,000
test images as PNG files in class sub-folders). `run` times, for each seed,

    keras-ssl train labeled --unlabeled unlabeled --minutes M --seed S --out ...
    keras-ssl train labeled --minutes M --seed S --out ...      (supervised)

each as its own process, then scores both models with `keras-ssl evaluate`
on `test/`, which training never reads. It prints a table and writes
`cli_folders.json` under `--out`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import provenance

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
           "ship", "truck")


def write(args):
    from PIL import Image

    from benchmarks import datasets

    split = datasets.cifar10_split(args.data, args.labels, args.unlabeled, validation=False)
    parts = {"labeled": (split["x_lab"], split["y_lab"], "png"),
             "unlabeled": (split["x_unl"], None, "jpg"),
             "test": (split["x_test"][:args.test], split["y_test"][:args.test], "png")}
    for name, (images, labels, ext) in parts.items():
        for index, image in enumerate(images):
            folder = os.path.join(args.root, name)
            if labels is not None:
                folder = os.path.join(folder, CLASSES[int(labels[index])])
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{index:05d}.{ext}")
            options = {"quality": 95} if ext == "jpg" else {}
            Image.fromarray(image).save(path, **options)
        print(f"wrote {len(images)} {ext.upper()} files under {args.root}/{name}", flush=True)


def _command(argv):
    """Run a keras-ssl command in its own process; return its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "keras_ssl_cli", *argv], check=True)
    return time.perf_counter() - start


METHODS = ("ssl", "supervised", "supervised_equal_steps")


def _train_seconds(out, default):
    """Seconds the run in `out` spent training (its fit calls), from its run.json.

    `default` when the run's folder is gone (results of an earlier machine).
    """
    path = os.path.join(out, "run.json")
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)["results"]["ssl"]["seconds"]


def run(args):
    root = args.root
    results = []
    if args.previous:  # rows already measured: only the missing ones run
        with open(args.previous) as f:
            results = json.load(f)["runs"]
    methods = args.methods.split(",")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in methods:
            if any(r["method"] == method and r["seed"] == seed for r in results):
                continue
            out = os.path.join(args.out, f"{method}_seed{seed}")
            minutes = args.minutes
            argv = ["train", os.path.join(root, "labeled"), "--seed", str(seed), "--out",
                    out, "--verbose", str(args.verbose)]
            if method == "ssl":
                argv += ["--unlabeled", os.path.join(root, "unlabeled")]
            if method == "supervised_equal_steps":
                # The supervised command with the minutes that give it the SSL
                # run's steps: first at the rate of the equal-time supervised
                # run, then up to twice more at the rate the last try reached (a
                # short run spends a larger share on start-up and validation).
                ssl, sup = (next(r for r in results if r["method"] == m and r["seed"] == seed)
                            for m in ("ssl", "supervised"))
                rate_run = os.path.join(args.out, f"supervised_seed{seed}")
                steps, seconds = sup["steps"], sup["seconds"]
                done = [r for r in results if r["method"] == method]
                if done:  # the rate of an equal-steps run of another seed
                    rate_run = os.path.join(args.out, f"{method}_seed{done[-1]['seed']}")
                    steps, seconds = done[-1]["steps"], done[-1]["seconds"]
                for attempt in range(3):
                    train = _train_seconds(rate_run, default=seconds)
                    overhead = seconds - train  # reading, start-up, writing
                    minutes = round((ssl["steps"] * train / steps + overhead) / 60, 3)
                    seconds = _command(argv + ["--minutes", str(minutes)]
                                       + ["--overwrite"])
                    with open(os.path.join(out, "run.json")) as f:
                        steps = json.load(f)["results"]["ssl"]["steps"]
                    rate_run = out
                    if abs(steps - ssl["steps"]) <= 0.03 * ssl["steps"]:
                        break
            else:
                seconds = _command(argv + ["--minutes", str(minutes)])
            scores = os.path.join(out, "test_scores.json")
            _command(["evaluate", os.path.join(out, "model.keras"),
                      os.path.join(root, "test"), "--out", scores])
            with open(scores) as f:
                accuracy = json.load(f)["accuracy"]
            with open(os.path.join(out, "run.json")) as f:
                run_json = json.load(f)
            row = {"method": method, "seed": seed, "test_accuracy": accuracy,
                   "seconds": round(seconds, 1), "budget_seconds": 60 * minutes,
                   "steps": run_json["results"]["ssl"]["steps"],
                   "train_seconds": run_json["results"]["ssl"]["seconds"],
                   "phase1_epochs": run_json["results"]["ssl"]["phase1_epochs"],
                   "val_accuracy": run_json["results"]["ssl"]["val_accuracy"]}
            print(f"  seed {seed} {method:>22}: test accuracy {accuracy:.4f}, "
                  f"{row['steps']} steps, {seconds:.0f} s of {60 * minutes:.0f} s",
                  flush=True)
            results.append(row)
            _save(args, results)  # after each run: a stopped benchmark keeps its rows
    print("\n| method | test accuracy, per seed | mean ± std | steps | wall time / budget |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        rows = sorted((r for r in results if r["method"] == method), key=lambda r: r["seed"])
        if not rows:
            continue
        acc = np.array([r["test_accuracy"] for r in rows]) * 100
        ratio = [r["seconds"] / r["budget_seconds"] for r in rows]
        steps = [r["steps"] for r in rows]
        print(f"| {method} | {' / '.join(f'{a:.2f}' for a in acc)} | {acc.mean():.2f} ± "
              f"{acc.std():.2f} | {min(steps)}-{max(steps)} | "
              f"{min(ratio):.2f}-{max(ratio):.2f} |")
    _save(args, results)


def _save(args, results):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cli_folders.json"), "w") as f:
        json.dump({"args": vars(args), **provenance.describe(), "runs": results}, f,
                  indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the CIFAR-10 protocol's images as files")
    w.add_argument("--data", help="CIFAR-10 npz; default keras.datasets (download)")
    w.add_argument("--root", required=True)
    w.add_argument("--labels", type=int, default=1000)
    w.add_argument("--unlabeled", type=int, default=20000)
    w.add_argument("--test", type=int, default=2000)
    r = sub.add_parser("run", help="keras-ssl train with and without --unlabeled, scored "
                                   "on test/")
    r.add_argument("--root", required=True)
    r.add_argument("--minutes", type=float, default=15)
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--out", default="results/cli_folders")
    r.add_argument("--verbose", type=int, default=0)
    r.add_argument("--methods", default=",".join(METHODS),
                   help="ssl: the command with --unlabeled; supervised: without it, same "
                        "minutes; supervised_equal_steps: without it, with the minutes that "
                        "give it the ssl run's steps (needs the other two)")
    r.add_argument("--previous", help="a cli_folders.json whose runs are kept, not rerun")
    args = parser.parse_args(argv)
    write(args) if args.command == "write" else run(args)


if __name__ == "__main__":
    main()
