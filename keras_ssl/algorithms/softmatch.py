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
    Gaussian of its confidence: 1 above the running mean confidence `mu`,
    `exp(-(c - mu)^2 / (2 var / n_sigma^2))` below it, where `mu` and `var`
    are EMAs of the mean and variance of the confidence on unlabeled
    batches. Every image contributes from the first step, the doubtful ones
    less. (The paper's uniform alignment of the class distribution is not
    included.)

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.algorithms.get("softmatch"))
    ```

    Args:
        momentum: EMA momentum of the confidence mean and variance.
            Default 0.999.
        n_sigma: width of the Gaussian in standard deviations. Default 2.
        unlabeled_weight, temperature, weak, strong, flip: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "confidence_mean")

    def __init__(self, momentum=0.999, n_sigma=2.0, unlabeled_weight=1.0, temperature=1.0,
                 weak=None, strong=None, flip=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"SoftMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        if not float(n_sigma) > 0:
            raise ValueError(f"SoftMatch(n_sigma=...) must be > 0; received {n_sigma!r}.")
        self.momentum = float(momentum)
        self.n_sigma = float(n_sigma)
        self.confidence_mean = None
        self.confidence_variance = None

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        self.confidence_mean = self.state_variable("confidence_mean", 1.0 / classes)
        self.confidence_variance = self.state_variable("confidence_variance", 1.0)
        return [self.confidence_mean, self.confidence_variance]

    def mask(self, probs, confidence, labels):
        del probs, labels
        confidence = ops.cast(confidence, "float32")
        batch_mean = ops.mean(confidence)
        batch_variance = ops.var(confidence)
        m = self.momentum
        mean = m * self.confidence_mean.value + (1.0 - m) * batch_mean
        variance = m * self.confidence_variance.value + (1.0 - m) * batch_variance
        self.confidence_mean.assign(mean)
        self.confidence_variance.assign(variance)
        return losses.truncated_gaussian_weight(confidence, mean, variance, self.n_sigma)

    def extra_metrics(self):
        return {"confidence_mean": self.confidence_mean.value}

    def get_config(self):
        return {"momentum": self.momentum, "n_sigma": self.n_sigma, **super().get_config()}
