"""Unit tests of the pure loss functions (mask, threshold, ramp-up, gradients)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_ssl import losses


def test_threshold_mask_keeps_confident_only():
    confidence = ops.convert_to_tensor([0.2, 0.95, 0.949, 1.0])
    mask = ops.convert_to_numpy(losses.threshold_mask(confidence, 0.95))
    np.testing.assert_array_equal(mask, [0.0, 1.0, 0.0, 1.0])


def test_pseudo_labels_are_argmax_and_confidence_is_max_prob():
    logits = ops.convert_to_tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    probs, conf, labels = losses.pseudo_labels(logits)
    np.testing.assert_array_equal(ops.convert_to_numpy(labels), [1, 0])
    np.testing.assert_allclose(ops.convert_to_numpy(conf),
                               ops.convert_to_numpy(ops.max(probs, axis=-1)))
    # Temperature sharpens: lower temperature -> higher confidence.
    _, sharp, _ = losses.pseudo_labels(logits, temperature=0.5)
    assert np.all(ops.convert_to_numpy(sharp) > ops.convert_to_numpy(conf))


def test_masked_cross_entropy_matches_manual_value_and_divides_by_batch():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
    labels = np.array([0, 1, 0])
    mask = np.array([1.0, 0.0, 1.0], "float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(log_p[0, 0] + log_p[2, 0]) / 3.0
    got = ops.convert_to_numpy(losses.masked_cross_entropy(logits, labels, mask))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_masked_cross_entropy_is_zero_with_empty_mask():
    logits = np.random.default_rng(0).normal(size=(5, 3)).astype("float32") * 100
    got = ops.convert_to_numpy(losses.masked_cross_entropy(logits, np.zeros(5), np.zeros(5)))
    assert got == 0.0


def test_sigmoid_rampup_shape():
    values = [float(ops.convert_to_numpy(losses.sigmoid_rampup(s, 100))) for s in
              (0, 25, 50, 100, 1000)]
    assert values[0] == pytest.approx(np.exp(-5.0))
    assert values == sorted(values)
    assert values[-2] == values[-1] == 1.0
    assert float(ops.convert_to_numpy(losses.sigmoid_rampup(0, 0))) == 1.0


def test_ema_decay_warmup():
    assert float(ops.convert_to_numpy(losses.ema_decay(0, 0.999))) == pytest.approx(0.1)
    assert float(ops.convert_to_numpy(losses.ema_decay(10**6, 0.999))) == pytest.approx(0.999)
    assert float(ops.convert_to_numpy(losses.ema_decay(0, 0.999, warmup=False))) == \
        pytest.approx(0.999)


def test_no_gradient_through_pseudo_labels_or_teacher():
    """The weak view (pseudo-labels) and the teacher side get zero gradient."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    import tensorflow as tf

    weak = tf.Variable([[2.0, 0.0, -1.0], [0.5, 0.4, 0.1]])
    strong = tf.Variable([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    with tf.GradientTape(persistent=True) as tape:
        _, conf, labels = losses.pseudo_labels(weak)
        mask = losses.threshold_mask(conf, 0.5)
        fixmatch = losses.masked_cross_entropy(strong, labels, mask)
        mt = losses.soft_mse(strong, weak)
    assert tape.gradient(fixmatch, weak) is None
    assert tape.gradient(mt, weak) is None
    assert np.any(tape.gradient(fixmatch, strong).numpy() != 0)
    assert np.any(tape.gradient(mt, strong).numpy() != 0)


def test_soft_mse_zero_for_equal_logits():
    logits = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    assert float(ops.convert_to_numpy(losses.soft_mse(logits, logits))) == pytest.approx(0.0)
