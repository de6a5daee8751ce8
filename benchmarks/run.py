"""Accuracy at an equal budget: every method gets the same model, optimizer,
augmentation and number of steps (or, for `--equal-time`, the same wall time).

    python -m benchmarks.run --dataset digits --labels 20 --seeds 0,1,2 --steps 1000
    python -m benchmarks.run --dataset cifar10 --data /tmp/cifar10.npz --labels 1000 \
        --methods supervised,freematch,fixmatch,mean_teacher,oracle --equal-time freematch \
        --steps 3500 --batch-size 32 --ratio 3 --seeds 0

Methods: supervised, supervised_strong (the labeled images get the strong
view), oracle (supervised on the labeled and unlabeled images with their true
labels: the ceiling) and every registered algorithm (`keras_ssl.algorithms.names()`).
Options go after a colon, separated by `;`, e.g. `fixmatch:threshold=0.8`;
`warmup=N` (any SSL method) first trains N supervised steps (cheap steps, no
unlabeled batch) and then the method for the rest, under one schedule;
`target_pass=joint|batch|moving` is passed to `SemiSupervisedModel`.

Evaluation: after training, BatchNorm statistics are recomputed exactly on
the unlabeled training images (not augmented) for the final weights and the
test accuracy is taken ("student"); then the same for the model's EMA of the
weights ("ema", decay 0.999, the library's default); and the student with the
moving BatchNorm statistics `fit` left ("moving", what `model.evaluate`
gives). All three come from the same run; the test images are read after
training only.

`--equal-time METHOD` adds supervised and supervised_strong runs (or those
named by `--equal-time-baselines`) with the wall time of METHOD: the step
count is METHOD's measured wall time (training and table refreshes) times
supervised's steady rate, or `--equal-time-steps` when given (e.g. from step
costs measured on an idle machine with `benchmarks.step_cost`, or from
another seed's run; `--methods ""` then runs the baselines alone).
Prints a markdown table and writes JSON and a PNG of
test accuracy against wall time.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_ssl
from benchmarks import datasets, provenance


def parse_method(spec):
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(";")):
        key, _, value = item.partition("=")
        if value in ("True", "False"):
            options[key] = value == "True"
        elif value.replace(".", "", 1).isdigit():
            options[key] = float(value)
        else:
            options[key] = value
    return name, options


SUPERVISED = ("supervised", "oracle", "supervised_strong")


def base_name(name):
    return name.replace("_equal_time", "")


def make_algorithm(name, options, flip, steps, value_range):
    name = base_name(name)
    if name == "supervised_strong":
        strong = keras_ssl.augment.strong_augmentation(value_range, flip=flip)
        return keras_ssl.FixMatch(flip=flip, weak=strong)  # labeled images: strong view
    if name in SUPERVISED:
        return keras_ssl.FixMatch(flip=flip)  # only its weak view is used
    try:
        return keras_ssl.algorithms.get(name, steps=steps, flip=flip, **options)
    except ValueError as error:
        raise SystemExit(str(error)) from None


class _StepTimer(keras.callbacks.Callback):
    """Wall time of the training steps only (excludes the final evaluation).

    Also the steady rate: steps per second after the first epoch, which
    carries the one-off tracing and pipeline start-up.
    """

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epoch_ends = []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.epoch_ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.seconds += time.perf_counter() - self.start


def run_one(args, split, method_spec, seed, steps, make_net=None, label=None):
    """Train one method for `steps` steps; return its result row.

    `make_net(method_name)` builds the network (default: the dataset's
    model); `label` names the row (default: the method spec).
    """
    name, options = parse_method(method_spec)
    warmup = int(options.pop("warmup", 0))
    model_kwargs = {}
    if "target_pass" in options:
        model_kwargs["target_pass"] = options.pop("target_pass")
    keras.utils.set_random_seed(seed)
    if make_net is not None:
        net, flip, value_range = make_net(base_name(name)), True, (0, 255)
    elif args.dataset == "cifar10":
        net, flip, value_range = datasets.cnn6(), True, (0, 255)
    else:
        from keras_ssl.demo import small_cnn

        net, flip, value_range = small_cnn(), False, (0, 16)
    algorithm = make_algorithm(name, options, flip, steps - warmup, value_range)
    model = keras_ssl.SemiSupervisedModel(net, algorithm, unlabeled_ratio=args.ratio,
                                          **model_kwargs)
    if args.optimizer == "sgd":
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                         weight_decay=args.weight_decay)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps)
        optimizer = keras.optimizers.Adam(schedule, weight_decay=args.weight_decay or None)
    model.compile(optimizer=optimizer, metrics=["accuracy"])
    x, y = split["x_lab"], split["y_lab"]
    unlabeled = split["x_unl"]
    if name == "oracle":
        x = np.concatenate([x, split["x_unl"]])
        y = np.concatenate([y, split["y_unl"]])
    use_unlabeled = base_name(name) not in SUPERVISED
    epochs = max(1, min(args.epochs, steps))
    per_epoch = steps // epochs
    warm_epochs = round(warmup / per_epoch) if warmup else 0
    timer = _StepTimer()
    batch_size = min(args.batch_size, len(x))
    if warm_epochs:
        model.fit(x, y, batch_size=batch_size, epochs=warm_epochs,
                  steps_per_epoch=per_epoch, callbacks=[timer], verbose=args.verbose)
    inputs = {"x": x, "y": y, "unlabeled": unlabeled if use_unlabeled else None,
                  "unlabeled_labels": split["y_unl"] if use_unlabeled else None,
                  "batch_size": batch_size}
    if getattr(args, "input", "array") != "array" and use_unlabeled:
        inputs = _as_streams(args.input, inputs, seed, args.ratio)
    history = model.fit(
        **inputs, epochs=epochs, initial_epoch=warm_epochs,
        steps_per_epoch=per_epoch, callbacks=[timer], verbose=args.verbose,
    )
    logs = {k: float(v[-1]) for k, v in history.history.items()}
    done = int(keras.ops.convert_to_numpy(model.ssl_step))
    # BatchNorm statistics recomputed on the unlabeled training images for the
    # final weights, then for the EMA weights; the test set is read after
    # training only.
    bn_images = split["x_unl"]
    # The model as `fit` leaves it (moving BatchNorm statistics): what a
    # user's `model.evaluate` gives.
    moving = model.evaluate(split["x_test"], split["y_test"], verbose=0, return_dict=True)
    with model.ema_weights(batchnorm_data=bn_images, batchnorm_steps=50, student=True):
        student = model.evaluate(split["x_test"], split["y_test"], verbose=0, return_dict=True)
    with model.ema_weights(batchnorm_data=bn_images, batchnorm_steps=50):
        ema = model.evaluate(split["x_test"], split["y_test"], verbose=0, return_dict=True)
    table = model.pseudo_label_table
    method_spec = label or method_spec
    result = {"method": method_spec, "seed": seed, "steps": done,
              "accuracy": float(ema["accuracy"]),
              "student_accuracy": float(student["accuracy"]),
              "moving_accuracy": float(moving["accuracy"]),
              "ema_accuracy": float(ema["accuracy"]),
              "seconds": timer.seconds,
              "steps_per_second": done / timer.seconds,
              "steady_steps_per_second": _steady_rate(timer, per_epoch),
              "table_seconds": None if table is None else table.seconds,
              "table_events": None if table is None else [
                  [int(step), what, None if acc is None else float(acc)]
                  for step, what, acc in table.events],
              "mask_rate": logs.get("mask_rate"),
              "pseudo_label_accuracy": logs.get("pseudo_label_accuracy"),
              "final_logs": logs}
    print(f"  {method_spec:>24} seed {seed}: test accuracy EMA {result['ema_accuracy']:.4f} "
          f"student {result['student_accuracy']:.4f} "
          f"(moving statistics {result['moving_accuracy']:.4f}), "
          f"{done} steps in {timer.seconds:.0f} s ({result['steps_per_second']:.2f} steps/s)"
          + (f", mask rate {result['mask_rate']:.2f}" if result["mask_rate"] is not None
             else "")
          + (f", pseudo-label accuracy {result['pseudo_label_accuracy']:.3f}"
             if result["pseudo_label_accuracy"] is not None else ""), flush=True)
    return result


def _as_streams(kind, inputs, seed, ratio):
    """fit's inputs as a user with a tf.data pipeline passes them.

    "tfdata": a shuffled, batched labeled dataset and a batched unlabeled
    dataset; "zipped": `Dataset.zip((labeled.repeat(), unlabeled))`, the
    unlabeled images shuffled, repeated and batched at `ratio` per labeled
    image (no monitoring labels: a zipped stream has none).
    """
    import tensorflow as tf

    batch = inputs["batch_size"]
    labeled = tf.data.Dataset.from_tensor_slices((inputs["x"], inputs["y"]))
    labeled = labeled.shuffle(len(inputs["x"]), seed=seed).batch(batch)
    images = tf.data.Dataset.from_tensor_slices(inputs["unlabeled"])
    if kind == "tfdata":
        return {"x": labeled, "unlabeled": images.batch(256),
                    "unlabeled_labels": inputs["unlabeled_labels"]}
    unlabeled = images.shuffle(len(inputs["unlabeled"]), seed=seed).repeat()
    return {"x": tf.data.Dataset.zip((labeled.repeat(), unlabeled.batch(batch * ratio)))}


def _steady_rate(timer, per_epoch):
    """Steps/s over the last fit's epochs after its first (tracing, start-up)."""
    if len(timer.epoch_ends) < 2:
        return None
    return per_epoch * (len(timer.epoch_ends) - 1) / (timer.epoch_ends[-1] - timer.epoch_ends[0])


