"""What a training step costs, per method, through the real `fit` and `tf.data` source.

    python -m benchmarks.step_cost --data /tmp/cifar10.npz --steps 150

The CIFAR-10 protocol's model (cnn6), batch 32, `--ratio` unlabeled images per
labeled one, SGD: for each method one `fit` of `--warmup` untimed steps (tracing,
pipeline start-up) and then `--steps` timed ones, augmentation in the
`tf.data` pipeline as in training. Prints ms per step, the images that go
through the model forward and backward, those that go forward only, the cost
per step relative to a supervised step, and, for self-training, the time of
one refresh of the pseudo-label table over `--unlabeled` images. Run it on an
otherwise idle machine: the numbers are what the equal-wall-time baselines
are sized from.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

import keras_ssl
from benchmarks import datasets, provenance

METHODS = {
    # name: (algorithm factory, SemiSupervisedModel kwargs, uses unlabeled).
    # fixmatch_joint: weak view in the joint forward+backward pass;
    # fixmatch_batch / _moving: weak view forward-only, BatchNorm with its
    # batch's / the moving statistics (SemiSupervisedModel(target_pass=...)).
    "supervised": (lambda: keras_ssl.FixMatch(), {}, False),
    "supervised_strong": (
        lambda: keras_ssl.FixMatch(weak=keras_ssl.augment.strong_augmentation((0, 255))),
        {}, False),
    "fixmatch_joint": (lambda: keras_ssl.FixMatch(0.8), {"target_pass": "joint"}, True),
    "fixmatch_batch": (
        lambda: keras_ssl.FixMatch(0.8), {"target_pass": "batch"}, True),
    "fixmatch_moving": (
        lambda: keras_ssl.FixMatch(0.8), {"target_pass": "moving"}, True),
    "self_training": (lambda: keras_ssl.SelfTraining(refresh_every=10 ** 9), {}, True),
    "self_training_weak": (
        lambda: keras_ssl.SelfTraining(refresh_every=10 ** 9, unlabeled_view="weak"), {}, True),
}


class _Timer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup = warmup
        self.start = None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.warmup - 1:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def measure(name, x, y, u, args):
    make, kwargs, use_unlabeled = METHODS[name]
    keras.utils.set_random_seed(0)
    model = keras_ssl.SemiSupervisedModel(datasets.cnn6(), make(),
                                          unlabeled_ratio=args.ratio, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True))
    timer = _Timer(args.warmup)
    model.fit(x, y, unlabeled=u if use_unlabeled else None, batch_size=32, epochs=1,
              steps_per_epoch=args.warmup + args.steps, callbacks=[timer], verbose=0)
    ms = 1000 * timer.seconds / args.steps
    algorithm = model.algorithm
    n_unl = 32 * args.ratio if use_unlabeled else 0
    separate = model._separate_target_views() if use_unlabeled else ()
    forward_only = n_unl * len(separate)
    backward = 32 + n_unl * (len(algorithm.views) - len(separate) if use_unlabeled else 0)
    row = {"method": name, "ms_per_step": ms, "images_forward_backward": backward,
           "images_forward_only": forward_only}
    if model.pseudo_label_table is not None:
        table = model.pseudo_label_table
        start = time.perf_counter()
        table.refresh(model)
        row["table_refresh_s"] = time.perf_counter() - start
        row["table_images"] = len(table)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="CIFAR-10 npz; default keras.datasets (download)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--ratio", type=int, default=3)
    p.add_argument("--unlabeled", type=int, default=20000)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default="results/step_cost.json")
    args = p.parse_args(argv)
    split = datasets.cifar10_split(args.data, 1000, args.unlabeled, validation=False)
    rows = []
    for name in args.methods.split(","):
        rows.append(measure(name, split["x_lab"], split["y_lab"], split["x_unl"], args))
        print(f"  {name}: {rows[-1]['ms_per_step']:.1f} ms/step", flush=True)
    base = next((r["ms_per_step"] for r in rows if r["method"] == "supervised"), None)
    print("\n| method | ms / step | images fwd+bwd | images fwd only | cost vs supervised "
          "step | ms per image through the model (fwd+bwd) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ms_per_step'] / base:.2f}x" if base else "-"
        per_image = r["ms_per_step"] / r["images_forward_backward"]
        print(f"| {r['method']} | {r['ms_per_step']:.1f} | {r['images_forward_backward']} | "
              f"{r['images_forward_only']} | {ratio} | {per_image:.2f} |")
    for r in rows:
        if "table_refresh_s" in r:
            print(f"\nself-training table refresh over {r['table_images']} images "
                  f"(teacher weights, BatchNorm recomputed): {r['table_refresh_s']:.1f} s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), **provenance.describe(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
