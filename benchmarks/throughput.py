"""Time per SSL step: keras-ssl vs a minimal hand-written TensorFlow step.

    python -m benchmarks.throughput --steps 60 --batch-size 32 --ratio 3

Both train the same CNN (same initial weights) with the same FixMatch
losses, the same concatenated forward pass and the same SGD optimizer, on
the same pre-augmented batches held in memory, so only the step differs:

* hand-written: one `tf.function` (GradientTape, concat, softmax/threshold/
  masked cross-entropy, `optimizer.apply_gradients`).
* keras-ssl: Keras's `fit` of the `SemiSupervisedModel` on those batches
  (its train function, callbacks and metrics included).

Then the real `tf.data` source (augmentation mapped in parallel, prefetch)
gives two input numbers:

* time blocked on input: the hand-written step fed from Python by the
  source, timing each `next()`; the share of step time spent waiting.
* slowdown: `1 - time_in_memory / time_of_fit_on_the_source`. On a 2-core
  CPU the augmentation threads share the cores with the step, so this also
  counts the augmentation's CPU time even when the step never waits.

Each measurement is one `fit` (warm-up steps untimed) so that only one
pipeline runs at a time. Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_ssl
from benchmarks import datasets, provenance


def _images(n, rng, data):
    if data:
        x = datasets.load_cifar10(data)[0]
        return x[rng.choice(len(x), n, replace=False)]
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def hand_written_step(net, optimizer, threshold):
    @tf.function
    def train(inputs, y):
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

    return train


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ratio", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--data", help="CIFAR-10 npz; default random uint8 images")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
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

    class _Clock(keras.callbacks.Callback):
        # Times the steps after the warm-up inside one `fit`, so that each
        # measurement uses one iterator (a second `fit` would start a second
        # pipeline while the first one's threads still fill their buffers).
        def on_train_batch_end(self, batch, logs=None):
            if batch == args.warmup - 1:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    def time_keras(dataset):
        # `dataset` already carries the views: call Keras's own `fit` on it
        # (SemiSupervisedModel.fit would build a source from it again).
        net.set_weights(init)
        clock = _Clock()
        keras.Model.fit(ssl, dataset, steps_per_epoch=args.warmup + args.steps, epochs=1,
                        verbose=0, callbacks=[clock])
        return clock.seconds / args.steps

    hand_net = datasets.cnn6()
    hand_net.set_weights(init)
    hand_opt = keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True)
    hand_step = hand_written_step(hand_net, hand_opt, args.threshold)
    # Batches pulled inside the graph, as Keras's train function does.
    step = tf.function(lambda iterator: hand_step(*next(iterator)))

    def time_hand():
        iterator = iter(in_memory)
        for _ in range(args.warmup):
            step(iterator)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step(iterator)
        float(loss)
        return (time.perf_counter() - start) / args.steps

    def blocked_share():
        # The hand-written step fed by keras-ssl's tf.data source from
        # Python: the time spent inside `next()` is time blocked on input.
        iterator = iter(pipeline.repeat())
        for _ in range(args.warmup):
            float(hand_step(*next(iterator)))
        waited, start = 0.0, time.perf_counter()
        for _ in range(args.steps):
            t = time.perf_counter()
            batch = next(iterator)
            waited += time.perf_counter() - t
            loss = hand_step(*batch)
            float(loss)  # finish the step before asking for the next batch
        return waited / (time.perf_counter() - start)

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
    blocked = [blocked_share() for _ in range(args.repeats)]
    hand_ms, ours_ms, piped_ms = (1000 * float(np.median(t)) for t in (hand, ours, piped))
    images = b * (1 + 2 * r)
    print(f"batch {b} labeled + 2 x {b * r} unlabeled views = {images} images per step, "
          f"{args.steps} steps x {args.repeats} repeats (median)")
    print(f"hand-written tf.function step : {hand_ms:7.1f} ms/step")
    print(f"keras-ssl fit, batches in RAM : {ours_ms:7.1f} ms/step")
    print(f"keras-ssl fit, tf.data source : {piped_ms:7.1f} ms/step")
    print(f"ratio keras-ssl / hand-written: {ours_ms / hand_ms:.3f}")
    print(f"time blocked on input (hand step fed by the tf.data source): "
          f"{float(np.median(blocked)):.1%}")
    print(f"slowdown of fit on tf.data vs in RAM (augmentation's CPU on the same cores): "
          f"{max(0.0, 1 - ours_ms / piped_ms):.1%}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), **provenance.describe(), "images_per_step": images,
                       "hand_ms": hand_ms, "keras_ssl_in_memory_ms": ours_ms,
                       "keras_ssl_tf_data_ms": piped_ms,
                       "blocked_on_input": float(np.median(blocked))}, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
