"""The tutorial's CIFAR-10 flow, done honestly.

MobileNet from scratch on 5,000 labeled + 20,000 unlabeled CIFAR-10 images:
a supervised baseline, then keras-ssl's two-phase recipe (supervised until the
validation loss plateaus, then semi-supervised until it plateaus again, with
BatchNorm statistics recomputed at each phase). Unlike the original:

* validation is carved from the training images (indices 25,000-30,000 of the
  tutorial's shuffle), never the test set;
* the 10,000 test images are read once per model, at the very end;
* the baseline gets the same number of steps as the SSL run it is compared
  with, the same model, optimizer, augmentation and best-weights selection.

    python examples/cifar10_tutorial.py --data /tmp/cifar10.npz            # full
    python examples/cifar10_tutorial.py --data /tmp/cifar10.npz --labeled 1000 \
        --unlabeled 5000 --steps 500 --steps-per-epoch 50 --patience 2     # CPU scale

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
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/cifar10_tutorial")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    split = datasets.cifar10_split(args.data, args.labeled, args.unlabeled)
    prep = keras.applications.mobilenet.preprocess_input  # -> [-1, 1]
    x_lab, x_unl, x_val = (prep(split[k].astype("float32")) for k in ("x_lab", "x_unl", "x_val"))
    y_lab, y_val = split["y_lab"], split["y_val"]
    print(f"CIFAR-10: {len(x_lab)} labeled, {len(x_unl)} unlabeled, {len(x_val)} validation "
          f"(from training data), {len(split['x_test'])} test (read once at the end)")

    def optimizer():
        return keras.optimizers.Adam(args.lr)

    # 1. keras-ssl's two-phase recipe with the default algorithm
    #    (FixMatch, threshold 0.8: the best on our CPU protocol), until both
    #    plateaus or the step budget.
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    report = keras_ssl.fit_two_phase(
        make_model(args.model), x_lab, y_lab, unlabeled=x_unl,
        validation_data=(x_val, y_val),
        unlabeled_ratio=args.ratio, batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        epochs=max(2, args.steps // args.steps_per_epoch), patience=args.patience,
        optimizer=optimizer(), verbose=args.verbose)
    ssl_seconds = time.perf_counter() - start
    ssl_steps = int(report.steps_run)
    print(report.summary())
    if report.switch_epoch is None:
        print("note: the validation loss did not plateau within --steps, so the SSL phase "
              "never started; raise --steps or lower --patience / --steps-per-epoch.")

    # 2. The supervised baseline with the same number of steps, the same
    #    model, optimizer, augmentation and best-validation-weights choice.
    keras.utils.set_random_seed(args.seed)
    baseline = keras_ssl.SemiSupervisedModel(make_model(args.model),
                                             unlabeled_ratio=args.ratio)
    baseline.compile(optimizer=optimizer(), metrics=["accuracy"])
    epochs = max(1, round(ssl_steps / args.steps_per_epoch))
    start = time.perf_counter()
    steps_per_epoch = max(1, ssl_steps // epochs)
    history = baseline.fit(
        x_lab, y_lab, batch_size=args.batch_size, epochs=epochs,
        steps_per_epoch=steps_per_epoch, validation_data=(x_val, y_val),
        callbacks=[keras_ssl.callbacks.BatchNormWarmup(x_lab, steps=20, before_validation=True),
                   keras.callbacks.EarlyStopping(monitor="val_loss", patience=10**9,
                                                 restore_best_weights=True)],
        verbose=args.verbose)
    keras_ssl.callbacks.recompute_batchnorm_statistics(baseline, x_lab, steps=20)
    base_seconds = time.perf_counter() - start
    # Steps run, from the epochs run: `ssl_step` is a model variable, so
    # restore_best_weights set it back to the best epoch's count.
    base_steps = len(history.epoch) * steps_per_epoch

    # 3. The test set, read once per model.
    x_test = prep(split["x_test"].astype("float32"))
    base_acc = baseline.evaluate(x_test, split["y_test"], verbose=0, return_dict=True)
    ssl_acc = report.model.evaluate(x_test, split["y_test"], verbose=0, return_dict=True)
    rows = [
        {"method": "supervised", "mean": base_acc["accuracy"], "std": 0.0,
         "seconds": base_seconds, "steps": base_steps, "runs": 1},
        {"method": "keras-ssl two-phase", "mean": ssl_acc["accuracy"], "std": 0.0,
         "seconds": ssl_seconds, "steps": ssl_steps, "runs": 1},
    ]
    print("\n| method | test accuracy | steps | wall time (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {100 * r['mean']:.2f}% | {r['steps']} | {r['seconds']:.0f} |")
    png = bar_chart(rows, os.path.join(args.out, "cifar10_tutorial.png"),
                    f"CIFAR-10, {len(x_lab)} labels, {args.model}")
    with open(os.path.join(args.out, "cifar10_tutorial.json"), "w") as f:
        json.dump({"args": vars(args), "results": rows, "switch_epoch": report.switch_epoch,
                   "switch_step": report.switch_step, "history": report.history}, f,
                  indent=2, default=float)
    print(f"wrote {png} and {os.path.join(args.out, 'cifar10_tutorial.json')}")


if __name__ == "__main__":
    main()
