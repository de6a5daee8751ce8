"""FreeMatch's self-adaptive threshold as a pseudo-label mask."""

from keras import ops

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("freematch")
class FreeMatch(PseudoLabel):
    """Pseudo-labels with FreeMatch's self-adaptive, per-class threshold.

    A fixed high threshold (FixMatch's 0.95) discards most unlabeled images
    early in training, when the model is rarely that confident. FreeMatch
    (Wang et al., 2023) replaces it by thresholds that follow the model's own
    confidence: a global EMA `tau` of the mean top probability on unlabeled
    images, scaled per class by an EMA `p_c` of the mean class probability
    (`tau * p_c / max p`). It starts at 1/classes, so pseudo-labels are used
    from the first steps, and rises as the model grows confident.

    Only the mask differs from `FixMatch` (same views, same loss). The
    paper's extra fairness loss is not included.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.FreeMatch())
    ```

    Args:
        momentum: EMA momentum of the confidence estimates. Default 0.999.
        unlabeled_weight, temperature, weak, strong, flip: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "threshold")

    def __init__(self, momentum=0.999, unlabeled_weight=1.0, temperature=1.0,
                 weak=None, strong=None, flip=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"FreeMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        self.momentum = float(momentum)
        self.global_confidence = None
        self.class_confidence = None

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        self.global_confidence = self.state_variable("global_confidence", 1.0 / classes)
        self.class_confidence = self.state_variable(
            "class_confidence", ops.ones((classes,)) / classes)
        return [self.global_confidence, self.class_confidence]

    def mask(self, probs, confidence, labels):
        tau, p = losses.update_confidence_estimates(
            self.global_confidence.value, self.class_confidence.value, probs, self.momentum
        )
        self.global_confidence.assign(tau)
        self.class_confidence.assign(p)
        thresholds = losses.self_adaptive_thresholds(tau, p)
        per_example = ops.take(thresholds, ops.cast(labels, "int32"))
        return losses.threshold_mask(confidence, per_example)

    def extra_metrics(self):
        return {"threshold": self.global_confidence.value}

    def get_config(self):
        return {"momentum": self.momentum, **super().get_config()}
