"""FlexMatch: its curriculum thresholds, its state, and training with it."""

import keras
import numpy as np
import pytest
from conftest import cheap_views, tiny_cnn

import keras_ssl


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def test_unlearned_classes_get_lower_thresholds():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.9, momentum=0.0)
    algorithm.build_state(num_classes=3)
    # Class 0 confidently predicted twice, class 1 once, class 2 never; one
    # unconfident image.
    probs = np.array([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.02, 0.96, 0.02],
                      [0.4, 0.3, 0.3]], "float32")
    confidence, labels = probs.max(1), probs.argmax(1)
    mask = _numpy(algorithm.mask(probs, confidence, labels))
    shares = _numpy(algorithm.class_shares)
    np.testing.assert_allclose(shares, [0.5, 0.25, 0.0, 0.25])
    beta = np.array([1.0, 0.5, 0.0])
    expected = 0.9 * beta / (2 - beta)
    np.testing.assert_allclose(_numpy(algorithm.class_thresholds(shares)), expected,
                               rtol=1e-6)
    # Class 0's threshold is 0.9, class 1's 0.3: the last image (0.4 for
    # class 0) stays masked; all confident ones pass.
    np.testing.assert_array_equal(mask, [1, 1, 1, 0])


def test_while_most_images_are_unconfident_thresholds_stay_low():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.95, momentum=0.0)
    algorithm.build_state(num_classes=2)
    probs = np.array([[0.97, 0.03]] + [[0.6, 0.4]] * 9, "float32")
    mask = _numpy(algorithm.mask(probs, probs.max(1), probs.argmax(1)))
    # beta_0 = 0.1 / 0.9 (normalized by the unconfident share): threshold ~0.056.
    assert mask.sum() == 10


def test_trains_and_reports_its_threshold():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    u = rng.random((64, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    algorithm = cheap_views(keras_ssl.algorithms.get("flexmatch", momentum=0.9))
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=2, verbose=0)
    assert 0 <= history.history["threshold"][-1] < 0.95
    assert history.history["mask_rate"][0] > 0  # low thresholds at first


def test_config_roundtrip():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.9, momentum=0.99,
                                         flip=False)
    restored = type(algorithm).from_config(algorithm.get_config())
    assert restored.get_config() == algorithm.get_config()
    with pytest.raises(ValueError, match=r"FlexMatch\(threshold=\.\.\.\) must be in"):
        keras_ssl.algorithms.get("flexmatch", threshold=1.5)
