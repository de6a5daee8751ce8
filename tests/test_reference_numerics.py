"""Each algorithm against its paper's equations, on small worked examples.

Every expected value here is computed in numpy from the equation written
above it (the paper's, in this library's names), never from the library's
own functions; the algorithm under test gets the same logits and must agree
to 1e-5, over several update steps and at the edges (nothing confident,
everything confident, one class dominating, ties).

The module runs on the backend of the session (TensorFlow in CI) and, via
`test_on_the_other_backends`, on JAX and torch in subprocesses:
`KERAS_BACKEND=jax python -m pytest tests/test_reference_numerics.py`.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_ssl

ATOL = 1e-5


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


def _softmax(logits):
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _log_softmax(logits):
    return np.log(_softmax(logits))


def _logits(probs):
    """Logits whose softmax is `probs` (rows sum to 1)."""
    return np.log(np.asarray(probs, "float64")).astype("float32")


def _loss(algorithm, weak_probs, strong_logits, index=None):
    logits = {"weak": _logits(weak_probs), "strong": np.asarray(strong_logits, "float32")}
    extra = {} if index is None else {"index": np.asarray(index, "int32")}
    out = algorithm.unlabeled_loss(logits, {}, 0, **extra)
    return float(_np(out.loss)), float(_np(out.metrics["mask_rate"])), _np(out.pseudo_labels)


def _ce(targets, strong_logits):
    """Cross-entropy of each row: integer classes or soft targets."""
    log_probs = _log_softmax(np.asarray(strong_logits, "float64"))
    targets = np.asarray(targets)
    if targets.ndim == 1:
        return -log_probs[np.arange(len(targets)), targets]
    return -(targets * log_probs).sum(-1)


STRONG = np.array([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.5, 0.2, 1.1],
                   [0.7, 0.7, 0.2]], "float32")


# --------------------------------------------------------------- FixMatch
# Sohn et al. (2020), eq. 2: l_u = 1/(mu B) sum_b 1(max q_b >= tau) H(argmax q_b, p(y | A(u_b)))
# with q_b = softmax of the weak view's logits.

@pytest.mark.parametrize("weak", [
    [[0.97, 0.02, 0.01], [0.1, 0.85, 0.05], [0.2, 0.2, 0.6], [0.4, 0.3, 0.3]],  # mixed
    [[0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.34, 0.33, 0.33], [0.5, 0.25, 0.25]],  # none
    [[0.99, 0.005, 0.005], [0.01, 0.98, 0.01], [0.0, 0.04, 0.96], [0.97, 0.02, 0.01]],
])
def test_fixmatch_loss_and_mask(weak):
    weak = np.asarray(weak) + 1e-9
    weak = weak / weak.sum(1, keepdims=True)
    tau = 0.95
    mask = (weak.max(1) >= tau).astype("float64")
    expected = np.mean(mask * _ce(weak.argmax(1), STRONG))
    loss, rate, labels = _loss(keras_ssl.FixMatch(threshold=tau), weak, STRONG)
    assert loss == pytest.approx(expected, abs=ATOL)
    assert rate == pytest.approx(mask.mean(), abs=ATOL)
    np.testing.assert_array_equal(labels, weak.argmax(1))


def test_fixmatch_ties_and_the_threshold_itself():
    # A tie between classes: the first of them is the label (argmax). A
    # confidence equal to the threshold counts (>=).
    weak = np.array([[0.5, 0.5, 0.0], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.2, 0.4, 0.4]])
    weak = (weak + 1e-12) / (weak + 1e-12).sum(1, keepdims=True)
    tau = float(np.float32(weak[1].max()))  # exactly reached by image 1
    algorithm = keras_ssl.FixMatch(threshold=min(tau, 0.999))
    loss, rate, labels = _loss(algorithm, weak, STRONG)
    assert labels[0] == 0 and labels[3] == 1
    mask = np.array([0.0, 1.0, 1.0, 0.0])
    assert rate == pytest.approx(0.5, abs=ATOL)
    assert loss == pytest.approx(np.mean(mask * _ce(weak.argmax(1), STRONG)), abs=1e-4)


def test_temperature_sharpens_soft_targets_only():
    # The threshold sees softmax(logits) (T = 1); with hard labels T changes
    # nothing; with soft targets the target is softmax(logits / T).
    weak = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    tau, temperature = 0.65, 0.5
    mask = (weak.max(1) >= tau).astype("float64")
    plain = _loss(keras_ssl.FixMatch(threshold=tau), weak, STRONG)
    hot = _loss(keras_ssl.FixMatch(threshold=tau, temperature=temperature), weak, STRONG)
    assert hot[1] == pytest.approx(mask.mean(), abs=ATOL)  # 0.5, not the sharpened 0.75
    assert hot[0] == pytest.approx(plain[0], abs=ATOL)
    soft = _softmax(np.log(weak) / temperature)
    expected = np.mean(mask * _ce(soft, STRONG))
    loss, rate, _ = _loss(keras_ssl.FixMatch(threshold=tau, temperature=temperature,
                                             hard_labels=False), weak, STRONG)
    assert loss == pytest.approx(expected, abs=ATOL)
    assert rate == pytest.approx(mask.mean(), abs=ATOL)


# ------------------------------------------------ distribution alignment
# ReMixMatch (Berthelot et al., 2020) as USB runs it: m_1 = mean_b q_b (the
# first batch), m_t = 0.999 m_{t-1} + 0.001 mean_b q_b; q~ = Normalize(q (u + eps) / (m + eps)).

def _align(q, m, eps=1e-6):
    aligned = q * (1.0 / q.shape[1] + eps) / (m + eps)
    return aligned / aligned.sum(1, keepdims=True)


def test_alignment_starts_at_the_first_batch_and_moves_with_momentum():
    algorithm = keras_ssl.FixMatch(threshold=0.6, distribution_alignment=True)
    algorithm.build_state(3)
    batches = [np.array([[0.97, 0.02, 0.01], [0.9, 0.05, 0.05], [0.95, 0.03, 0.02],
                         [0.2, 0.7, 0.1]]),
               np.array([[0.3, 0.6, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8],
                         [0.34, 0.33, 0.33]])]
    m = None
    for q in batches:
        m = q.mean(0) if m is None else 0.999 * m + 0.001 * q.mean(0)
        aligned = _align(q, m)
        mask = (aligned.max(1) >= 0.6).astype("float64")
        expected = np.mean(mask * _ce(aligned.argmax(1), STRONG))
        loss, rate, labels = _loss(algorithm, q, STRONG)
        np.testing.assert_allclose(_np(algorithm.marginal), m, atol=ATOL)
        assert rate == pytest.approx(mask.mean(), abs=ATOL)
        assert loss == pytest.approx(expected, abs=ATOL)
        np.testing.assert_array_equal(labels, aligned.argmax(1))


def test_alignment_with_one_class_dominating_masks_everything():
    # Every image predicted as class 0 with 0.97: aligned to the batch's own
    # mean, no image stays confident (mask 0, loss 0), as in USB.
    q = np.tile([[0.97, 0.02, 0.01]], (8, 1))
    algorithm = keras_ssl.FixMatch(threshold=0.95, distribution_alignment=True)
    algorithm.build_state(3)
    loss, rate, _ = _loss(algorithm, q, np.tile(STRONG[:1], (8, 1)))
    assert rate == 0.0 and loss == 0.0


def test_alignment_epsilon_keeps_a_never_predicted_class_finite():
    q = np.array([[0.999999, 0.000001, 0.0], [0.5, 0.5, 0.0]]) + 1e-30
    aligned = _np(keras_ssl.losses.align_distribution(
        q.astype("float32"), np.array([0.75, 0.25, 0.0], "float32")))
    assert np.all(np.isfinite(aligned))
    np.testing.assert_allclose(aligned.sum(1), 1.0, atol=ATOL)


# -------------------------------------------------------------- FlexMatch
# Zhang et al. (2021), eq. 6-7 with USB's warm-up: sigma_c = #{n : memory_n = c},
# beta_c = sigma_c / max(max_c sigma_c, #{n : memory_n = -1}),
# T_c = tau * beta_c / (2 - beta_c); mask_b = 1(max q_b >= T_{argmax q_b}) with
# the thresholds from before the batch; then memory_n = argmax q_b where max q_b >= tau.
# The thresholds stay as they are while one entry ("unused" or a class) holds every image.

def _flexmatch_reference(memory, batches, tau, classes, warmup=True):
    memory = np.array(memory)
    beta = np.zeros(classes)
    out = []
    for index, q in batches:
        thresholds = tau * beta / (2.0 - beta)
        labels = q.argmax(1)
        mask = (q.max(1) >= thresholds[labels]).astype("float64")
        out.append((mask, thresholds.copy()))
        confident = q.max(1) >= tau
        memory[np.asarray(index)[confident]] = labels[confident]
        counts = np.array([(memory == c).sum() for c in range(classes)], "float64")
        unused = float((memory == -1).sum())
        if max(counts.max(), unused) < len(memory):
            denominator = max(counts.max(), unused) if warmup else counts.max()
            beta = counts / denominator if denominator else np.zeros(classes)
    return out, memory, beta


@pytest.mark.parametrize("warmup", [True, False])
def test_flexmatch_per_image_memory_over_three_steps(warmup):
    tau, classes, n = 0.95, 3, 4
    batches = [
        ([0, 1, 2, 3], np.array([[0.97, 0.02, 0.01], [0.96, 0.02, 0.02],
                                 [0.005, 0.99, 0.005], [0.5, 0.2, 0.3]])),
        ([3, 0, 1, 2], np.array([[0.2, 0.2, 0.6], [0.4, 0.35, 0.25],
                                 [0.3, 0.5, 0.2], [0.01, 0.97, 0.02]])),
        ([3, 0, 1, 2], np.array([[0.02, 0.02, 0.96], [0.6, 0.3, 0.1],
                                 [0.98, 0.01, 0.01], [0.1, 0.3, 0.6]])),
    ]
    expected, memory, beta = _flexmatch_reference([-1] * n, batches, tau, classes, warmup)
    algorithm = keras_ssl.FlexMatch(threshold=tau, threshold_warmup=warmup)
    algorithm.build_state(classes)
    algorithm.build_unlabeled_state(n)
    for (index, q), (mask, thresholds) in zip(batches, expected):
        metric = float(_np(algorithm.extra_metrics()["threshold"]))
        assert metric == pytest.approx(thresholds.mean(), abs=ATOL)
        loss, rate, _ = _loss(algorithm, q, STRONG, index)
        assert rate == pytest.approx(mask.mean(), abs=ATOL)
        assert loss == pytest.approx(np.mean(mask * _ce(q.argmax(1), STRONG)), abs=ATOL)
    np.testing.assert_array_equal(_np(algorithm.remembered), memory)
    np.testing.assert_allclose(_np(algorithm.learning_effect), beta, atol=ATOL)
    # After the first step class 0's threshold is 0.95, class 1's 0.317 and
    # class 2's 0: the second step's image 0 (0.4 for class 0) is masked out.
    assert expected[1][0].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert memory.tolist() == [0, 0, 1, 2]


def test_flexmatch_starts_with_every_pseudo_label_and_holds_while_one_class_has_all():
    # Memory empty: every threshold is 0 (mask 1 even for a 0.34 confidence).
    # Then every image remembered as class 0: one entry holds all, so the
    # thresholds do not move (the reference's guard).
    algorithm = keras_ssl.FlexMatch(threshold=0.9)
    algorithm.build_state(3)
    algorithm.build_unlabeled_state(4)
    q = np.array([[0.34, 0.33, 0.33]] * 4)
    assert _loss(algorithm, q, STRONG, [0, 1, 2, 3])[1] == 1.0
    q = np.tile([[0.98, 0.01, 0.01]], (4, 1))
    _loss(algorithm, q, STRONG, [0, 1, 2, 3])
    np.testing.assert_array_equal(_np(algorithm.remembered), [0, 0, 0, 0])
    np.testing.assert_allclose(_np(algorithm.learning_effect), [0, 0, 0], atol=ATOL)


def test_flexmatch_running_estimate_masks_with_the_shares_from_before_the_batch():
    # memory="running": s_t = m s_{t-1} + (1 - m) [shares of confident per class, unconfident];
    # the batch is masked with s_{t-1}. Momentum 0: the previous batch's shares.
    tau = 0.9
    algorithm = keras_ssl.FlexMatch(threshold=tau, memory="running", momentum=0.0)
    algorithm.build_state(3)
    first = np.array([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.02, 0.96, 0.02],
                      [0.4, 0.3, 0.3]])
    assert _loss(algorithm, first, STRONG)[1] == 1.0  # thresholds 0 before any batch
    shares = np.array([0.5, 0.25, 0.0])
    beta = shares / max(shares.max(), 0.25)
    thresholds = tau * beta / (2 - beta)  # 0.9, 0.3, 0
    second = np.array([[0.8, 0.1, 0.1], [0.1, 0.5, 0.4], [0.2, 0.2, 0.6], [0.95, 0.03, 0.02]])
    mask = (second.max(1) >= thresholds[second.argmax(1)]).astype("float64")
    assert mask.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert _loss(algorithm, second, STRONG)[1] == pytest.approx(mask.mean(), abs=ATOL)


# -------------------------------------------------------------- SoftMatch
# Chen et al. (2023), eq. 7-8 with uniform alignment (their Sec. 3.3):
# q~ = Normalize(q (u + eps) / (m + eps)), m as in alignment above (momentum m);
# mu_t = m mu_{t-1} + (1 - m) mean_b max q~_b,
# var_t = m var_{t-1} + (1 - m) 1/(B - 1) sum_b (max q~_b - mean max q~)^2,
# lambda_b = exp(-(min(max q~_b - mu_t, 0))^2 / (2 var_t / n_sigma^2)); mu_0 = 1/C, var_0 = 1.
# The pseudo-label is argmax q (before alignment).

@pytest.mark.parametrize("alignment", [True, False])
def test_softmatch_weights_over_two_steps(alignment):
    momentum, n_sigma, classes = 0.9, 2.0, 3
    algorithm = keras_ssl.SoftMatch(momentum=momentum, n_sigma=n_sigma,
                                    distribution_alignment=alignment)
    algorithm.build_state(classes)
    mu, var, m = 1.0 / classes, 1.0, None
    batches = [np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]),
               np.array([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.45, 0.1, 0.45],
                         [0.3, 0.3, 0.4]])]
    for q in batches:
        if alignment:
            m = q.mean(0) if m is None else momentum * m + (1 - momentum) * q.mean(0)
            aligned = _align(q, m)
        else:
            aligned = q
        c = aligned.max(1)
        mu = momentum * mu + (1 - momentum) * c.mean()
        var = momentum * var + (1 - momentum) * c.var(ddof=1)
        weights = np.exp(-np.minimum(c - mu, 0.0) ** 2 / (2 * var / n_sigma ** 2))
        expected = np.mean(weights * _ce(q.argmax(1), STRONG))
        loss, rate, labels = _loss(algorithm, q, STRONG)
        assert float(_np(algorithm.confidence_mean)) == pytest.approx(mu, abs=ATOL)
        assert float(_np(algorithm.confidence_variance)) == pytest.approx(var, abs=ATOL)
        assert rate == pytest.approx(weights.mean(), abs=ATOL)
        assert loss == pytest.approx(expected, abs=ATOL)
        np.testing.assert_array_equal(labels, q.argmax(1))


def test_softmatch_pseudo_label_is_the_unaligned_class():
    # Class 0 dominates the batch; alignment moves image 0's top class to 1,
    # but its pseudo-label stays 0 (the paper's and USB's choice).
    q = np.array([[0.5, 0.45, 0.05], [0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.8, 0.1, 0.1]])
    assert _align(q, q.mean(0))[0].argmax() == 1
    algorithm = keras_ssl.SoftMatch()
    algorithm.build_state(3)
    assert _loss(algorithm, q, STRONG)[2][0] == 0


# -------------------------------------------------------------- FreeMatch
# Wang et al. (2023), eq. 5-7 (self-adaptive thresholds; tau_0 = p~_0 = h~_0 = 1/C):
# tau_t = m tau + (1 - m) mean_b max q_b, p~_t = m p~ + (1 - m) mean_b q_b,
# h~_t = m h~ + (1 - m) Hist(argmax q_b); mask_b = 1(max q_b >= tau_t p~_t(c) / max p~_t), c = argmax q_b;
# eq. 10-11 (fairness): L_f = -H(SumNorm(p~_t / h~_t), SumNorm(p_bar / h_bar)), p_bar and
# h_bar the mean probability and histogram of the masked strong views; weight w_f.

def _sum_norm_scaled(values, histogram):
    scale = np.where(histogram > 0, 1.0 / np.where(histogram > 0, histogram, 1.0), 0.0)
    scaled = values * scale
    return scaled / scaled.sum()


def _freematch_reference(batches, momentum, classes, w_f):
    tau, p, h = 1.0 / classes, np.full(classes, 1.0 / classes), np.full(classes, 1.0 / classes)
    out = []
    for q in batches:
        tau = momentum * tau + (1 - momentum) * q.max(1).mean()
        p = momentum * p + (1 - momentum) * q.mean(0)
        h = momentum * h + (1 - momentum) * np.bincount(q.argmax(1), minlength=classes) / len(q)
        labels = q.argmax(1)
        mask = (q.max(1) >= (tau * p / p.max())[labels]).astype("float64")
        kept = mask > 0
        fairness = 0.0
        if kept.any():
            strong = _softmax(STRONG[: len(q)][kept].astype("float64"))
            h_s = np.bincount(strong.argmax(1), minlength=classes) / kept.sum()
            fairness = np.sum(_sum_norm_scaled(p, h) *
                              np.log(_sum_norm_scaled(strong.mean(0), h_s) + 1e-12))
        loss = np.mean(mask * _ce(labels, STRONG[: len(q)])) + w_f * fairness
        out.append((tau, p.copy(), h.copy(), mask, loss))
    return out


def _check_freematch(batches, momentum, w_f=0.01, classes=3):
    algorithm = keras_ssl.FreeMatch(momentum=momentum, fairness_weight=w_f)
    algorithm.build_state(classes)
    expected = _freematch_reference(batches, momentum, classes, w_f)
    for q, (tau, p, h, mask, reference) in zip(batches, expected):
        loss, rate, _ = _loss(algorithm, q, STRONG[: len(q)])
        assert float(_np(algorithm.global_confidence)) == pytest.approx(tau, abs=ATOL)
        np.testing.assert_allclose(_np(algorithm.class_confidence), p, atol=ATOL)
        np.testing.assert_allclose(_np(algorithm.label_histogram), h, atol=ATOL)
        assert rate == pytest.approx(mask.mean(), abs=ATOL)
        assert loss == pytest.approx(reference, abs=ATOL)
    return expected


def test_freematch_thresholds_and_fairness_over_two_steps():
    batches = [np.array([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]),
               np.array([[0.5, 0.3, 0.2], [0.1, 0.85, 0.05], [0.36, 0.33, 0.31], [0.2, 0.7, 0.1]])]
    expected = _check_freematch(batches, momentum=0.9)
    assert 0 < expected[1][3].mean() < 1  # some images masked, some kept


def test_freematch_with_nothing_confident_has_no_loss():
    # A confident, balanced batch raises tau to 0.657; the next, at 0.5
    # everywhere, stays under tau_2 = 0.578 (p~ uniform): mask 0, loss 0
    # (no fairness term either).
    confident = np.full((3, 3), 0.01) + np.eye(3) * 0.97
    unsure = np.full((3, 3), 0.25) + np.eye(3) * 0.25
    expected = _check_freematch([confident, unsure], momentum=0.5)
    assert expected[1][3].sum() == 0 and expected[1][4] == 0.0


# ----------------------------------------------------------- Mean Teacher
# Tarvainen & Valpola (2017): l = w(t) mean_{b,c} (softmax(s)_bc - softmax(t)_bc)^2,
# w(t) = w exp(-5 (1 - min(t / T, 1))^2).

def test_mean_teacher_consistency():
    algorithm = keras_ssl.MeanTeacher(consistency_weight=50.0, rampup_steps=100)
    student, teacher = STRONG, STRONG[::-1].copy()
    for step in (0, 40, 100, 250):
        weight = 50.0 * np.exp(-5.0 * (1.0 - min(step / 100.0, 1.0)) ** 2)
        expected = weight * np.mean((_softmax(student) - _softmax(teacher)) ** 2)
        out = algorithm.unlabeled_loss({"student": student}, {"teacher": teacher}, step)
        assert float(_np(out.loss)) == pytest.approx(expected, rel=1e-5, abs=ATOL)


# ---------------------------------------------------------- self-training
# The table's rows r_b (stored, aligned probabilities): mask_b = 1(max r_b >= tau),
# l = mean_b mask_b H(argmax r_b, p(y | A(u_b))).

def test_self_training_trains_towards_stored_rows():
    rows = np.array([[0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.05, 0.05, 0.9], [0.5, 0.5, 0.0]])
    algorithm = keras_ssl.SelfTraining(threshold=0.8)
    mask = (rows.max(1) >= 0.8).astype("float64")
    expected = np.mean(mask * _ce(rows.argmax(1), STRONG))
    table = np.log(np.clip(rows, 1e-7, 1.0)).astype("float32")
    out = algorithm.unlabeled_loss({"strong": STRONG}, {"table": table}, 0)
    assert float(_np(out.loss)) == pytest.approx(expected, abs=ATOL)
    assert float(_np(out.metrics["mask_rate"])) == pytest.approx(0.5, abs=ATOL)


# --------------------------------------------------------- other backends

@pytest.mark.skipif(os.environ.get("KERAS_SSL_REFERENCE_SUBPROCESS") == "1",
                    reason="already in a subprocess")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_on_the_other_backends(backend):
    if keras.backend.backend() == backend:
        pytest.skip(f"this session runs {backend}")
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, KERAS_SSL_REFERENCE_SUBPROCESS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        capture_output=True, text=True, env=env, timeout=600, check=False,
        cwd=os.path.dirname(__file__))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
