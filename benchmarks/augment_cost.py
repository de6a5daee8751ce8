"""Cost of the weak and strong views in a `tf.data` map, per batch of images.

    python -m benchmarks.augment_cost --batch 96 --batches 30

Maps each view over the same batch of random uint8-range float32 images in
`tf.data` (where keras-ssl makes its views by default) and prints the mean
time per batch: the weak view, the strong view, `PerImageRandAugment` alone,
cutout alone, and each of Keras's 11 RandAugment operations on the whole
batch. Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from benchmarks import provenance
from keras_ssl.augment import PerImageRandAugment, strong_augmentation, weak_augmentation


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    x = np.random.default_rng(0).integers(0, 256, (args.batch, 32, 32, 3)).astype("float32")
    source = tf.data.Dataset.from_tensors(x).repeat(args.batches)

    def ms_per_batch(fn):
        dataset = source.map(fn)
        for _ in dataset.take(2):  # trace and warm up
            pass
        start = time.perf_counter()
        n = sum(1 for _ in dataset)
        return 1000 * (time.perf_counter() - start) / n

    weak, strong = weak_augmentation(), strong_augmentation()
    randaug = PerImageRandAugment(value_range=(0, 255))
    randaug.build(x.shape)
    cutout = keras.layers.RandomErasing(factor=(1.0, 1.0), scale=(0.25, 0.25),
                                        fill_value=127.5, value_range=(0, 255))
    rows = [("weak view", lambda b: weak(b, training=True)),
            ("strong view", lambda b: strong(b, training=True)),
            ("PerImageRandAugment (2 ops per image)", lambda b: randaug(b, training=True)),
            ("cutout (RandomErasing)", lambda b: cutout(b, training=True))]
    for name in randaug._AUGMENT_LAYERS:
        layer = getattr(randaug, name)

        def one_op(b, layer=layer):
            layer.backend.set_backend("tensorflow")
            value = layer.get_random_transformation(b, training=True)
            return layer.transform_images(b, value, training=True)

        rows.append((f"  {name} (whole batch)", one_op))
    print(f"ms per batch of {args.batch} 32x32x3 images in a tf.data map, "
          f"mean of {args.batches} batches")
    measured = []
    for name, fn in rows:
        measured.append({"view": name.strip(), "ms_per_batch": ms_per_batch(fn)})
        print(f"{name:<40} {measured[-1]['ms_per_batch']:7.1f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), **provenance.describe(), "rows": measured}, f,
                      indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
