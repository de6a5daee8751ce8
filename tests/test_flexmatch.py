"""FlexMatch: its curriculum thresholds, its state, and training with it."""

import keras
import numpy as np
import pytest
from conftest import cheap_views, same_images, tiny_cnn

import keras_ssl


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def test_unlearned_classes_get_lower_thresholds():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.9, momentum=0.0,
                                         memory="running")
    algorithm.build_state(num_classes=3)
    # Class 0 confidently predicted twice, class 1 once, class 2 never; one
    # unconfident image.
    probs = np.array([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.02, 0.96, 0.02],
                      [0.4, 0.3, 0.3]], "float32")
    confidence, labels = probs.max(1), probs.argmax(1)
    # Before any batch every threshold is 0: everything passes.
    np.testing.assert_array_equal(_numpy(algorithm.mask(probs, confidence, labels)), 1)
    shares = _numpy(algorithm.class_shares)
    np.testing.assert_allclose(shares, [0.5, 0.25, 0.0, 0.25])
    beta = _numpy(algorithm.normalised_effect(shares[:-1], shares[-1]))
    np.testing.assert_allclose(beta, [1.0, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(_numpy(algorithm.class_thresholds(beta)),
                               0.9 * beta / (2 - beta), rtol=1e-6)
    # The same batch again: class 0's threshold is 0.9, class 1's 0.3; the
    # last image (0.4 for class 0) is masked; all confident ones pass.
    np.testing.assert_array_equal(_numpy(algorithm.mask(probs, confidence, labels)),
                                  [1, 1, 1, 0])


def test_while_most_images_are_unconfident_thresholds_stay_low():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.95, momentum=0.0,
                                         memory="running")
    algorithm.build_state(num_classes=2)
    probs = np.array([[0.97, 0.03]] + [[0.6, 0.4]] * 9, "float32")
    for _ in range(2):
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
    # The per-image memory: one entry per unlabeled image, each -1 (never
    # confident) or a class.
    memory = _numpy(algorithm.remembered)
    assert memory.shape == (64,) and set(memory.tolist()) <= {-1, 0, 1, 2, 3}


def test_memory_is_saved_with_the_model_and_kept_by_a_continued_fit(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    u = rng.random((48, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    algorithm = cheap_views(keras_ssl.FlexMatch(threshold=0.3))  # low: images get remembered
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=2, verbose=0)
    memory = _numpy(algorithm.remembered)
    assert (memory >= 0).any()
    path = str(tmp_path / "flexmatch.keras")
    ssl.save(path)
    restored = keras.models.load_model(path, custom_objects={"same_images": same_images})
    assert restored.algorithm.num_unlabeled == 48
    np.testing.assert_array_equal(_numpy(restored.algorithm.remembered), memory)
    np.testing.assert_allclose(_numpy(restored.algorithm.learning_effect),
                               _numpy(algorithm.learning_effect))
    # A continued fit on as many images keeps the memory (the same variable);
    # a different number of images starts a new one, in the same place.
    kept = algorithm.remembered
    ssl._size_unlabeled_state(48)
    assert algorithm.remembered is kept
    count = len(ssl.non_trainable_variables)
    ssl.fit(x, y, unlabeled=u[:40], batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    assert algorithm.remembered.shape == (40,)
    assert len(ssl.non_trainable_variables) == count


def test_an_endless_stream_falls_back_to_the_running_estimate():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x, y = rng.random((16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    u = rng.random((32, 8, 8, 3)).astype("float32")
    endless = tf.data.Dataset.from_tensor_slices(u).repeat().map(lambda image: image)
    algorithm = cheap_views(keras_ssl.FlexMatch())
    ssl = keras_ssl.SemiSupervisedModel(tiny_cnn(), algorithm, unlabeled_ratio=2)
    ssl.compile(optimizer="adam")
    with pytest.warns(UserWarning, match="estimates that state from the batches"):
        history = ssl.fit(x, y, unlabeled=endless, batch_size=8, epochs=1,
                          steps_per_epoch=3, verbose=0)
    assert algorithm.remembered is None
    assert history.history["mask_rate"][0] > 0


def test_config_roundtrip():
    algorithm = keras_ssl.algorithms.get("flexmatch", threshold=0.9, momentum=0.99,
                                         flip=False)
    restored = type(algorithm).from_config(algorithm.get_config())
    assert restored.get_config() == algorithm.get_config()
    with pytest.raises(ValueError, match=r"FlexMatch\(threshold=\.\.\.\) must be in"):
        keras_ssl.algorithms.get("flexmatch", threshold=1.5)
