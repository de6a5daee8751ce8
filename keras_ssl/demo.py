"""The no-download demo: supervised vs the default algorithm on scikit-learn's digits.

`keras-ssl demo` trains both with the same model, optimizer, augmentation and
number of steps on 20 labeled 8x8 digits (2 per class), uses the rest of the
training split as unlabeled images, and reads a stratified held-out test
split once at the end.
"""

import textwrap
import time

import keras
import numpy as np


def load_digits_split(labels_per_class=2, seed=0, test_size=0.3):
    """Digits as `(x_lab, y_lab, x_unl, y_unl, x_test, y_test)`.

    Images are float32 in [0, 1] of shape (n, 8, 8, 1). The test split is
    stratified and disjoint from the rest; the labeled images are the first
    `labels_per_class` of each class in a seeded shuffle of the training split,
    and every other training image is unlabeled (`y_unl` is returned only for
    monitoring pseudo-labels).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")
    y = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=0
    )
    order = np.random.default_rng(seed).permutation(len(x_train))
    labeled = np.concatenate(
        [order[y_train[order] == c][:labels_per_class] for c in range(10)]
    )
    unlabeled = np.setdiff1d(order, labeled)
    return (x_train[labeled], y_train[labeled], x_train[unlabeled],
            y_train[unlabeled], x_test, y_test)


def small_cnn(input_shape=(8, 8, 1), num_classes=10, width=32):
    """A small CNN with BatchNorm that outputs logits."""
    layers = keras.layers

    def block(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.ReLU()]

    return keras.Sequential(
        [keras.Input(input_shape), *block(width), *block(width),
         layers.MaxPooling2D(), *block(2 * width), layers.GlobalAveragePooling2D(),
         layers.Dense(num_classes)],
        name="small_cnn",
    )


def train_digits(method="fixmatch", labels_per_class=2, steps=1000, seed=0,
                 threshold=0.95, verbose=0, data=None, source="array"):
    """Train one method on digits and return `{"accuracy", "seconds", ...}`.

    `method` is "supervised", "default" (the library's default algorithm,
    `keras_ssl.algorithms.default()`) or a name of
    `keras_ssl.algorithms.names()` (built with `for_steps(steps)`;
    `threshold` applies to FixMatch). All methods share the model,
    optimizer, labeled augmentation (translation, no flip) and number of
    steps. The result names the algorithm and its settings ("algorithm").
    `source` is how `fit` gets the images: "array" (numpy), "tfdata"
    (`tf.data` datasets), "generator" (a generator of unlabeled batches
    beside labeled arrays) or "zipped" (one zipped `tf.data` dataset).
    """
    import keras_ssl

    keras.utils.set_random_seed(seed)
    x_lab, y_lab, x_unl, y_unl, x_test, y_test = data or load_digits_split(
        labels_per_class, seed
    )
    # The supervised baseline runs the same path without unlabeled images
    # (FixMatch's weak view augments its labeled images).
    name = "fixmatch" if method == "supervised" else method
    options = {"threshold": threshold} if name == "fixmatch" else {}
    algorithm = keras_ssl.algorithms.get(name, steps=steps, flip=False, **options)
    model = keras_ssl.SemiSupervisedModel(small_cnn(), algorithm, unlabeled_ratio=7)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), metrics=["accuracy"])
    epochs = 10
    start = time.perf_counter()
    inputs = _inputs(source, x_lab, y_lab, None if method == "supervised" else x_unl,
                     None if method == "supervised" else y_unl, seed)
    history = model.fit(**inputs, epochs=epochs, steps_per_epoch=steps // epochs,
                        verbose=verbose)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    logs = {k: float(v[-1]) for k, v in history.history.items()}
    described = "none (labeled images only)" if method == "supervised" else (
        algorithm.describe())
    return {"method": method, "algorithm": described, "seed": seed,
            "accuracy": float(accuracy), "seconds": seconds, "steps": steps,
            "final_logs": logs}


def _inputs(source, x, y, unlabeled, unlabeled_labels, seed):
    """`fit`'s data arguments with the images as `source` gives them."""
    arrays = {"x": x, "y": y, "unlabeled": unlabeled, "unlabeled_labels": unlabeled_labels,
              "batch_size": len(x)}
    if source == "array" or unlabeled is None:
        return arrays
    if source == "generator":
        batches = (unlabeled[i:i + 64] for i in range(0, len(unlabeled), 64))
        return {**arrays, "unlabeled": batches}
    import tensorflow as tf

    labeled = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    labeled = labeled.batch(len(x))
    images = tf.data.Dataset.from_tensor_slices(unlabeled)
    if source == "tfdata":
        return {"x": labeled, "unlabeled": images.batch(64),
                "unlabeled_labels": unlabeled_labels}
    if source == "zipped":
        stream = images.shuffle(len(unlabeled), seed=seed).repeat().batch(7 * len(x))
        return {"x": tf.data.Dataset.zip((labeled.repeat(), stream))}
    raise ValueError(f"source must be 'array', 'tfdata', 'generator' or 'zipped'; "
                     f"received {source!r}.")


def summarize(results):
    """Mean and std of accuracy and time per method, in first-seen order."""
    summary = {}
    for r in results:
        summary.setdefault(r["method"], []).append(r)
    table = []
    for method, runs in summary.items():
        acc = np.array([r["accuracy"] for r in runs])
        sec = np.array([r["seconds"] for r in runs])
        table.append({"method": method, "algorithm": runs[0].get("algorithm", ""),
                      "mean": float(acc.mean()), "std": float(acc.std()),
                      "seconds": float(sec.mean()), "runs": len(runs),
                      "steps": runs[0]["steps"]})
    return table


def markdown_table(table):
    lines = [("| method | algorithm and settings | test accuracy (mean ± std) | runs | steps "
              "| seconds/run |"), "|---|---|---|---|---|---|"]
    for row in table:
        lines.append(
            f"| {row['method']} | {row.get('algorithm', '')} | {row['mean']:.3f} ± "
            f"{row['std']:.3f} | {row['runs']} | {row['steps']} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def bar_chart(table, path, title):
    """Bar chart of mean test accuracy (± std) per method, written to `path`."""
    from keras_ssl import plots

    fig = plots._figure(5, 3.5)
    ax = fig.add_subplot()
    # Long method names wrap onto a few lines instead of running into each other.
    names = [textwrap.fill(row["method"], 16) for row in table]
    means = [row["mean"] for row in table]
    stds = [row["std"] for row in table]
    bars = ax.bar(names, means, yerr=stds, capsize=6, color=["#9e9e9e", "#1f77b4", "#ff7f0e",
                                                             "#2ca02c"][: len(names)])
    for bar, mean in zip(bars, means):
        ax.text(bar.get_x() + bar.get_width() / 2, mean + 0.01, f"{mean:.1%}",
                ha="center", va="bottom")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
