"""FixMatch on several workers with `tf.distribute.MultiWorkerMirroredStrategy`.

Every worker runs this same program with its own `TF_CONFIG`; the strategy
keeps the weights, the EMA teacher and `ssl_step` in sync, each step's global
batch is split over all replicas of all workers, and the gradients are summed.

Two workers as two local processes (localhost ports, CPU, ~1 minute):

    python examples/multi_worker.py --launch 2

On real machines, run on each one (index 0 is the chief):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        python examples/multi_worker.py

Batch sizes are global: `--global-batch 32` with 2 workers of 1 replica each
gives every replica 16 labeled and 16 x ratio unlabeled images a step. The
zipped dataset is sharded by element (`AutoShardPolicy.DATA`) so that the
workers see different batches. See docs/scale.md.
"""

import argparse
import json
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launch", type=int, default=0,
                        help="start this many local workers on localhost ports")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--ratio", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    return parser.parse_args()


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(count, argv):
    """Run `count` workers of this program on this machine and wait for them."""
    workers = [f"localhost:{port}" for port in free_ports(count)]
    procs = []
    for index in range(count):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="2",
                   KERAS_BACKEND="tensorflow")
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv,
                                      env=env))
    codes = [p.wait() for p in procs]
    print(f"workers exited with {codes}")
    return max(codes)


def stripes(n, seed, size=16, classes=4):
    """A small synthetic task: horizontal or vertical stripes, 2 frequencies."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    frequency = np.where(labels % 2 == 0, 1, 3)
    grid = np.arange(size) * 2 * np.pi / size
    wave = np.sin(grid[None] * frequency[:, None] + rng.uniform(0, 6.3, (n, 1)))
    pattern = np.where((labels >= 2)[:, None, None], wave[:, None, :], wave[:, :, None])
    images = 0.5 + 0.4 * pattern[..., None] + rng.normal(0, 0.1, (n, size, size, 1))
    return np.clip(images, 0, 1).astype("float32"), labels


def train(args):
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow op runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    import keras_ssl

    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    index = task.get("index", 0)
    replicas = strategy.num_replicas_in_sync
    x, y = stripes(2000, seed=0)  # the same arrays on every worker
    x_test, y_test = stripes(500, seed=1)
    labeled = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(4)])
    unlabeled = np.delete(x, labeled, axis=0)

    def zipped():
        # Global batches; each worker keeps every n-th one (sharding by data).
        lab = (tf.data.Dataset.from_tensor_slices((x[labeled], y[labeled]))
               .shuffle(len(labeled), seed=index).repeat()
               .batch(args.global_batch, drop_remainder=True))
        unl = (tf.data.Dataset.from_tensor_slices(unlabeled).shuffle(2000, seed=index)
               .repeat().batch(args.global_batch * args.ratio, drop_remainder=True))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return tf.data.Dataset.zip((lab, unl)).with_options(options)

    with strategy.scope():
        model = keras.Sequential([
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ])
        ssl = keras_ssl.SemiSupervisedModel(
            model, keras_ssl.FixMatch(threshold=0.8, flip=False),
            unlabeled_ratio=args.ratio, value_range=(0, 1),
            ema_decay=0.99,
        )
        ssl.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = ssl.fit(zipped(), epochs=1, steps_per_epoch=args.steps,
                      verbose=2 if index == 0 else 0)
    # The same weights on every worker: the same test accuracy on each.
    logits = keras.ops.convert_to_numpy(model(x_test, training=False))
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_test))
    teacher = np.asarray(ssl.teacher_weights[0].numpy())
    # One write per report (print writes the text and the newline apart, and
    # the workers share the launcher's stdout).
    sys.stdout.write(json.dumps({
        "worker": index, "replicas_in_sync": replicas,
        "per_replica_batch": args.global_batch // replicas,
        "ssl_step": int(ssl.ssl_step.numpy()),
        "loss": round(history.history["loss"][-1], 4),
        "mask_rate": round(history.history["mask_rate"][-1], 4),
        "test_accuracy": round(accuracy, 4),
        "teacher_checksum": round(float(teacher.sum()), 5),
    }) + "\n")
    sys.stdout.flush()


def main():
    args = parse_args()
    if args.launch:
        argv = [a for a in sys.argv[1:] if not a.startswith("--launch")]
        if "--launch" in sys.argv[1:]:
            i = sys.argv.index("--launch")
            argv = sys.argv[1:i] + sys.argv[i + 2:]
        sys.exit(launch(args.launch, argv))
    if "TF_CONFIG" not in os.environ:
        print("TF_CONFIG is not set: running as a single worker "
              "(use --launch 2 for two local workers).")
    train(args)


if __name__ == "__main__":
    main()
