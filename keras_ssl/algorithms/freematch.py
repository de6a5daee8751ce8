"""FreeMatch: self-adaptive thresholds and the self-adaptive fairness loss."""

from keras import ops

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("freematch")
class FreeMatch(PseudoLabel):
    """FreeMatch (Wang et al., 2023): thresholds that follow the model's confidence.

    A fixed high threshold (FixMatch's 0.95) discards most unlabeled images
    early in training, when the model is rarely that confident. FreeMatch
    replaces it by per-class thresholds that follow the model's own
    confidence on unlabeled batches, each an EMA with `momentum` started at
    `1 / classes`:

        tau   <- m tau + (1 - m) mean_b max_c p_bc        (global confidence)
        p~_c  <- m p~_c + (1 - m) mean_b p_bc              (class confidence)
        h~_c  <- m h~_c + (1 - m) share of argmax_c p_b    (class histogram)
        mask_b = [max p_b >= tau * p~_c / max p~ at c = argmax p_b]

    and adds the self-adaptive fairness loss (weight `fairness_weight`),
    `-H(SumNorm(p~ / h~), SumNorm(p_s / h_s))` over the confident strong
    views (`keras_ssl.losses.fairness_loss`), which keeps the predictions
    diverse across classes. The estimates are updated with the batch
    before its mask is taken, as in the paper.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FreeMatch())
    ```

    Args:
        momentum: EMA momentum of the estimates. Default 0.999.
        fairness_weight: weight of the fairness loss. Default 0.01 (the
            reference implementation's; 0 turns it off).
        unlabeled_weight, temperature, weak, strong, flip, hard_labels: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "threshold")

    def __init__(self, momentum=0.999, fairness_weight=0.01, unlabeled_weight=1.0,
                 temperature=1.0, weak=None, strong=None, flip=True, hard_labels=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip, hard_labels)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"FreeMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        if float(fairness_weight) < 0:
            raise ValueError(
                f"FreeMatch(fairness_weight=...) must be >= 0; received {fairness_weight!r}."
            )
        self.momentum = float(momentum)
        self.fairness_weight = float(fairness_weight)
        self.global_confidence = None
        self.class_confidence = None
        self.label_histogram = None

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        # A new array per variable: JAX donates each variable's buffer.
        self.global_confidence = self.state_variable("global_confidence", 1.0 / classes)
        self.class_confidence = self.state_variable(
            "class_confidence", ops.ones((classes,)) / classes)
        self.label_histogram = self.state_variable(
            "label_histogram", ops.ones((classes,)) / classes)
        return [self.global_confidence, self.class_confidence, self.label_histogram]

    def mask(self, probs, confidence, labels):
        tau, p = losses.update_confidence_estimates(
            self.global_confidence.value, self.class_confidence.value, probs, self.momentum
        )
        classes = ops.shape(probs)[-1]
        batch_histogram = ops.mean(ops.one_hot(ops.cast(labels, "int32"), classes), axis=0)
        m = self.momentum
        self.global_confidence.assign(tau)
        self.class_confidence.assign(p)
        self.label_histogram.assign(m * self.label_histogram.value + (1.0 - m) * batch_histogram)
        thresholds = losses.self_adaptive_thresholds(tau, p)
        per_example = ops.take(thresholds, ops.cast(labels, "int32"))
        return losses.threshold_mask(confidence, per_example)

    def extra_loss(self, logits, mask):
        if not self.fairness_weight:
            return 0.0
        return self.fairness_weight * losses.fairness_loss(
            logits["strong"], mask, self.class_confidence.value, self.label_histogram.value)

    def extra_metrics(self):
        return {"threshold": self.global_confidence.value}

    def get_config(self):
        return {"momentum": self.momentum, "fairness_weight": self.fairness_weight,
                **super().get_config()}