def summarize(results):
    rows = {}
    for r in results:
        rows.setdefault(r["method"], []).append(r)
    table = []
    for method, runs in rows.items():
        acc = np.array([r["accuracy"] for r in runs])
        student = np.array([r["student_accuracy"] for r in runs])
        moving = np.array([r["moving_accuracy"] for r in runs])
        masks = [r["mask_rate"] for r in runs if r["mask_rate"] is not None]
        table.append({
            "method": method, "runs": len(runs), "mean": float(acc.mean()),
            "std": float(acc.std()), "student_mean": float(student.mean()),
            "student_std": float(student.std()),
            "moving_mean": float(moving.mean()), "moving_std": float(moving.std()),
            "per_seed": [round(100 * float(a), 2) for a in acc],
            "steps": int(np.mean([r["steps"] for r in runs])),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
            "steps_per_second": float(np.mean([r["steps_per_second"] for r in runs])),
            "mask_rate": float(np.mean(masks)) if masks else None,
        })
    return table


def markdown(table):
    lines = [("| method | EMA test accuracy (mean ± std) | per seed | student (mean ± std) "
              "| moving statistics (mean ± std) | runs | steps | wall time (s) | steps/s "
              "| final mask rate |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        mask = "-" if row["mask_rate"] is None else f"{row['mask_rate']:.2f}"
        seeds = " / ".join(f"{a:.2f}" for a in row["per_seed"])
        lines.append(f"| {row['method']} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | "
                     f"{seeds} | {100 * row['student_mean']:.2f} ± "
                     f"{100 * row['student_std']:.2f} | "
                     f"{100 * row['moving_mean']:.2f} ± {100 * row['moving_std']:.2f} | "
                     f"{row['runs']} | {row['steps']} | {row['seconds']:.0f} | "
                     f"{row['steps_per_second']:.2f} | {mask} |")
    return "\n".join(lines)


def plot(table, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in table:
        ax.errorbar(row["seconds"], 100 * row["mean"], yerr=100 * row["std"], fmt="o",
                    capsize=4, label=row["method"])
    ax.set_xlabel("wall time per run (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["digits", "cifar10"], default="digits")
    p.add_argument("--data", help="CIFAR-10 npz (cifar10_to_npz.py output); "
                   "default keras.datasets (download)")
    p.add_argument("--labels", type=int, default=20)
    p.add_argument("--unlabeled", type=int, default=20000, help="CIFAR-10 unlabeled images")
    p.add_argument("--methods", default="supervised,fixmatch,mean_teacher,oracle")
    p.add_argument("--equal-time", metavar="METHOD",
                   help="also run supervised and supervised_strong for the wall time of "
                   "METHOD")
    p.add_argument("--equal-time-steps", type=int,
                   help="step count of the equal-wall-time runs (default: from METHOD's "
                   "measured wall time and supervised's steady rate)")
    p.add_argument("--equal-time-baselines", default="supervised,supervised_strong",
                   help="which equal-wall-time baselines to run (comma-separated)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10, help="epochs the steps are split into")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ratio", type=int, default=7)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--input", choices=["array", "tfdata", "zipped"], default="array",
                   help="how fit gets the SSL methods' data: numpy arrays, tf.data "
                   "datasets, or one zipped (labeled, unlabeled) dataset")
    args = p.parse_args(argv)
    cifar = args.dataset == "cifar10"
    args.optimizer = args.optimizer or ("sgd" if cifar else "adam")
    args.lr = args.lr or (0.03 if args.optimizer == "sgd" else 3e-3)
    if args.weight_decay is None:
        args.weight_decay = 5e-3 if args.optimizer == "sgd" else 0.0
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    baselines = [b + "_equal_time" for b in args.equal_time_baselines.split(",") if b]
    unknown = set(baselines) - {"supervised_equal_time", "supervised_strong_equal_time"}
    if unknown:
        p.error(f"--equal-time-baselines takes supervised and/or supervised_strong, got "
                f"{args.equal_time_baselines!r}")
    if args.equal_time and args.equal_time_steps is None and not {
            args.equal_time, "supervised"} <= set(methods):
        p.error("--equal-time without --equal-time-steps measures the step count: put both "
                f"{args.equal_time!r} and 'supervised' in --methods")
    results = []
    print(f"benchmark: {args.dataset}, {args.labels} labels, {args.steps} steps, batch "
          f"{args.batch_size}, ratio {args.ratio}, {args.optimizer} lr {args.lr} wd "
          f"{args.weight_decay}, seeds {seeds}", flush=True)
    for seed in seeds:
        if cifar:
            split = datasets.cifar10_split(args.data, args.labels, args.unlabeled,
                                           validation=False)
        else:
            split = datasets.digits_split(args.labels, seed)
        seed_results = []
        for method in methods:
            seed_results.append(run_one(args, split, method, seed, args.steps))
        if args.equal_time:
            steps = args.equal_time_steps
            if steps is None:
                ref = next(r for r in seed_results if r["method"] == args.equal_time)
                sup = next(r for r in seed_results if r["method"] == "supervised")
                steps = int(ref["seconds"] * sup["steady_steps_per_second"])
            for baseline in baselines:
                seed_results.append(run_one(args, split, baseline, seed, steps))
        results += seed_results
    table = summarize(results)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.dataset}_{args.labels}labels"
                        + ("" if args.input == "array" else f"_{args.input}"))
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), **provenance.describe(), "table": table,
                   "runs": results}, f, indent=2)
    plot(table, stem + ".png", f"{args.dataset}, {args.labels} labels")
    print()
    print(markdown(table))
    print(f"\nwrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
