"""Pure `keras.ops` building blocks of SSL losses.

Every function here is a small, stateless function of tensors (and plain
Python numbers), written once in `keras.ops` so that it runs unchanged on
TensorFlow, JAX and PyTorch. Algorithms (`keras_ssl.algorithms`) are
compositions of these functions: masking, pseudo-labelling, consistency and
schedules. All of them compute in float32, whatever the model's dtype policy.
"""

import keras
from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def probabilities(logits, temperature=1.0):
    """Softmax of `logits / temperature`, computed in float32."""
    logits = _f32(logits)
    if temperature != 1.0:
        logits = logits / temperature
    return ops.softmax(logits, axis=-1)


def sharpen(probs, temperature):
    """`p ** (1 / T)`, renormalised: softmax(logits / T) when `p` is softmax(logits)."""
    probs = _f32(probs)
    if temperature == 1.0:
        return probs
    sharpened = ops.power(ops.maximum(probs, 1e-12), 1.0 / temperature)
    return sharpened / ops.sum(sharpened, axis=-1, keepdims=True)


def pseudo_labels(logits, temperature=1.0):
    """Targets from a model's own predictions, with no gradient.

    Returns `(probs, confidence, hard_labels)`: the class probabilities, the
    largest probability per example and its class index.
    """
    probs = ops.stop_gradient(probabilities(logits, temperature))
    return probs, ops.max(probs, axis=-1), ops.argmax(probs, axis=-1)


def threshold_mask(confidence, threshold):
    """FixMatch's mask: 1.0 where `confidence >= threshold`, else 0.0.

    `threshold` may be a float or a tensor broadcastable to `confidence`
    (a per-class or adaptive threshold).
    """
    return _f32(ops.greater_equal(_f32(confidence), _f32(threshold)))


def masked_cross_entropy(logits, labels, mask):
    """Mean over the batch of `mask * cross_entropy(labels, logits)`.

    The mean divides by the batch size, not by the number of unmasked
    examples (as in FixMatch), so an all-zero mask gives exactly 0.0 and never
    a division by zero. `labels` are integer class indices of shape
    `(batch,)`, or soft targets (class probabilities) of shape
    `(batch, classes)`.
    """
    logits = _f32(logits)
    log_probs = ops.log_softmax(logits, axis=-1)
    if len(labels.shape) == len(logits.shape):
        targets = ops.stop_gradient(_f32(labels))
    else:
        targets = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1])
    per_example = -ops.sum(targets * log_probs, axis=-1)
    return ops.mean(per_example * ops.stop_gradient(_f32(mask)))


def truncated_gaussian_weight(confidence, mean, variance, n_sigma=2.0):
    """SoftMatch's weight of a pseudo-label: 1 at or above `mean` confidence,
    `exp(-(c - mean)^2 / (2 variance / n_sigma^2))` below it (no gradient)."""
    confidence = _f32(confidence)
    width = 2.0 * ops.maximum(_f32(variance), 1e-12) / (float(n_sigma) ** 2)
    weight = ops.exp(-ops.square(ops.minimum(confidence - _f32(mean), 0.0)) / width)
    return ops.stop_gradient(weight)


def soft_mse(student_logits, teacher_logits):
    """Mean squared error between class probabilities (Mean Teacher).

    The teacher side carries no gradient. Averaged over classes and batch.
    """
    student = probabilities(student_logits)
    teacher = ops.stop_gradient(probabilities(teacher_logits))
    return ops.mean(ops.square(student - teacher))


def sigmoid_rampup(step, rampup_steps):
    """`exp(-5 (1 - t)^2)` with `t = clip(step / rampup_steps, 0, 1)`.

    Monotone from exp(-5) ~ 0.0067 at step 0 to exactly 1.0 at
    `rampup_steps` and after. `rampup_steps=0` means no ramp (always 1.0).
    """
    if rampup_steps <= 0:
        return ops.ones((), "float32")
    t = ops.clip(_f32(step) / float(rampup_steps), 0.0, 1.0)
    return ops.exp(-5.0 * ops.square(1.0 - t))


def ema_decay(step, decay, warmup=True):
    """Decay of an EMA at `step`: `min(decay, (1 + step) / (10 + step))`.

    With `warmup=False` it is `decay` at every step.
    """
    decay = ops.convert_to_tensor(decay, "float32")
    if not warmup:
        return decay
    step = _f32(step)
    return ops.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average, value, decay):
    """One EMA step: `decay * average + (1 - decay) * value` (no gradient)."""
    decay = ops.cast(decay, average.dtype)
    value = ops.stop_gradient(ops.cast(value, average.dtype))
    return decay * average + (1.0 - decay) * value


def self_adaptive_thresholds(global_confidence, class_confidence):
    """FreeMatch's per-class thresholds: `tau * p_c / max_c p_c`.

    `global_confidence` (tau) is an EMA of the mean top probability on
    unlabeled images, `class_confidence` (p) an EMA of their mean class
    probabilities. Classes the model is less sure of get a lower threshold.
    """
    p = _f32(class_confidence)
    return _f32(global_confidence) * p / ops.max(p)


