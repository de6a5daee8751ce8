"""Settings of one algorithm on the digits demo's protocol, over seeds.

    python -m benchmarks.digits_options self_training '{"refresh_every": 50}' \
        '{"threshold": 0.95}' --seeds 0,1,2

The demo's protocol (`keras_ssl.demo.train_digits`: 20 labels, the small CNN,
Adam 3e-3 with cosine decay, batch 20 + 140 unlabeled, 1,000 steps, from
scratch) with the algorithm built as `keras_ssl.algorithms.get(name,
steps=steps, flip=False, **options)` for each JSON object of options. Prints
each run's test accuracy (with the moving BatchNorm statistics, as
`evaluate` gives it, and with statistics recomputed on 10 batches of 128
clean unlabeled images) and the mean ± std per setting.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_ssl
from benchmarks import provenance
from keras_ssl.demo import load_digits_split, small_cnn


def run(name, options, seed, steps):
    keras.utils.set_random_seed(seed)
    x_lab, y_lab, x_unl, y_unl, x_test, y_test = load_digits_split(2, seed)
    algorithm = keras_ssl.algorithms.get(name, steps=steps, flip=False, **options)
    model = keras_ssl.SemiSupervisedModel(small_cnn(), algorithm, unlabeled_ratio=7)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), metrics=["accuracy"])
    model.fit(x_lab, y_lab, unlabeled=x_unl, unlabeled_labels=y_unl, batch_size=len(x_lab),
              epochs=10, steps_per_epoch=steps // 10, verbose=0)
    moving = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    keras_ssl.callbacks.recompute_batchnorm_statistics(model.model, x_unl, 10, 128)
    recomputed = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    return float(moving), float(recomputed), algorithm.describe()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("algorithm", help="a name of keras_ssl.algorithms.names()")
    p.add_argument("options", nargs="*", default=["{}"],
                   help="JSON objects of options, one setting each")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out", default=None, help="also write the runs to this JSON file")
    args = p.parse_args(argv)
    rows = []
    seeds = [int(s) for s in args.seeds.split(",")]
    for text in args.options:
        options = json.loads(text)
        runs = [run(args.algorithm, options, seed, args.steps) for seed in seeds]
        for seed, (moving, recomputed, described) in zip(seeds, runs):
            print(f"{described} seed {seed}: {moving:.3f} (recomputed statistics "
                  f"{recomputed:.3f})", flush=True)
        rows += [{"algorithm": args.algorithm, "options": options, "described": d,
                  "seed": seed, "accuracy": m, "recomputed_accuracy": r}
                 for seed, (m, r, d) in zip(seeds, runs)]
        moving = np.array([r[0] for r in runs])
        print(f"== {runs[0][2]}: {moving.mean():.3f} ± {moving.std():.3f} "
              f"({len(seeds)} seeds)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"protocol": "digits demo (keras_ssl.demo), 20 labels",
                       "steps": args.steps, **provenance.describe(), "runs": rows}, f,
                      indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
