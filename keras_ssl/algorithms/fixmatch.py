"""FixMatch: confident pseudo-labels from a weak view train a strong view."""

import numbers

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("fixmatch")
class FixMatch(PseudoLabel):
    """FixMatch (Sohn et al., 2020).

    For every unlabeled image the prediction on a weakly augmented view (no
    gradient) becomes a hard pseudo-label where its confidence reaches
    `threshold`; the model is trained with cross-entropy to predict that label
    on a strongly augmented view. Unconfident images are masked out.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(
        model, algorithm=keras_ssl.FixMatch(threshold=0.95), unlabeled_ratio=7)
    ssl.compile(optimizer="adam", metrics=["accuracy"])  # loss: cross-entropy
    ssl.fit(x_labeled, y_labeled, unlabeled=x_unlabeled, epochs=10)
    ```

    With `distribution_alignment=True` the weak view's probabilities `p`
    become `p * (u + 1e-6) / (m + 1e-6)` (renormalized), `u` uniform and `m`
    the model's predicted class distribution on unlabeled images: the first
    batch's mean, then a running mean with momentum 0.999 (ReMixMatch's
    alignment, started as ReMixMatch and USB start it). Confidence, mask
    and label are taken after it: a model that over-predicts some classes
    does not flood training with them.

    Args:
        threshold: confidence in (0, 1) a pseudo-label must reach. Default
            0.95 (the paper's); docs/experiments.md compares others at a CPU budget.
        distribution_alignment: align the weak view's predictions to a
            uniform class distribution. Default False (the paper has none).
        unlabeled_weight, temperature, weak, strong, flip, hard_labels: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    ALIGNMENT_MOMENTUM = 0.999

    def __init__(self, threshold=0.95, unlabeled_weight=1.0, temperature=1.0,
                 weak=None, strong=None, flip=True, distribution_alignment=False,
                 hard_labels=True):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 < float(threshold) < 1.0
        ):
            raise ValueError(
                f"FixMatch(threshold=...) must be in (0, 1); received {threshold!r}. "
                "Typical values are 0.7-0.95."
            )
        super().__init__(unlabeled_weight, temperature, weak, strong, flip, hard_labels)
        self.threshold = float(threshold)
        self.distribution_alignment = bool(distribution_alignment)
        self.marginal = None
        self.marginal_started = None

    def build_state(self, num_classes):
        if not self.distribution_alignment:
            return super().build_state(num_classes)
        return self.alignment_state(self.known_classes(num_classes))

    def adjust(self, probs):
        if not self.distribution_alignment:
            return probs
        return self.align(probs, self.ALIGNMENT_MOMENTUM)

    def mask(self, probs, confidence, labels):
        del probs, labels
        return losses.threshold_mask(confidence, self.threshold)

    def get_config(self):
        config = {"threshold": self.threshold, **super().get_config()}
        if self.distribution_alignment:
            config["distribution_alignment"] = True
        return config
