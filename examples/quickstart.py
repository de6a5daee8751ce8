"""Quickstart: wrap a Keras model and fit it with labeled + unlabeled images.

The same script runs unchanged on every Keras backend:

    python examples/quickstart.py
    KERAS_BACKEND=jax python examples/quickstart.py
    KERAS_BACKEND=torch python examples/quickstart.py
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

import keras_ssl
from keras_ssl.demo import load_digits_split


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    # 20 labeled digits (2 per class), ~1,200 unlabeled, a held-out test split.
    x_lab, y_lab, x_unl, y_unl, x_test, y_test = load_digits_split(labels_per_class=2)

    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),  # logits
    ])
    ssl = keras_ssl.SemiSupervisedModel(
        model, keras_ssl.FixMatch(threshold=0.95, flip=False), unlabeled_ratio=7
    )
    ssl.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    ssl.fit(x_lab, y_lab, unlabeled=x_unl, unlabeled_labels=y_unl,
            batch_size=20, epochs=5, steps_per_epoch=max(1, args.steps // 5), verbose=2)
    # Short runs leave BatchNorm's moving statistics behind (momentum 0.99):
    # recompute them exactly on training images before evaluating.
    keras_ssl.callbacks.recompute_batchnorm_statistics(ssl, x_unl, steps=10)
    logs = ssl.evaluate(x_test, y_test, verbose=0, return_dict=True)
    print(f"backend={keras.backend.backend()} test_accuracy={logs['accuracy']:.3f}")
    # The wrapped model was trained in place and works on its own.
    assert model.predict(x_test[:4], verbose=0).shape == (4, 10)


if __name__ == "__main__":
    main()
