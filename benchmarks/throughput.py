"""Time per SSL step: keras-ssl vs a minimal hand-written TensorFlow step.

    python -m benchmarks.throughput --steps 60 --batch-size 32 --ratio 3

Both train the same CNN (same initial weights) with the same FixMatch
losses, the same concatenated forward pass and the same SGD optimizer, on
the same pre-augmented batches held in memory, so only the step differs:

* hand-written: one `tf.function` (GradientTape, concat, softmax/threshold/
  masked cross-entropy, `optimizer.apply_gradients`).
* keras-ssl: Keras's `fit` of the `SemiSupervisedModel` on those batches
  (its train function, callbacks and metrics included).

Then `fit` on the real `tf.data` source (augmentation mapped in parallel,
prefetch) gives the share of step time spent waiting for input:
`1 - time_in_memory / time_with_pipeline`. Run it on an otherwise idle
machine; it prints one line per measurement and the ratio.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_ssl
from benchmarks import datasets


def _images(n, rng, data):
    if data:
        x = datasets.load_cifar10(data)[0]
        return x[rng.choice(len(x), n, replace=False)]
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def hand_written_step(net, optimizer, threshold):
    @tf.function
    def step(iterator):
        inputs, y = next(iterator)
        xl, uw, us = inputs["labeled"], inputs["weak"], inputs["strong"]
        nl, nu = tf.shape(xl)[0], tf.shape(uw)[0]
        with tf.GradientTape() as tape:
            logits = net(tf.concat([xl, uw, us], 0), training=True)
            ll, lw, ls = logits[:nl], logits[nl:nl + nu], logits[nl + nu:]
            sup = tf.reduce_mean(
                tf.keras.losses.sparse_categorical_crossentropy(y, ll, from_logits=True))
            probs = tf.nn.softmax(tf.stop_gradient(lw))
            mask = tf.cast(tf.reduce_max(probs, -1) >= threshold, tf.float32)
            pseudo = tf.argmax(probs, -1)
            unsup = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=pseudo, logits=ls) * mask)
            loss = sup + unsup
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ratio", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--data", help="CIFAR-10 npz; default random uint8 images")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    b, r = args.batch_size, args.ratio
    x_lab = _images(b * 4, rng, args.data)
    y_lab = rng.integers(0, 10, len(x_lab))
    x_unl = _images(b * r * 8, rng, args.data)

    keras.utils.set_random_seed(0)
    net = datasets.cnn6()
    init = [w.copy() for w in net.get_weights()]
    ssl = keras_ssl.SemiSupervisedModel(net, keras_ssl.FixMatch(args.threshold),
                                        unlabeled_ratio=r)
    ssl.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True))
    pipeline = ssl.make_train_dataset(x_lab, y_lab, batch_size=b, unlabeled=x_unl,
                                      steps_per_epoch=args.steps)
    # The same augmented batches, materialised once, for both steps.
    cached = list(pipeline.take(8))
    stacked = tf.data.Dataset.from_tensors(cached[0])
    for batch in cached[1:]:
        stacked = stacked.concatenate(tf.data.Dataset.from_tensors(batch))
    in_memory = stacked.cache().repeat()

    def time_keras(dataset):
        # `dataset` already carries the views: call Keras's own `fit` on it
        # (SemiSupervisedModel.fit would build a source from it again).
        net.set_weights(init)
        keras.Model.fit(ssl, dataset, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        keras.Model.fit(ssl, dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return (time.perf_counter() - start) / args.steps

    hand_net = datasets.cnn6()
    hand_net.set_weights(init)
    hand_opt = keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True)
    step = hand_written_step(hand_net, hand_opt, args.threshold)

    def time_hand():
        iterator = iter(in_memory)
        for _ in range(args.warmup):
            step(iterator)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step(iterator)
        float(loss)
        return (time.perf_counter() - start) / args.steps

    # Interleave the two in-memory measurements so that drifts affect both
    # alike; the tf.data runs come last, because their parallel map and
    # prefetch threads go on filling buffers after `fit` returns and would
    # slow whatever runs next.
    hand, ours, piped = [], [], []
    for _ in range(args.repeats):
        hand.append(time_hand())
        ours.append(time_keras(in_memory))
    for _ in range(args.repeats):
        piped.append(time_keras(pipeline.repeat()))
    hand_ms, ours_ms, piped_ms = (1000 * float(np.median(t)) for t in (hand, ours, piped))
    images = b * (1 + 2 * r)
    print(f"batch {b} labeled + 2 x {b * r} unlabeled views = {images} images per step, "
          f"{args.steps} steps x {args.repeats} repeats (median)")
    print(f"hand-written tf.function step : {hand_ms:7.1f} ms/step")
    print(f"keras-ssl fit, batches in RAM : {ours_ms:7.1f} ms/step")
    print(f"keras-ssl fit, tf.data source : {piped_ms:7.1f} ms/step")
    print(f"ratio keras-ssl / hand-written: {ours_ms / hand_ms:.3f}")
    print(f"input wait share              : {max(0.0, 1 - ours_ms / piped_ms):.1%}")


if __name__ == "__main__":
    main()
