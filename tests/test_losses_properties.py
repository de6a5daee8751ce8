"""Property-based tests (hypothesis) of the pure functions in keras_ssl.losses.

Each property holds for any input in the drawn ranges, logits up to ±1e4
included: exact zeros where nothing is selected, monotone schedules, exact
EMA arithmetic, probabilities that stay probabilities.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

from keras_ssl import losses

# Local settings (a loaded profile would change every other hypothesis test):
# a fixed set of examples, so that CI runs are reproducible.
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def _np(value):
    return ops.convert_to_numpy(value)


def _logits(max_batch=6, max_classes=5, bound=1e4):
    shapes = st.tuples(st.integers(1, max_batch), st.integers(2, max_classes))
    return shapes.flatmap(lambda shape: hnp.arrays(
        np.float32, shape, elements=st.floats(-bound, bound, width=32)))


def _batch_and(strategy_for_batch):
    """Logits, plus something drawn for their batch size and class count."""
    return _logits().flatmap(
        lambda z: st.tuples(st.just(z), strategy_for_batch(z.shape[0], z.shape[1])))


def _labels_and_mask(batch, classes):
    return st.tuples(
        hnp.arrays(np.int32, batch, elements=st.integers(0, classes - 1)),
        hnp.arrays(np.float32, batch, elements=st.sampled_from([0.0, 1.0])),
    )


def _log_softmax(z):
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ------------------------------------------------------------------ masking


@SETTINGS


@given(_batch_and(_labels_and_mask))
def test_masked_loss_is_exactly_zero_when_the_mask_is_empty(drawn):
    logits, (labels, _) = drawn
    value = _np(losses.masked_cross_entropy(logits, labels, np.zeros(len(labels), "float32")))
    assert value == 0.0


@SETTINGS


@given(_batch_and(_labels_and_mask))
def test_masked_loss_is_finite_non_negative_and_matches_the_reference(drawn):
    logits, (labels, mask) = drawn
    value = float(_np(losses.masked_cross_entropy(logits, labels, mask)))
    per_example = -_log_softmax(logits)[np.arange(len(labels)), labels]
    expected = float(np.mean(per_example * mask))
    assert np.isfinite(value) and value >= 0.0
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4)


@SETTINGS


@given(_batch_and(_labels_and_mask))
def test_masked_loss_is_additive_over_disjoint_masks(drawn):
    logits, (labels, mask) = drawn
    whole = _np(losses.masked_cross_entropy(logits, labels, np.ones_like(mask)))
    part = _np(losses.masked_cross_entropy(logits, labels, mask))
    rest = _np(losses.masked_cross_entropy(logits, labels, 1.0 - mask))
    np.testing.assert_allclose(part + rest, whole, rtol=1e-5, atol=1e-3)
    assert part <= whole * (1 + 1e-6) + 1e-6


@SETTINGS


@given(hnp.arrays(np.float32, st.integers(1, 20), elements=st.floats(0, 1, width=32)),
       st.floats(0.01, 0.99))
def test_threshold_mask_is_binary_and_exactly_the_comparison(confidence, threshold):
    mask = _np(losses.threshold_mask(confidence, threshold))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, (confidence >= np.float32(threshold)).astype("float32"))


# ------------------------------------------------------------- pseudo-labels


@SETTINGS


@given(_logits(), st.sampled_from([0.5, 1.0, 2.0]))
def test_pseudo_labels_are_probabilities_and_their_argmax(logits, temperature):
    probs, confidence, labels = (_np(v) for v in losses.pseudo_labels(logits, temperature))
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(confidence, probs.max(-1))
    np.testing.assert_array_equal(probs[np.arange(len(labels)), labels], confidence)


@SETTINGS


@given(_logits(bound=100.0), st.floats(-100, 100, width=32))
def test_probabilities_ignore_a_constant_shift(logits, shift):
    a = _np(losses.probabilities(logits))
    b = _np(losses.probabilities(logits + np.float32(shift)))
    np.testing.assert_allclose(a, b, atol=1e-5)


@SETTINGS


@given(_batch_and(lambda b, c: hnp.arrays(np.float32, (b, c),
                                          elements=st.floats(-1e4, 1e4, width=32))))
def test_soft_mse_is_a_bounded_symmetric_distance(drawn):
    a, b = drawn
    ab, ba = _np(losses.soft_mse(a, b)), _np(losses.soft_mse(b, a))
    assert 0.0 <= ab <= 1.0
    np.testing.assert_allclose(ab, ba, rtol=1e-6, atol=1e-7)
    assert _np(losses.soft_mse(a, a)) == 0.0


# ------------------------------------------------------------------ schedules


@SETTINGS


@given(st.integers(1, 100_000), st.integers(0, 200_000), st.integers(0, 200_000))
def test_rampup_is_monotone_in_the_unit_interval(rampup_steps, s1, s2):
    low, high = sorted((s1, s2))
    r_low = float(_np(losses.sigmoid_rampup(low, rampup_steps)))
    r_high = float(_np(losses.sigmoid_rampup(high, rampup_steps)))
    assert 0.0 < r_low <= r_high <= 1.0
    assert r_low >= np.float32(np.exp(-5.0)) * (1 - 1e-6)
    if high >= rampup_steps:
        assert r_high == 1.0


@SETTINGS


@given(st.integers(0, 10**6))
def test_rampup_of_zero_steps_is_always_one(step):
    assert float(_np(losses.sigmoid_rampup(step, 0))) == 1.0


@SETTINGS


@given(st.floats(0.0, 0.9999), st.integers(0, 10**6), st.integers(0, 10**6))
def test_ema_decay_warmup_is_monotone_and_capped(decay, s1, s2):
    low, high = sorted((s1, s2))
    d_low = float(_np(losses.ema_decay(low, decay)))
    d_high = float(_np(losses.ema_decay(high, decay)))
    assert 0.0 <= d_low <= d_high <= np.float32(decay)
    assert float(_np(losses.ema_decay(high, decay, warmup=False))) == np.float32(decay)


# ------------------------------------------------------------------------ EMA


# Magnitudes that keep every product a normal float32: TensorFlow's CPU
# kernels flush subnormal results to zero, numpy does not.
_MAGNITUDES = st.floats(float(np.float32(1e-12)), 1e6, width=32)
_FLOATS = st.one_of(st.just(0.0), _MAGNITUDES, _MAGNITUDES.map(lambda v: -v))
_VALUES = hnp.arrays(np.float32, st.integers(1, 16), elements=_FLOATS)
_DECAYS = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(float(np.float32(1e-6)), 1.0, width=32))


@SETTINGS


@given(_VALUES.flatmap(lambda a: st.tuples(
    st.just(a), hnp.arrays(np.float32, a.shape, elements=_FLOATS))), _DECAYS)
def test_ema_update_is_exact_float32_arithmetic(pair, decay):
    average, value = pair
    got = _np(losses.ema_update(average, value, decay))
    d = np.float32(decay)
    expected = d * average + (np.float32(1.0) - d) * value
    np.testing.assert_array_equal(got, expected)


@SETTINGS


@given(_VALUES, _VALUES)
def test_ema_update_endpoints(average, value):
    n = min(len(average), len(value))
    average, value = average[:n], value[:n]
    np.testing.assert_array_equal(_np(losses.ema_update(average, value, 0.0)), value)
    np.testing.assert_array_equal(_np(losses.ema_update(average, value, 1.0)), average)


# ------------------------------------------------------ FreeMatch estimates



@SETTINGS

@given(_logits(bound=50.0), st.floats(0.0, 0.999), st.integers(1, 5))
def test_confidence_estimates_stay_distributions(logits, momentum, updates):
    classes = logits.shape[1]
    tau = np.float32(1.0 / classes)
    p = np.full(classes, 1.0 / classes, "float32")
    probs = _np(losses.probabilities(logits))
    for _ in range(updates):
        tau, p = (_np(v) for v in losses.update_confidence_estimates(
            tau, p, probs, np.float32(momentum)))
    assert 1.0 / classes - 1e-5 <= tau <= 1.0 + 1e-5
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)
    thresholds = _np(losses.self_adaptive_thresholds(tau, p))
    assert np.all(np.isfinite(thresholds))
    assert np.all(thresholds >= 0) and np.all(thresholds <= tau * (1 + 1e-6))
    np.testing.assert_allclose(thresholds.max(), tau, rtol=1e-6)


@SETTINGS

@given(_logits(bound=50.0).flatmap(lambda z: st.tuples(
    st.just(z), hnp.arrays(np.float32, z.shape[1], elements=st.floats(0.0, 1.0)))))
def test_aligned_distribution_is_a_distribution(drawn):
    logits, marginal = drawn
    probs = _np(losses.probabilities(logits))
    aligned = _np(losses.align_distribution(probs, marginal))
    assert np.all(np.isfinite(aligned)) and np.all(aligned >= 0)
    np.testing.assert_allclose(aligned.sum(-1), 1.0, rtol=1e-5)
