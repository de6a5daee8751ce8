import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest


def tiny_cnn(input_shape=(8, 8, 3), classes=4, softmax=False):
    layers = keras.layers
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(8, 3, padding="same"),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(classes, activation="softmax" if softmax else None),
    ])


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 24)
    u = rng.random((64, 8, 8, 3)).astype("float32")
    return x, y, u


def same_images(images, training=True):
    """A view that leaves images as they are."""
    return images


def cheap_views(algorithm):
    """`algorithm` with every view the identity: for unit tests about losses
    and the step, where RandAugment's cost (and tf.data graph build) is waste."""
    names = tuple(algorithm.views) + tuple(algorithm.teacher_views)
    names += (algorithm.labeled_view,) if algorithm.labeled_view else ()
    algorithm.build_views = lambda value_range: {name: same_images for name in names}
    return algorithm


@pytest.fixture
def cheap():
    return cheap_views
