"""The tutorial's CIFAR-10 flow, done honestly.

MobileNet from scratch on 5,000 labeled + 20,000 unlabeled CIFAR-10 images:
a supervised baseline, then keras-ssl's two-phase recipe (supervised until the
validation loss plateaus, then semi-supervised until it plateaus again, with
BatchNorm statistics recomputed at each phase). Unlike the original:

* validation is carved from the training images (indices 25,000-30,000 of the
  tutorial's shuffle), never the test set;
* the 10,000 test images are read once per model, after its training;
* two baselines get the same model, optimizer, augmentation and best-weights
  selection as the SSL run: one its number of steps, one its wall time.

    python examples/cifar10_tutorial.py --data /tmp/cifar10.npz            # full
    python examples/cifar10_tutorial.py --data /tmp/cifar10.npz --labeled 1000 \
        --unlabeled 5000 --steps 500 --steps-per-epoch 50 --patience 2     # CPU scale

Each stage (the two-phase run, then each baseline) saves its row to `--out`
when it ends; rerun with `--resume` after an interruption to skip them.

`--data` takes an npz with the arrays of `keras.datasets.cifar10.load_data()`
(`x_train`, `y_train`, `x_test`, `y_test`); without it the images come from
`keras.datasets.cifar10` (a download). Writes a bar chart
PNG and a JSON of the results to `--out`.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

import keras_ssl
from keras_ssl import datasets, models
from keras_ssl.demo import bar_chart


def make_model(name):
    if name == "mobilenet":
        return keras.applications.MobileNet(
            input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None)
    if name == "cnn6":
        return models.cnn6(value_range=(-1, 1))
    raise SystemExit(f"unknown --model {name!r}: use mobilenet or cnn6")


def _stage_args(args):
    """The arguments a saved stage must share with this run to be reused."""
    return {k: v for k, v in vars(args).items() if k not in ("resume", "verbose", "out")}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="CIFAR-10 npz; default keras.datasets (download)")
    p.add_argument("--labeled", type=int, default=5000)
    p.add_argument("--unlabeled", type=int, default=20000)
    p.add_argument("--steps", type=int, default=20000,
                   help="upper bound on the SSL run's steps (both phases)")
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--model", default="mobilenet", choices=["mobilenet", "cnn6"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ratio", type=int, default=3)
    p.add_argument("--patience", type=int, default=3,
                   help="epochs without a better --monitor value that end a phase")
    p.add_argument("--monitor", default="val_loss",
                   help="what the plateaus (and the best weights) are judged on: val_loss "
                   "(the original tutorial's) or val_accuracy")
    p.add_argument("--phase2-patience", type=int, default=None,
                   help="the same for the SSL phase (default: --patience); the unlabeled "
                   "loss pays late, after the teacher grows confident")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/cifar10_tutorial")
    p.add_argument("--augment-on-device", action="store_true",
                   help="make the augmented views inside the training step (on the GPU) "
                   "instead of in tf.data; on by itself where TensorFlow is not installed")
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--resume", action="store_true",
                   help="skip the stages already saved in --out by a run with the same "
                   "arguments (each stage is timed on its own)")
    args = p.parse_args()
    if not args.augment_on_device and not keras_ssl.data.tensorflow_available():
        print("TensorFlow is not installed: the views are made in the training step "
              "(--augment-on-device)")
        args.augment_on_device = True
    os.makedirs(args.out, exist_ok=True)

    split = datasets.cifar10_split(args.data, args.labeled, args.unlabeled)
    prep = keras.applications.mobilenet.preprocess_input  # -> [-1, 1]
    x_lab, x_unl, x_val = (prep(split[k].astype("float32")) for k in ("x_lab", "x_unl", "x_val"))
    y_lab, y_val = split["y_lab"], split["y_val"]
    print(f"CIFAR-10: {len(x_lab)} labeled, {len(x_unl)} unlabeled, {len(x_val)} validation "
          f"(from training data), {len(split['x_test'])} test (read once per model, after its "
          "training)")

    def optimizer():
        return keras.optimizers.Adam(args.lr)

    def wrapped():
        return keras_ssl.SemiSupervisedModel(make_model(args.model), unlabeled_ratio=args.ratio,
                                             augment_on_device=args.augment_on_device)

    x_test = prep(split["x_test"].astype("float32"))
    y_test = split["y_test"]
    # Each stage's row is saved when it ends (its test accuracy read right
    # after its training, once); `--resume` skips the stages already saved
    # with the same arguments, so the full scale can span several sittings.
    stages_path = os.path.join(args.out, "cifar10_tutorial_stages.json")
    stages = {}
    if args.resume and os.path.exists(stages_path):
        with open(stages_path) as f:
            saved = json.load(f)
        if saved.get("args") == _stage_args(args):
            stages = saved["stages"]
            print(f"resuming: {', '.join(stages)} already done ({stages_path})")
        else:
            print(f"not resuming: {stages_path} was saved with other arguments; starting over")

    def save(name, method, accuracy, seconds, steps, **extra):
        row = {"method": method, "mean": accuracy, "std": 0.0, "seconds": seconds,
               "steps": steps, "runs": 1, **extra}
        stages[name] = row
        with open(stages_path, "w") as f:
            json.dump({"args": _stage_args(args), "stages": stages}, f, indent=2, default=float)
        print(f"| {row['method']} | {100 * row['mean']:.2f}% | {row['steps']} | "
              f"{row['seconds']:.0f} s |", flush=True)

    # 1. keras-ssl's two-phase recipe with the default algorithm (for these
    #    array inputs SelfTraining), until both plateaus or the step budget.
    if "ssl" not in stages:
        keras.utils.set_random_seed(args.seed)
        start = time.perf_counter()
        report = keras_ssl.fit_two_phase(
            wrapped(), x_lab, y_lab, unlabeled=x_unl,
            validation_data=(x_val, y_val), batch_size=args.batch_size,
            steps_per_epoch=args.steps_per_epoch,
            epochs=max(2, args.steps // args.steps_per_epoch), patience=args.patience,
            phase2_patience=args.phase2_patience, monitor=args.monitor,
            optimizer=optimizer(), verbose=args.verbose)
        seconds = time.perf_counter() - start
        print(report.summary())
        if report.switch_epoch is None:
            print(f"note: {args.monitor} did not plateau within --steps, so the SSL phase "
                  "never started; raise --steps or lower --patience / --steps-per-epoch.")
        accuracy = report.model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        save("ssl", "keras-ssl two-phase", accuracy["accuracy"], seconds,
             int(report.steps_run), switch_epoch=report.switch_epoch,
             switch_step=report.switch_step, history=report.history)
    ssl_seconds, ssl_steps = stages["ssl"]["seconds"], stages["ssl"]["steps"]

    # 2. Supervised baselines, the same model, optimizer, augmentation and
    #    best-validation-weights choice: one with the SSL run's number of
    #    steps, one with its wall time (an SSL step costs several supervised
    #    steps; `TimeLimit` ends it at the first epoch end past those minutes).
    def supervised(epochs, steps_per_epoch, seconds=None):
        keras.utils.set_random_seed(args.seed)
        start = time.perf_counter()
        model = wrapped()
        model.compile(optimizer=optimizer(), metrics=["accuracy"])
        extra_callbacks = []
        if seconds is not None:  # what is left of the budget once the model is built
            left = max(seconds - (time.perf_counter() - start), 1.0)
            extra_callbacks.append(keras_ssl.callbacks.TimeLimit(minutes=left / 60, verbose=0))
        history = model.fit(
            x_lab, y_lab, batch_size=args.batch_size, epochs=epochs,
            steps_per_epoch=steps_per_epoch, validation_data=(x_val, y_val),
            callbacks=[keras_ssl.callbacks.BatchNormWarmup(x_lab, steps=20,
                                                           before_validation=True),
                       keras.callbacks.EarlyStopping(monitor=args.monitor, patience=10**9,
                                                     restore_best_weights=True),
                       *extra_callbacks],
            verbose=args.verbose)
        keras_ssl.callbacks.recompute_batchnorm_statistics(model, x_lab, steps=20)
        seconds = time.perf_counter() - start
        accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        # Steps run, from the epochs run: `ssl_step` is a model variable, so
        # restore_best_weights set it back to the best epoch's count.
        return accuracy["accuracy"], seconds, len(history.epoch) * steps_per_epoch

    if "equal_steps" not in stages:
        epochs = max(1, round(ssl_steps / args.steps_per_epoch))
        accuracy, seconds, steps = supervised(epochs, max(1, ssl_steps // epochs))
        save("equal_steps", "supervised, equal steps", accuracy, seconds, steps)
    if "equal_time" not in stages:
        accuracy, seconds, steps = supervised(10**6, args.steps_per_epoch, ssl_seconds)
        save("equal_time", "supervised, equal wall time", accuracy, seconds, steps)

    rows = [stages[k] for k in ("equal_steps", "equal_time", "ssl")]
    print("\n| method | test accuracy | steps | wall time (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {100 * r['mean']:.2f}% | {r['steps']} | {r['seconds']:.0f} |")
    png = bar_chart(rows, os.path.join(args.out, "cifar10_tutorial.png"),
                    f"CIFAR-10, {len(x_lab)} labels, {args.model}")
    with open(os.path.join(args.out, "cifar10_tutorial.json"), "w") as f:
        json.dump({"args": vars(args), "results": rows,
                   "switch_epoch": stages["ssl"]["switch_epoch"],
                   "switch_step": stages["ssl"]["switch_step"],
                   "history": stages["ssl"]["history"]}, f, indent=2, default=float)
    print(f"wrote {png} and {os.path.join(args.out, 'cifar10_tutorial.json')}")


if __name__ == "__main__":
    main()
