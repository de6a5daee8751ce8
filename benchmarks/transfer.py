"""Offline transfer benchmark: a backbone pretrained on five CIFAR-10 classes, SSL on the others.

    python3 ../shared/data/cifar10_to_npz.py /tmp/cifar10.npz   # or omit --data: keras.datasets
    python -m benchmarks.transfer --data /tmp/cifar10.npz --labels-per-class 4 --seeds 0,1,2
    python -m benchmarks.transfer --data /tmp/cifar10.npz --source-classes 5,6,7,8,9

1. Pretraining (cached): the protocol's CNN (`cnn6`) trained supervised on the
   25,000 training images of the source classes (`--source-classes`, default
   0-4; `--pretrain-steps` steps, batch 64, SGD cosine, the weak view), saved to
   `--cache`; later runs reuse it.
2. Transfer: the other five classes (relabelled 0-4 in order). Labeled: the first
   `--labels-per-class` images of each class in a seeded shuffle (the seed also
   sets the initialisation); unlabeled: every other training image of those
   classes; test: their 5,000 test images, read after training only.
3. Methods, each `--steps` steps (batch `--batch-size`, ratio `--ratio`):
   supervised from scratch, pretrained supervised fine-tuning, pretrained +
   the library's default algorithm, pretrained + `--other`; then pretrained
   supervised fine-tuning for the default's wall time (equal wall time). The
   pretrained models keep every pretrained weight but the new 5-class head.

Evaluation as in `benchmarks.run`: BatchNorm statistics recomputed on the
unlabeled images, student and EMA (the library's default) accuracy of the same
run. Prints a markdown table; writes JSON and a PNG (accuracy against wall
time) to `--out`.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_ssl
from benchmarks import datasets, provenance, run

SOURCE = (0, 1, 2, 3, 4)  # the default --source-classes; the target is the other five


def pretrain(x, y, source, args):
    """cnn6 trained supervised on the source classes; weights cached at `args.cache`."""
    if os.path.exists(args.cache):
        print(f"pretrained weights: {args.cache} (cached)", flush=True)
        return args.cache
    keras.utils.set_random_seed(1234)
    y = np.vectorize({c: i for i, c in enumerate(source)}.get)(y)  # source classes 0-4
    net = datasets.cnn6(num_classes=len(source))
    model = keras_ssl.SemiSupervisedModel(net)
    schedule = keras.optimizers.schedules.CosineDecay(0.05, args.pretrain_steps)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                                 weight_decay=5e-3), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=10, steps_per_epoch=args.pretrain_steps // 10,
              verbose=args.verbose)
    keras_ssl.callbacks.recompute_batchnorm_statistics(net, x, steps=50, batch_size=128)
    os.makedirs(os.path.dirname(args.cache) or ".", exist_ok=True)
    net.save_weights(args.cache)
    print(f"pretrained on classes {source} ({len(x)} images, {args.pretrain_steps} steps) "
          f"in {time.perf_counter() - start:.0f} s -> {args.cache}", flush=True)
    return args.cache


def pretrained_net(path):
    """cnn6 with the pretrained body and a new, randomly initialised 5-class head."""
    pretrained = datasets.cnn6(num_classes=5)
    pretrained.load_weights(path)
    net = datasets.cnn6(num_classes=5)
    for new, old in zip(net.layers[:-1], pretrained.layers[:-1]):
        new.set_weights(old.get_weights())
    return net


def target_split(x, y, x_test, y_test, target, per_class, seed):
    remap = {c: i for i, c in enumerate(target)}
    keep = np.isin(y, target)
    x, y = x[keep], np.vectorize(remap.get)(y[keep])
    order = np.random.default_rng(seed).permutation(len(x))
    labeled = np.concatenate([order[y[order] == c][:per_class] for c in range(len(target))])
    unlabeled = np.setdiff1d(np.arange(len(x)), labeled)
    keep_test = np.isin(y_test, target)
    return {"x_lab": x[labeled], "y_lab": y[labeled], "x_unl": x[unlabeled],
            "y_unl": y[unlabeled], "x_test": x_test[keep_test],
            "y_test": np.vectorize(remap.get)(y_test[keep_test])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="CIFAR-10 npz; default keras.datasets (download)")
    p.add_argument("--labels-per-class", type=int, default=4)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--ratio", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--other", default="flexmatch",
                   help="the other algorithm compared (a name with options, as in "
                        "benchmarks.run; 'none': no other)")
    p.add_argument("--methods", default=None,
                   help="comma-separated algorithm specs to compare with pretrained "
                        "supervised fine-tuning alone (no from-scratch, default or "
                        "equal-wall-time rows); e.g. 'flexmatch,fixmatch:"
                        "distribution_alignment=True'")
    p.add_argument("--name", default=None,
                   help="stem of the result files (default transfer_<N>per_class)")
    p.add_argument("--no-scratch", action="store_true",
                   help="skip the from-scratch supervised row")
    p.add_argument("--source-classes", default="0,1,2,3,4",
                   help="the five CIFAR-10 classes the backbone is pretrained on; SSL "
                        "runs on the other five")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--cache", default=None,
                   help="pretrained weights (default results/transfer/"
                        "cnn6_classes<source>.weights.h5)")
    p.add_argument("--out", default="results/transfer")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    source = tuple(int(c) for c in args.source_classes.split(","))
    target = tuple(c for c in range(10) if c not in source)
    if len(source) != 5 or len(target) != 5:
        p.error("--source-classes takes five distinct CIFAR-10 classes (0-9)")
    split_name = "".join(map(str, source)) + "-" + "".join(map(str, target))
    if args.cache is None:
        args.cache = f"results/transfer/cnn6_classes{''.join(map(str, source))}.weights.h5"
    # What benchmarks.run.run_one reads from its arguments.
    args.dataset, args.epochs, args.optimizer, args.weight_decay = "cifar10", 10, "sgd", 5e-3

    x, y, x_test, y_test = datasets.load_cifar10(args.data)
    in_source = np.isin(y, source)
    path = pretrain(x[in_source], y[in_source], source, args)
    default = keras_ssl.algorithms.DEFAULT[0]
    default_spec = default + "".join(
        f"{';' if i else ':'}{k}={v}"
        for i, (k, v) in enumerate(keras_ssl.algorithms.DEFAULT[1].items()))

    def make_net(kind):
        return datasets.cnn6(num_classes=len(target)) if kind == "scratch" else (
            pretrained_net(path))

    results = []
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"transfer: pretrained on {source}, classes {target}, {args.labels_per_class} labels per class, "
          f"{args.steps} steps, batch {args.batch_size}, ratio {args.ratio}, seeds {seeds}",
          flush=True)
    for seed in seeds:
        split = target_split(x, y, x_test, y_test, target, args.labels_per_class, seed)
        batch = args.batch_size
        args.batch_size = min(batch, len(split["x_lab"]))
        if args.methods:
            rows = [run.run_one(args, split, "supervised", seed, args.steps,
                                make_net=make_net, label="pretrained, supervised fine-tuning")]
            rows += [run.run_one(args, split, spec, seed, args.steps, make_net=make_net,
                                 label=f"pretrained + {spec}")
                     for spec in args.methods.split(",")]
            args.batch_size = batch
            results += rows
            continue
        rows = [] if args.no_scratch else [
            run.run_one(args, split, "supervised", seed, args.steps,
                        make_net=lambda _: make_net("scratch"),
                        label="from scratch, supervised")]
        sup = run.run_one(args, split, "supervised", seed, args.steps, make_net=make_net,
                          label="pretrained, supervised fine-tuning")
        ssl = run.run_one(args, split, default_spec, seed, args.steps, make_net=make_net,
                          label=f"pretrained + {default_spec} (default)")
        rows += [sup, ssl]
        if args.other != "none":
            rows.append(run.run_one(args, split, args.other, seed, args.steps,
                                    make_net=make_net, label=f"pretrained + {args.other}"))
        equal = int(ssl["seconds"] * (sup["steady_steps_per_second"]
                                      or sup["steps_per_second"]))
        rows.append(run.run_one(args, split, "supervised", seed, equal, make_net=make_net,
                                label="pretrained, supervised fine-tuning, equal wall time"))
        args.batch_size = batch
        results += rows
    table = run.summarize(results)
    os.makedirs(args.out, exist_ok=True)
    default_name = f"transfer_{args.labels_per_class}per_class" + (
        "" if source == SOURCE else f"_{split_name}")
    stem = os.path.join(args.out, args.name or default_name)
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), **provenance.describe(), "table": table,
                   "runs": results}, f, indent=2)
    run.plot(table, stem + ".png",
             f"transfer {source} -> {target}, {args.labels_per_class} labels per class")
    print()
    print(run.markdown(table))
    print(f"\nwrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
