"""SoftMatch: every pseudo-label counts, weighted by a truncated Gaussian of its confidence."""

from keras import ops

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("softmatch")
class SoftMatch(PseudoLabel):
    """SoftMatch (Chen et al., 2023): soft weights instead of a hard threshold.

    A hard threshold trades quantity for quality: high, and most unlabeled
    images sit idle for much of a short run; low, and wrong pseudo-labels
    train the model. SoftMatch weights each pseudo-label by a truncated
    Gaussian of its confidence `c`: 1 above the running mean confidence
    `mu`, `exp(-(c - mu)^2 / (2 var / n_sigma^2))` below it, where `mu` and
    `var` are EMAs of the batch mean and unbiased variance of the confidence
    on unlabeled batches (starting at `1 / classes` and 1). Every image
    contributes from the first step, the doubtful ones less.

    As in the paper, the confidence is taken after uniform distribution
    alignment (`distribution_alignment=True`: `p * (u + 1e-6) / (m + 1e-6)`,
    `m` the first batch's mean prediction, then its EMA with `momentum`),
    so that classes the model under-predicts are not weighted down; the
    pseudo-label itself is the plain prediction's class.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.algorithms.get("softmatch"))
    ```

    Args:
        momentum: EMA momentum of the confidence mean and variance and of
            the alignment's class distribution. Default 0.999.
        n_sigma: width of the Gaussian in standard deviations. Default 2.
        distribution_alignment: the paper's uniform alignment of the
            confidence. Default True; False weights the plain confidence.
        unlabeled_weight, temperature, weak, strong, flip, hard_labels: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "confidence_mean")
    targets_from_adjusted = False  # the pseudo-label: the unaligned prediction's class

    def __init__(self, momentum=0.999, n_sigma=2.0, unlabeled_weight=1.0, temperature=1.0,
                 weak=None, strong=None, flip=True, distribution_alignment=True,
                 hard_labels=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip, hard_labels)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"SoftMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        if not float(n_sigma) > 0:
            raise ValueError(f"SoftMatch(n_sigma=...) must be > 0; received {n_sigma!r}.")
        self.momentum = float(momentum)
        self.n_sigma = float(n_sigma)
        self.distribution_alignment = bool(distribution_alignment)
        self.confidence_mean = None
        self.confidence_variance = None
        self.marginal = None
        self.marginal_started = None

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        self.confidence_mean = self.state_variable("confidence_mean", 1.0 / classes)
        self.confidence_variance = self.state_variable("confidence_variance", 1.0)
        state = [self.confidence_mean, self.confidence_variance]
        if self.distribution_alignment:
            state += self.alignment_state(classes)
        return state

    def adjust(self, probs):
        if not self.distribution_alignment:
            return probs
        return self.align(probs, self.momentum)

    def mask(self, probs, confidence, labels):
        del probs, labels
        confidence = ops.cast(confidence, "float32")
        count = ops.cast(ops.shape(confidence)[0], "float32")
        batch_mean = ops.mean(confidence)
        # The unbiased estimate (n - 1), as the paper's and USB's torch.var.
        batch_variance = ops.var(confidence) * count / ops.maximum(count - 1.0, 1.0)
        m = self.momentum
        mean = m * self.confidence_mean.value + (1.0 - m) * batch_mean
        variance = m * self.confidence_variance.value + (1.0 - m) * batch_variance
        self.confidence_mean.assign(mean)
        self.confidence_variance.assign(variance)
        return losses.truncated_gaussian_weight(confidence, mean, variance, self.n_sigma)

    def extra_metrics(self):
        return {"confidence_mean": self.confidence_mean.value}

    def get_config(self):
        config = {"momentum": self.momentum, "n_sigma": self.n_sigma, **super().get_config()}
        if not self.distribution_alignment:
            config["distribution_alignment"] = False
        return config
