"""Numerical safety: no NaN and no division by zero at the edges.

Empty masks, extreme logits (±1e4), probabilities of exactly 0 and 1 from a
softmax model, a one-image labeled set, and `keras.callbacks.TerminateOnNaN`
with the SSL step. Gradients are taken with the backend's own autodiff.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cheap_views

import keras_ssl
from keras_ssl import losses

BACKEND = keras.backend.backend()


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _grad(fn, x):
    """Gradient of the scalar `fn(x)` with respect to the numpy array `x`."""
    x = np.asarray(x, "float32")
    if BACKEND == "tensorflow":
        t = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(t)
        return value.numpy(), tape.gradient(value, t).numpy()
    if BACKEND == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(jax.numpy.asarray(x))
        return np.asarray(value), np.asarray(grad)
    import torch

    t = torch.tensor(x, requires_grad=True)
    value = fn(t)
    value.backward()
    return value.detach().numpy(), t.grad.numpy()


EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 0.0],
                    [1e4, 1e4, -1e4]], "float32")


def test_masked_cross_entropy_empty_mask_is_exactly_zero_with_zero_gradient():
    labels = np.array([1, 0, 2, 2])
    value, grad = _grad(
        lambda z: losses.masked_cross_entropy(z, labels, np.zeros(4, "float32")), EXTREME
    )
    assert value == 0.0
    assert np.all(grad == 0.0)


@pytest.mark.parametrize("mask", [np.ones(4, "float32"), np.array([1, 0, 1, 0], "float32")])
def test_masked_cross_entropy_extreme_logits_finite(mask):
    # The worst case: the pseudo-label is the class with logit -1e4.
    labels = np.array([1, 0, 2, 2])
    value, grad = _grad(lambda z: losses.masked_cross_entropy(z, labels, mask), EXTREME)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value > 1e3  # large, as it should be, but finite


def test_pseudo_labels_and_consistency_extreme_logits_finite():
    for temperature in (1.0, 0.5, 2.0):
        probs, confidence, hard = losses.pseudo_labels(EXTREME, temperature)
        probs = _numpy(probs)
        assert np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
        assert np.all(_numpy(confidence) <= 1.0)
        np.testing.assert_array_equal(_numpy(hard), EXTREME.argmax(-1))
    value, grad = _grad(lambda z: losses.soft_mse(z, EXTREME[::-1].copy()), EXTREME)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def _classifier(softmax=False, bias=None, classes=3):
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation="softmax" if softmax else None),
    ])
    if bias is not None:
        dense = model.layers[-1]
        dense.kernel.assign(np.zeros(dense.kernel.shape, "float32"))
        dense.bias.assign(np.asarray(bias, "float32"))
    return model


def _data(n_labeled=16, n_unlabeled=64):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n_labeled, 8, 8, 1)).astype("float32")
    y = np.arange(n_labeled) % 3
    u = rng.uniform(0, 1, (n_unlabeled, 8, 8, 1)).astype("float32")
    return x, y, u


def _same(images, training=True):
    """A cheap view: these tests are about the losses, not the augmentations."""
    return images


def _algorithms():
    return [cheap_views(keras_ssl.algorithms.get(name))
            for name in keras_ssl.algorithms.names()]


def _fit_and_check(ssl, x, y, u, steps=2, batch_size=8, **kwargs):
    history = ssl.fit(x, y, unlabeled=u, batch_size=batch_size, steps_per_epoch=steps,
                      verbose=0, **kwargs)
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), f"{name}: {values}"
    for variable in ssl.variables:
        assert np.all(np.isfinite(_numpy(variable))), variable.path
    return history.history


def test_no_unlabeled_image_passes_the_threshold():
    # Zero kernel and bias: every prediction is uniform (confidence 1/3).
    x, y, u = _data()
    ssl = keras_ssl.SemiSupervisedModel(
        _classifier(bias=[0.0, 0.0, 0.0]),
        keras_ssl.FixMatch(threshold=0.99, weak=_same, strong=_same),
        unlabeled_ratio=2,
    )
    ssl.compile(optimizer="sgd")
    logs = _fit_and_check(ssl, x, y, u, steps=1)
    assert logs["mask_rate"] == [0.0]
    assert logs["unsup_loss"] == [0.0]


@pytest.mark.parametrize("algorithm", _algorithms(), ids=lambda a: type(a).__name__)
def test_extreme_logits_train_without_nan(algorithm):
    x, y, u = _data()
    ssl = keras_ssl.SemiSupervisedModel(
        _classifier(bias=[1e4, -1e4, 0.0]), algorithm, unlabeled_ratio=2
    )
    ssl.compile(optimizer="adam")
    logs = _fit_and_check(ssl, x, y, u)
    assert max(logs["sup_loss"]) > 1e3  # the labels of class 1 sit at -1e4


@pytest.mark.parametrize("algorithm", _algorithms(), ids=lambda a: type(a).__name__)
def test_softmax_outputs_of_exactly_zero_and_one_train_without_nan(algorithm):
    x, y, u = _data()
    model = _classifier(softmax=True, bias=[1e4, -1e4, 0.0])
    probs = _numpy(model(x[:2]))
    assert np.all((probs == 0.0) | (probs == 1.0))  # saturated for real
    ssl = keras_ssl.SemiSupervisedModel(model, algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    _fit_and_check(ssl, x, y, u)


@pytest.mark.parametrize("algorithm", _algorithms(), ids=lambda a: type(a).__name__)
def test_one_labeled_image(algorithm):
    x, y, u = _data(n_labeled=1, n_unlabeled=8)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
        keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(3),
    ])
    ssl = keras_ssl.SemiSupervisedModel(model, algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    _fit_and_check(ssl, x, y, u, steps=3, batch_size=1)


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def test_nan_further_down_the_unlabeled_stream_never_reaches_the_loss():
    # The first 64 unlabeled images (what the input checks look at) are clean;
    # the rest are NaN: the stream guard drops them and says so.
    x, y, _ = _data()
    clean = np.random.default_rng(1).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    stream = tf.data.Dataset.from_tensor_slices(
        np.concatenate([clean, np.full_like(clean, np.nan)])
    )
    keras.utils.set_random_seed(0)
    ssl = keras_ssl.SemiSupervisedModel(
        _classifier(), keras_ssl.FixMatch(weak=_same, strong=_same), unlabeled_ratio=2
    )
    ssl.compile(optimizer="adam")
    steps = _Steps()
    with pytest.warns(UserWarning, match=r"keras-ssl skipped 0 labeled examples and \d+ "
                                         r"unlabeled images during epoch 1"):
        ssl.fit(x, y, unlabeled=stream, batch_size=8, epochs=5, steps_per_epoch=4,
                verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), steps])
    assert len(steps.losses) == 20 and np.isfinite(steps.losses).all()
    assert all(np.isfinite(w).all() for w in ssl.model.get_weights())


def test_terminate_on_nan_stops_the_ssl_step():
    # A NaN made inside the step (here by a custom strong view, which keras-ssl
    # does not guard) stops training through Keras's own TerminateOnNaN.
    x, y, u = _data()
    keras.utils.set_random_seed(0)

    def poisoned(images, training=True):
        return images * float("nan")

    ssl = keras_ssl.SemiSupervisedModel(
        _classifier(), keras_ssl.FixMatch(weak=_same, strong=poisoned), unlabeled_ratio=2
    )
    ssl.compile(optimizer="adam")
    steps = _Steps()
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=5, steps_per_epoch=4, verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), steps])
    assert np.isnan(steps.losses[-1])
    assert len(steps.losses) < 20  # stopped early
    assert ssl.stop_training
