"""FlexMatch's class-wise curriculum thresholds as a pseudo-label mask."""

import numbers

from keras import ops

from keras_ssl import losses
from keras_ssl.algorithms.base import register
from keras_ssl.algorithms.pseudo_label import PseudoLabel


@register("flexmatch")
class FlexMatch(PseudoLabel):
    """Pseudo-labels with FlexMatch's per-class curriculum thresholds.

    FlexMatch (Zhang et al., 2021) lowers the threshold of classes the model
    has not learned yet: each class's "learning effect" `sigma_c` is how many
    unlabeled images are confidently (above `threshold`) predicted as `c`,
    normalized by the best-learned class (or, while most images are still
    unconfident, by the unconfident count: the paper's threshold warm-up),
    and the class threshold is `threshold * M(beta_c)` with the convex map
    `M(x) = x / (2 - x)`.

    The paper counts each image's latest prediction (a per-image memory).
    Here `sigma` is a running mean over unlabeled batches of the share of
    images confidently predicted as each class (and of unconfident ones),
    with momentum `momentum`: the same ratios, estimated from the batches,
    with no per-image state. Only the mask differs from `FixMatch`.

    Example:

    ```python
    ssl = keras_ssl.SemiSupervisedModel(model, keras_ssl.algorithms.get("flexmatch"))
    ```

    Args:
        threshold: the upper threshold, reached by well-learned classes.
            Default 0.95 (the paper's).
        momentum: momentum of the running class shares. Default 0.999.
        unlabeled_weight, temperature, weak, strong, flip: as in
            `keras_ssl.algorithms.PseudoLabel`.
    """

    metric_names = ("mask_rate", "threshold")

    def __init__(self, threshold=0.95, momentum=0.999, unlabeled_weight=1.0,
                 temperature=1.0, weak=None, strong=None, flip=True):
        super().__init__(unlabeled_weight, temperature, weak, strong, flip)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not (
            0.0 < float(threshold) < 1.0
        ):
            raise ValueError(
                f"FlexMatch(threshold=...) must be in (0, 1); received {threshold!r}."
            )
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                f"FlexMatch(momentum=...) must be in [0, 1); received {momentum!r}."
            )
        self.threshold = float(threshold)
        self.momentum = float(momentum)
        self.class_shares = None

    def build_state(self, num_classes):
        classes = self.known_classes(num_classes)
        # Shares of [class 0, ..., class C-1, unconfident]; at the start every
        # image is unconfident (the paper's initial state).
        initial = ops.concatenate([ops.zeros((classes,)), ops.ones((1,))])
        self.class_shares = self.state_variable("class_shares", initial)
        return [self.class_shares]

    def class_thresholds(self, shares):
        """`threshold * M(beta_c)` from the running shares (classes, then unconfident)."""
        learned, unconfident = shares[:-1], shares[-1]
        beta = learned / ops.maximum(ops.maximum(ops.max(learned), unconfident), 1e-12)
        return self.threshold * beta / (2.0 - beta)

    def mask(self, probs, confidence, labels):
        classes = ops.shape(probs)[-1]
        confident = losses.threshold_mask(confidence, self.threshold)
        one_hot = ops.one_hot(ops.cast(labels, "int32"), classes) * confident[:, None]
        batch = ops.concatenate(
            [ops.mean(one_hot, axis=0), ops.reshape(1.0 - ops.mean(confident), (1,))]
        )
        shares = self.momentum * self.class_shares.value + (1.0 - self.momentum) * batch
        self.class_shares.assign(shares)
        thresholds = self.class_thresholds(shares)
        per_example = ops.take(thresholds, ops.cast(labels, "int32"))
        return losses.threshold_mask(confidence, per_example)

    def extra_metrics(self):
        return {"threshold": ops.mean(self.class_thresholds(self.class_shares.value))}

    def get_config(self):
        return {"threshold": self.threshold, "momentum": self.momentum,
                **super().get_config()}