def update_confidence_estimates(global_confidence, class_confidence, probs, momentum):
    """One EMA step of FreeMatch's (tau, p) from a batch of probabilities."""
    probs = ops.stop_gradient(_f32(probs))
    new_global = momentum * global_confidence + (1.0 - momentum) * ops.mean(
        ops.max(probs, axis=-1)
    )
    new_class = momentum * class_confidence + (1.0 - momentum) * ops.mean(probs, axis=0)
    return new_global, new_class


def align_distribution(probs, model_marginal, target_marginal=None, epsilon=1e-6):
    """Distribution alignment (ReMixMatch): `p * (t + eps) / (m + eps)`, renormalised.

    `model_marginal` (m) is a running mean of the model's predictions on
    unlabeled images; `target_marginal` (t) defaults to uniform. `epsilon`
    is added to both marginals, as in the reference implementation (USB), so
    a class the model never predicts is not divided by zero.
    """
    probs = _f32(probs)
    m = _f32(model_marginal)
    t = (ops.ones_like(m) / ops.cast(ops.shape(m)[-1], "float32")
         if target_marginal is None else _f32(target_marginal))
    aligned = probs * (t + epsilon) / (m + epsilon)
    return aligned / ops.sum(aligned, axis=-1, keepdims=True)


def update_marginal(marginal, probs, momentum, started):
    """One step of alignment's running class distribution (no gradient).

    The first batch (`started` is 0) sets it to that batch's mean prediction,
    as ReMixMatch and USB start it; afterwards it moves as an EMA with
    `momentum`. Returns the new marginal.
    """
    batch = ops.mean(ops.stop_gradient(_f32(probs)), axis=0)
    moved = momentum * _f32(marginal) + (1.0 - momentum) * batch
    return ops.where(ops.greater(_f32(started), 0.0), moved, batch)


def fairness_loss(strong_logits, mask, class_confidence, label_histogram):
    """FreeMatch's self-adaptive fairness loss, `-H(SumNorm(p / h), SumNorm(p_s / h_s))`.

    `p` is the running mean class probability and `h` the running histogram
    of predicted classes on unlabeled images (FreeMatch's EMAs); `p_s` and
    `h_s` are the mean probability and the histogram of predicted classes of
    the strong views that `mask` keeps. Classes absent from a histogram are
    scaled by 0 (not 1/0). Minimising it (a negative cross-entropy) pushes
    the strong views' predictions to be diverse across classes. 0 when the
    mask keeps nothing. Gradients flow through `strong_logits` only.
    """
    probs = ops.softmax(_f32(strong_logits), axis=-1)
    mask = ops.stop_gradient(_f32(mask))
    kept = ops.sum(mask)
    safe = ops.maximum(kept, 1.0)
    classes = ops.shape(probs)[-1]
    predicted = ops.one_hot(ops.argmax(probs, axis=-1), classes)
    hist = ops.stop_gradient(ops.sum(predicted * mask[:, None], axis=0) / safe)
    mean_probs = ops.sum(probs * mask[:, None], axis=0) / safe

    def scaled(values, histogram):
        scale = ops.where(ops.greater(histogram, 0.0),
                          1.0 / ops.maximum(histogram, 1e-12), 0.0)
        values = values * ops.stop_gradient(scale)
        return values / ops.maximum(ops.sum(values), 1e-12)

    target = ops.stop_gradient(scaled(_f32(class_confidence), _f32(label_histogram)))
    loss = ops.sum(target * ops.log(scaled(mean_probs, hist) + 1e-12))
    return ops.where(ops.greater(kept, 0.0), loss, 0.0)


@keras.saving.register_keras_serializable(package="keras_ssl")
class ClassificationCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer, one-hot or soft labels alike.

    The loss `SemiSupervisedModel.compile(loss=None)` picks: labels of
    shape `(batch,)` or `(batch, 1)` are class indices (sparse
    cross-entropy), labels of shape `(batch, classes)` are one-hot or
    soft targets (categorical cross-entropy). The choice is made from the
    labels' static rank, once per traced step.

    Example:

    ```python
    loss = keras_ssl.losses.ClassificationCrossentropy(from_logits=True)
    loss(np.array([2]), logits)            # integer labels
    loss(np.array([[0., 0., 1.]]), logits)  # one-hot labels, same value
    ```

    Args:
        from_logits: whether the model outputs logits (True) or
            probabilities (False).
    """

    def __init__(self, from_logits=True, name="classification_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        shape = tuple(y_true.shape)
        if len(shape) == len(y_pred.shape) and shape[-1] not in (None, 1):
            return keras.losses.categorical_crossentropy(
                ops.cast(y_true, y_pred.dtype), y_pred, from_logits=self.from_logits
            )
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}
