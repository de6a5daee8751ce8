"""SoftMatch: its weights, its state, and training with it."""

import keras
import numpy as np
import pytest
from conftest import cheap_views, tiny_cnn

import keras_ssl


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def test_weights_are_one_above_the_mean_and_gaussian_below():
    algorithm = keras_ssl.algorithms.get("softmatch", momentum=0.0, n_sigma=2.0)
    algorithm.build_state(num_classes=4)
    confidence = np.array([0.3, 0.5, 0.7, 0.9], "float32")
    weights = _numpy(algorithm.mask(None, confidence, None))
    mean, variance = confidence.mean(), confidence.var(ddof=1)  # unbiased, as the paper
    expected = np.where(confidence >= mean, 1.0,
                        np.exp(-((confidence - mean) ** 2) / (2 * variance / 4.0)))
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    assert float(_numpy(algorithm.confidence_mean)) == pytest.approx(mean)
    assert float(_numpy(algorithm.confidence_variance)) == pytest.approx(variance, rel=1e-5)


def test_the_estimates_move_slowly_with_momentum():
    algorithm = keras_ssl.algorithms.get("softmatch", momentum=0.9)
    algorithm.build_state(num_classes=10)
    algorithm.mask(None, np.full(8, 0.9, "float32"), None)
    assert float(_numpy(algorithm.confidence_mean)) == pytest.approx(0.9 * 0.1 + 0.1 * 0.9)
    assert float(_numpy(algorithm.confidence_variance)) == pytest.approx(0.9)


def test_trains_with_every_unlabeled_image_weighted():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    u = rng.random((64, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    algorithm = cheap_views(keras_ssl.algorithms.get("softmatch"))
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=2, verbose=0)
    # From the first steps the weights are soft, never all zero.
    assert 0 < history.history["mask_rate"][0] <= 1
    assert history.history["unsup_loss"][0] > 0
    assert 0 < history.history["confidence_mean"][-1] < 1


def test_config_roundtrip():
    algorithm = keras_ssl.algorithms.get("softmatch", momentum=0.99, n_sigma=3.0, flip=False)
    restored = type(algorithm).from_config(algorithm.get_config())
    assert restored.get_config() == algorithm.get_config()
    with pytest.raises(ValueError, match=r"SoftMatch\(n_sigma=\.\.\.\) must be > 0"):
        keras_ssl.algorithms.get("softmatch", n_sigma=0)
